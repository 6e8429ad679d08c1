"""The context window: never over the window, one warning per crossing, evicted
turns in recall (memoryd's real recall tier), recursive summaries, archival
injection, snapshots byte-identical, a paused generation resumed exactly."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.abi.errors import Busy, DeviceError, IllegalTransition, IntegrityError, InvalidArgument
from aios.kmod.memoryd.core import MemoryCore
from aios.kmod.memoryd.records import MemRight
from aios.lib.cognitive.agent_context import (
    AgentContext,
    InMemoryRecall,
    MemorydArchive,
    MemorydRecall,
    ModelSummarizer,
)
from aios.lib.cognitive.context import (
    TRUNCATED,
    ContextConfig,
    ContextWindow,
    Memory,
    Turn,
)
from aios.lib.cognitive.tokenizer import (
    EstimateTokenizer,
    GGUFTokenizer,
    Tokenizer,
    WordTokenizer,
    count_chat,
)
from aios.lib.llm.chat import ChatRequest, Message, user
from aios.lib.llm.http import HttpDriver
from aios.lib.llm.simserver import SimServer
from aios.lib.vectors.embedding import HashingEmbedder

WORDS = ["plan", "agent", "kernel", "memory", "window", "token", "budget", "summary", "recall", "paris", "rome", "oslo", "naïve", "日本", "42", "3.14", "—", "☃", "the", "of", "and"]


@pytest.fixture(scope="module")
def tok() -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf()


def text_of(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


class Recount:
    """The prompt's size counted from the messages, as the model will count it (each
    distinct message is tokenized once: tokenizing is the test's cost, not the window's)."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.memo: dict[tuple[str, str], int] = {}

    def __call__(self, w: ContextWindow) -> int:
        msgs = w.messages()
        n = 0
        for m in msgs:
            key = (m.role, m.content)
            if key not in self.memo:
                self.memo[key] = self.tok.count_message(m.role, m.content)
            n += self.memo[key]
        return n + self.tok.overhead(bool(msgs) and msgs[0].role == "system")


def recount(tok: Tokenizer, w: ContextWindow) -> int:
    return count_chat(tok, w.messages())


# -- the window invariant ------------------------------------------------------------------


def run_1000_turns(tok: Tokenizer, seed: int, window: int, reserve: int, warn: float,
                   evict: float, system_words: int, fail_rate: float) -> None:
    rng = random.Random(seed)
    cfg = ContextConfig(window, reserve, warn, evict)
    w = ContextWindow("a1", tok, cfg, text_of(rng, system_words))
    count = Recount(tok)
    seen: dict[int, str] = {}
    recalled: dict[int, str] = {}
    crossings = 0
    was_above = False
    for i in range(1000):
        # mostly short turns, some long, a few far longer than the window
        r = rng.random()
        n = (rng.randint(0, 20) if r < 0.85 else rng.randint(20, 300) if r < 0.96
             else rng.randint(300, 3000))
        turn, ev = w.add(rng.choice(["user", "assistant"]), text_of(rng, n))
        seen[turn.seq] = turn.text
        if ev is not None:
            if rng.random() < fail_rate:
                w.fail_eviction(ev.id, "device gone")
            else:  # a verbose summarizer: the window must cut it to its cap
                w.complete_eviction(ev.id, ev.previous_summary + " " + " ".join(
                    t.text for t in ev.turns))
        if i % 97 == 0:
            w.set_memories([Memory(str(j), text_of(rng, rng.randint(1, 60))) for j in range(5)])
        events, out = w.drain()
        for t in out:
            recalled.setdefault(t.seq, t.text)
        # the invariant, counted from the messages sent
        assert count(w) == w.prompt_tokens() <= w.budget
        assert w.turn_tokens <= w.turn_space
        # one warning per upward crossing of warn_fraction
        now_above = w.pressure >= warn
        kinds = [e.kind for e in events]
        if now_above and not was_above:
            crossings += 1
            assert kinds.count("pressure") == 1
        else:
            assert "pressure" not in kinds
        was_above = now_above
    assert w.warnings == crossings
    # no turn is lost: each is in the window or went to recall (full text if it was cut)
    in_window = {t.seq for t in w.turns}
    assert set(seen) == in_window | set(recalled)
    for seq, txt in recalled.items():
        assert seen[seq] == txt or seen[seq].endswith(TRUNCATED)


windows = dict(seed=st.integers(0, 2**32 - 1), window=st.integers(600, 4096),
               reserve=st.integers(16, 256), warn=st.floats(0.3, 1.0), evict=st.floats(0.1, 1.0),
               system_words=st.integers(0, 40), fail_rate=st.floats(0.0, 0.5))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**windows)
def test_prompt_never_exceeds_the_window_across_1000_random_turns(
        tok: GGUFTokenizer, seed: int, window: int, reserve: int, warn: float, evict: float,
        system_words: int, fail_rate: float) -> None:
    """Counted with the embedded model's tokenizer (exact)."""
    run_1000_turns(tok, seed, window, reserve, warn, evict, system_words, fail_rate)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**windows)
def test_prompt_never_exceeds_the_window_with_other_tokenizers(
        seed: int, window: int, reserve: int, warn: float, evict: float, system_words: int,
        fail_rate: float) -> None:
    for tok in (WordTokenizer(), EstimateTokenizer()):
        run_1000_turns(tok, seed, window, reserve, warn, evict, system_words, fail_rate)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**windows)
def test_prompt_never_exceeds_the_window_many_more_runs(
        tok: GGUFTokenizer, seed: int, window: int, reserve: int, warn: float, evict: float,
        system_words: int, fail_rate: float) -> None:
    run_1000_turns(tok, seed, window, reserve, warn, evict, system_words, fail_rate)


def test_warning_fires_once_per_crossing() -> None:
    tok = WordTokenizer()
    w = ContextWindow("a", tok, ContextConfig(1000, 100, warn_fraction=0.5, evict_fraction=0.2,
                                              summary_tokens=50, memory_tokens=50))
    space = w.turn_space  # 1000 - 100 - 4 - 50 - 50 = 796
    per = 20  # tokens a turn of 16 words costs
    n_half = space // 2 // per + 1
    kinds: list[str] = []
    for _ in range(n_half):
        w.add("user", "w " * 16)
    kinds += [e.kind for e in w.drain()[0]]
    assert kinds.count("pressure") == 1 and w.pressure >= 0.5
    for _ in range(5):  # still above: silent
        w.add("user", "w " * 16)
    assert [e.kind for e in w.drain()[0]] == []
    while True:  # up to the limit: one eviction brings it under, which re-arms
        _, ev = w.add("user", "w " * 16)
        if ev is not None:
            w.complete_eviction(ev.id, "s")
            break
    kinds = [e.kind for e in w.drain()[0]]
    assert kinds[:1] == ["evicted"] and "pressure_cleared" in kinds
    assert w.pressure < 0.5 and w.warnings == 1
    while w.pressure < 0.5:
        w.add("user", "w " * 16)
    assert [e.kind for e in w.drain()[0]].count("pressure") == 1 and w.warnings == 2


def test_bad_turns_change_nothing(tok: GGUFTokenizer) -> None:
    w = ContextWindow("a", tok, ContextConfig(1024))
    w.add("user", "hello")
    snap = w.snapshot()
    for role, text in (("system", "x"), ("robot", "x"), ("tool", "x"), ("user", 7)):
        with pytest.raises(InvalidArgument):
            w.add(role, text)  # type: ignore[arg-type]
    assert w.snapshot() == snap
    with pytest.raises(InvalidArgument):
        ContextWindow("a", tok, ContextConfig(300, 200))  # no room for turns
    with pytest.raises(InvalidArgument):
        ContextConfig(100, 100)
    with pytest.raises(InvalidArgument):
        w.request(max_tokens=10_000)


def test_a_turn_longer_than_allowed_is_cut_and_kept_whole_in_recall(tok: GGUFTokenizer) -> None:
    w = ContextWindow("a", tok, ContextConfig(1024, 128))
    long = text_of(random.Random(1), 2000)
    turn, _ = w.add("user", long)
    assert turn.text.endswith(TRUNCATED) and turn.tokens <= w.max_turn
    _, out = w.drain()
    assert [t.text for t in out] == [long]
    for _ in range(200):  # evicting it later does not send the cut copy to recall
        _, ev = w.add("user", "x " * 30)
        if ev is not None:
            w.complete_eviction(ev.id, "")
            break
    _, out = w.drain()
    assert turn.seq not in {t.seq for t in out} and out
    assert recount(tok, w) <= w.budget


def test_only_one_eviction_is_pending() -> None:
    w = ContextWindow("a", WordTokenizer(), ContextConfig(400, 50, summary_tokens=40,
                                                          memory_tokens=40))
    ev = None
    while ev is None:
        _, ev = w.add("user", "word " * 30)
    snap_err = None
    try:
        w.snapshot()
    except Busy as e:
        snap_err = e
    assert snap_err is not None
    n = len(w.turns)
    with pytest.raises(Busy):
        while True:
            w.add("user", "word " * 30)
    assert len(w.turns) >= n
    with pytest.raises(IllegalTransition):
        w.complete_eviction(ev.id + 1, "x")
    w.complete_eviction(ev.id, "a summary")
    assert w.summary == "a summary"
    w.add("user", "word " * 30)


# -- recall, summaries, memories ---------------------------------------------------------------


def memory_core() -> MemoryCore:
    core = MemoryCore(None, HashingEmbedder())
    core.create_namespace("agent-7", "agent-7/recall")
    return core


CODE5 = 5 * 7919 % 10007


def test_evicted_turns_are_retrievable_from_memoryds_recall_tier(tok: GGUFTokenizer) -> None:
    core = memory_core()
    recall = MemorydRecall(core, "agent-7/recall", MemRight.ALL)

    async def go() -> tuple[AgentContext, list[Turn]]:
        ctx = AgentContext("agent-7", tok, ContextConfig(768, 64), recall=recall)
        for i in range(60):
            await ctx.add("user", f"note {i}: the courier code for warehouse {i} is "
                                  f"zebra{i * 7919 % 10007}")
            await ctx.add("assistant", f"Stored the code for warehouse {i}.")
        return ctx, await ctx.search_recall(f"zebra{CODE5}", k=5)

    ctx, hits = asyncio.run(go())
    first_kept = ctx.window.turns[0].seq
    assert ctx.window.evictions >= 1 and first_kept > 10
    # warehouse 5's note left the window long ago
    target = 5
    assert [h.text for h in hits][:1] == [f"note {target}: the courier code for warehouse "
                                          f"{target} is zebra{CODE5}"]
    assert hits[0].seq < first_kept  # it is no longer in the window, only in recall
    assert hits[0].seq == 2 * target + 1
    # and the summary stands for them (no summarizer here: a note naming them)
    assert "in recall" in ctx.window.summary
    kinds = [e.kind for e in ctx.events]
    assert "evicted" in kinds and "summary_failed" in kinds


class RecordingSummarizer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []

    async def summarize(self, agent: str, previous: str, turns: Sequence[Turn],
                        max_tokens: int) -> str:
        self.calls.append((previous, [t.seq for t in turns]))
        return f"{previous} | turns {turns[0].seq}-{turns[-1].seq}".strip(" |")


def test_summaries_are_recursive() -> None:
    s = RecordingSummarizer()

    async def go() -> AgentContext:
        ctx = AgentContext("a", WordTokenizer(), ContextConfig(500, 50, summary_tokens=60,
                                                               memory_tokens=20),
                           summarizer=s)
        for i in range(80):
            await ctx.add("user", f"message {i} " + "x " * 20)
        return ctx

    ctx = asyncio.run(go())
    assert len(s.calls) >= 3
    for (prev, _), (prev_next, _) in zip(s.calls, s.calls[1:], strict=False):
        assert prev_next.startswith(prev)  # each summary folds in the one before
    seqs = [q for _, qs in s.calls for q in qs]
    assert seqs == sorted(seqs) == list(range(1, len(seqs) + 1))  # every evicted turn, once
    assert ctx.window.summary.startswith("turns 1-")


def test_model_summarizer_through_the_http_driver_is_charged_and_capped() -> None:
    tok = WordTokenizer()

    async def go() -> tuple[AgentContext, ModelSummarizer, int]:
        async with SimServer(seed=5) as srv:
            d = HttpDriver(srv.url, "sim-1")
            summ = ModelSummarizer(d, tok, window_tokens=300)
            ctx = AgentContext("a", tok, ContextConfig(420, 40, summary_tokens=40,
                                                       memory_tokens=20), summarizer=summ)
            for i in range(40):
                await ctx.add("user", f"fact {i} " + "y " * 25)
            await d.aclose()
            return ctx, summ, srv.requests

    ctx, summ, requests = asyncio.run(go())
    assert summ.calls >= 2 and requests == summ.calls
    assert ctx.window.summary and ctx.window.summary_msg_tokens <= 40
    assert "summarized" in [e.kind for e in ctx.events]


class FailingSummarizer:
    async def summarize(self, agent: str, previous: str, turns: Sequence[Turn],
                        max_tokens: int) -> str:
        raise DeviceError("the model device went away")


def test_a_failed_summary_keeps_the_window_and_the_turns() -> None:
    recall = InMemoryRecall()

    async def go() -> AgentContext:
        ctx = AgentContext("a", WordTokenizer(), ContextConfig(400, 40, summary_tokens=40,
                                                               memory_tokens=20),
                           summarizer=FailingSummarizer(), recall=recall)
        for i in range(30):
            await ctx.add("user", f"item{i} " + "z " * 20)
        return ctx

    ctx = asyncio.run(go())
    assert ctx.window.pending is None and "without a summary" in ctx.window.summary
    assert set(recall.turns["a"]) | {t.seq for t in ctx.window.turns} == set(range(1, 31))


def test_relevant_archival_memories_are_injected_within_their_cap(tok: GGUFTokenizer) -> None:
    core = memory_core()
    core.create_namespace("team", "team/archive")
    facts = ["The launch window for the probe opens on the ninth of March.",
             "Paris has a population of about two million people.",
             "The warehouse key is kept in the blue cabinet.",
             "Oslo is the capital of Norway.",
             "The probe's fuel margin is eleven percent."]
    for f in facts:
        core.put("team/archive", MemRight.ALL, f)

    async def go() -> tuple[AgentContext, tuple[Memory, ...]]:
        ctx = AgentContext("agent-7", tok, ContextConfig(1024, 64, memory_tokens=40),
                           retriever=MemorydArchive(core, {"team/archive": MemRight.READ}))
        await ctx.add("user", "When does the probe launch?")
        return ctx, await ctx.inject("probe launch window", k=5)

    ctx, kept = asyncio.run(go())
    assert kept and "launch window" in kept[0].text
    assert 0 < len(kept) < len(facts)  # the 40-token cap holds fewer than all five
    msgs = ctx.request().messages
    assert any("launch window" in m.content for m in msgs if m.role == "system")
    assert ctx.window.memory_msg_tokens <= 40
    assert count_chat(tok, msgs) <= ctx.window.budget


# -- snapshots -------------------------------------------------------------------------------


def busy_window(tok: Tokenizer, seed: int) -> ContextWindow:
    rng = random.Random(seed)
    w = ContextWindow("agent-3", tok, ContextConfig(900, 100, summary_tokens=80,
                                                    memory_tokens=60), "You are careful. ☃")
    for i in range(120):
        _, ev = w.add(rng.choice(["user", "assistant"]), text_of(rng, rng.randint(1, 60)))
        if ev is not None:
            w.complete_eviction(ev.id, f"summary after {i}: " + text_of(rng, 30))
    w.set_memories([Memory("m1", "the blue cabinet", 0.9), Memory("m2", "naïve ☃ 日本", 0.5)])
    w.pause_generation(ChatRequest((user("go on"),), max_tokens=50, seed=3), "so far ☃", 7)
    return w


def test_snapshot_and_restore_are_byte_identical(tok: GGUFTokenizer) -> None:
    for seed in range(5):
        w = busy_window(tok, seed)
        blob = w.snapshot()
        r = ContextWindow.restore(blob, tok)
        assert r.snapshot() == blob
        assert r.messages() == w.messages() and r.prompt_tokens() == w.prompt_tokens()
        assert r.generation == w.generation
        # and they behave the same from here on
        rng1, rng2 = random.Random(seed), random.Random(seed)
        for a, rng in ((w, rng1), (r, rng2)):
            for _ in range(50):
                _, ev = a.add("user", text_of(rng, rng.randint(1, 80)))
                if ev is not None:
                    a.complete_eviction(ev.id, "s")
        assert w.snapshot() == r.snapshot()


def test_damaged_or_foreign_snapshots_are_refused(tok: GGUFTokenizer) -> None:
    blob = busy_window(tok, 1).snapshot()
    flipped = bytearray(blob)
    flipped[40] ^= 1
    with pytest.raises(IntegrityError):
        ContextWindow.restore(bytes(flipped), tok)
    with pytest.raises(InvalidArgument):
        ContextWindow.restore(blob, WordTokenizer())  # counted with another tokenizer
    with pytest.raises(IntegrityError):
        ContextWindow.restore(b"not a snapshot", tok)


def test_a_paused_generation_resumes_exactly_after_restore() -> None:
    """Stop a real stream part way, snapshot the context, restore it elsewhere,
    resume: the text reads as one unbroken answer and no token is charged twice."""
    tok = WordTokenizer()
    req = ChatRequest((Message("system", "You are terse."), user("Tell me about the plan.")),
                      max_tokens=200, seed=11)

    async def go() -> tuple[str, int, str, int, int]:
        async with SimServer(seed=3, natural_max=60) as srv:
            d = HttpDriver(srv.url, "sim-1")
            whole = await d.chat(req)
            w = ContextWindow("a", tok, ContextConfig(2000, 200))
            w.add("user", "Tell me about the plan.")
            parts: list[str] = []
            stream = d.stream(req)
            async with contextlib.aclosing(stream):
                async for ch in stream:
                    parts.append(ch.text)
                    if len(parts) == 6:
                        break  # the agent is suspended here
            w.pause_generation(req, "".join(parts), len([p for p in parts if p]))
            blob = w.snapshot()
            r = ContextWindow.restore(blob, tok)
            g = r.take_generation()
            assert g is not None
            rest = await d.chat(g.resume())
            await d.aclose()
            return (whole.text, whole.usage.completion_tokens, g.text + rest.text,
                    g.completion_tokens + rest.usage.completion_tokens,
                    rest.usage.prompt_tokens)

    whole, whole_tokens, resumed, resumed_tokens, _ = asyncio.run(go())
    assert resumed == whole
    assert resumed_tokens == whole_tokens
