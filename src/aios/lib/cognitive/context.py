"""A per-agent context window, MemGPT-style, as a pure state machine.

A model sees a prompt of at most ``window`` tokens, less what its answer may
take (``reserve``: the request's ``max_tokens``).  An agent's conversation
grows without bound.  :class:`ContextWindow` keeps the prompt inside the
window the way MemGPT (Packer et al., 2023) does, counted in the model's own
tokens (:mod:`~aios.lib.cognitive.tokenizer`):

**Layout.**  The prompt is, in order: the agent's system prompt; a *summary*
of everything evicted so far; the *memories* retrieved from the archival tier
on request; then the recent turns, oldest first (the FIFO queue).  Summary
and memories are system messages of their own, so each is counted exactly
(ChatML separates messages with special tokens, where BPE never merges) and
each has a cap (``summary_tokens``, ``memory_tokens``).  What is left of the
window after the system prompt, the two caps, the template's worst-case
overhead and the reserve is the **turn space**.  Because the caps are
reserved whether or not they are used, no summary or memory that respects its
cap can push the prompt over the window: the bound holds between any two
calls, not only after an eviction has finished.

**Pressure.**  ``pressure`` is the fraction of the turn space in use.  When an
operation takes it from below ``warn_fraction`` to at or above it, one
``context.pressure`` event is emitted (MemGPT's "memory pressure" warning, so
the agent can save what matters); the warning re-arms only after pressure
falls below the threshold again.  One warning per crossing.

**Eviction.**  A turn that would not fit evicts the oldest turns until the
queue takes at most ``evict_fraction`` of the turn space with the new turn
(MemGPT flushes about half).  The evicted turns go to the recall outbox (the
caller hands them to memoryd's recall tier, where they stay searchable) and
into an :class:`Eviction` record: the caller asks a summarizer (in the kernel,
the LLM device, charged to the agent) for a new summary of the previous
summary plus the evicted turns, and returns it with :meth:`complete_eviction`.
That is the *recursive* summary: each summary folds the last one in.  The
summary is cut to its cap with the real tokenizer whatever the summarizer
returned; if the summarizer fails, :meth:`fail_eviction` keeps the previous
summary with a note naming the turns now only in recall.  One eviction is
pending at a time (``Busy`` otherwise); the turns already left the queue, so
the prompt stays within the window while the summary is written.

**Oversized turns.**  A single turn longer than ``max_turn_tokens`` is cut to
that length with a marker, and its full text goes to the recall outbox.

**Snapshot.**  :meth:`snapshot` is canonical JSON (sorted keys, no
whitespace) plus a BLAKE2b digest; :meth:`restore` checks the digest, the
format and the tokenizer (token counts were made with it) and rebuilds the
window.  ``restore(s).snapshot() == s``, byte for byte.  A paused generation
(the request and the text it had produced, :class:`PausedGeneration`) is part
of the snapshot; its :meth:`~PausedGeneration.resume` is the llm library's
``resume_text`` request, which charges no token twice.

Nothing here does I/O or awaits: the async face with the summarizer, the
recall sink and the retriever injected is :mod:`~aios.lib.cognitive.agent_context`.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aios.abi.errors import Busy, IllegalTransition, IntegrityError, InvalidArgument
from aios.lib.cognitive.tokenizer import Tokenizer, truncate
from aios.lib.llm.chat import ChatRequest, Message, ToolCall, ToolSpec

FORMAT: Final = "aios-context/1"
SUMMARY_HEADER: Final = "Summary of the earlier conversation (older turns are in recall):\n"
MEMORY_HEADER: Final = "Relevant memories:\n"
TRUNCATED: Final = "\n[... cut to fit the context window; the full text is in recall]"
MIN_TURN_SPACE: Final = 64
TURN_ROLES: Final = frozenset({"user", "assistant"})


@dataclass(frozen=True, slots=True)
class ContextConfig:
    window_tokens: int
    reserve_tokens: int = 256
    warn_fraction: float = 0.75
    evict_fraction: float = 0.5
    summary_tokens: int = 0  # 0: window // 8
    memory_tokens: int = 0  # 0: window // 8
    max_turn_tokens: int = 0  # 0: half the turn space

    def __post_init__(self) -> None:
        for name in ("window_tokens", "reserve_tokens", "summary_tokens", "memory_tokens",
                     "max_turn_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidArgument(f"{name} must be an int >= 0")
        if not 0.0 < self.warn_fraction <= 1.0 or not 0.0 < self.evict_fraction <= 1.0:
            raise InvalidArgument("warn_fraction and evict_fraction must be in (0, 1]")
        if self.reserve_tokens >= self.window_tokens:
            raise InvalidArgument("reserve_tokens must be smaller than the window")

    @property
    def summary_cap(self) -> int:
        return self.summary_tokens or self.window_tokens // 8

    @property
    def memory_cap(self) -> int:
        return self.memory_tokens or self.window_tokens // 8

    def to_data(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Turn:
    seq: int
    role: str
    text: str
    tokens: int  # what the message costs in the prompt, template included


@dataclass(frozen=True, slots=True)
class Memory:
    """An archival passage injected into the prompt."""

    id: str
    text: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Eviction:
    """Turns that left the window and await their place in the summary."""

    id: int
    turns: tuple[Turn, ...]
    previous_summary: str
    summary_tokens: int  # the most the new summary text may take

    @property
    def first(self) -> int:
        return self.turns[0].seq

    @property
    def last(self) -> int:
        return self.turns[-1].seq


@dataclass(frozen=True, slots=True)
class ContextEvent:
    """Something the kernel module publishes (``context.*`` topics) and audits."""

    kind: str  # pressure | pressure_cleared | evicted | summarized | summary_failed | truncated | memories
    agent: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        return {"kind": self.kind, "agent": self.agent, **self.data}


# -- paused generations ----------------------------------------------------------------


def request_to_data(r: ChatRequest) -> dict[str, Any]:
    """A chat request as plain data (for snapshots and checkpoints)."""
    return {
        "messages": [
            {"role": m.role, "content": m.content, "name": m.name,
             "tool_call_id": m.tool_call_id,
             "tool_calls": [[c.id, c.name, c.arguments] for c in m.tool_calls]}
            for m in r.messages],
        "max_tokens": r.max_tokens, "temperature": r.temperature, "seed": r.seed,
        "stop": list(r.stop),
        "response_schema": dict(r.response_schema) if r.response_schema is not None else None,
        "tools": [[t.name, t.description, dict(t.parameters)] for t in r.tools],
        "tool_choice": r.tool_choice, "top_p": r.top_p, "resume_text": r.resume_text,
    }


def request_from_data(d: Mapping[str, Any]) -> ChatRequest:
    try:
        msgs = tuple(
            Message(m["role"], m["content"], m.get("name"), m.get("tool_call_id"),
                    tuple(ToolCall(*c) for c in m.get("tool_calls", ())))
            for m in d["messages"])
        return ChatRequest(
            msgs, d["max_tokens"], d["temperature"], d["seed"], tuple(d["stop"]),
            d["response_schema"], tuple(ToolSpec(*t) for t in d["tools"]), d["tool_choice"],
            d["top_p"], d["resume_text"])
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"not a chat request: {e!r}") from None


@dataclass(frozen=True, slots=True)
class PausedGeneration:
    """A generation stopped part way: its request, the text so far and what was charged."""

    request: ChatRequest
    text: str
    completion_tokens: int

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or self.completion_tokens < 0:
            raise InvalidArgument("a paused generation needs its text and a count >= 0")

    @property
    def remaining(self) -> int:
        return self.request.max_tokens - self.completion_tokens

    def resume(self) -> ChatRequest:
        """The request that continues it (the llm library's ``resume_text``)."""
        if self.remaining < 1:
            raise IllegalTransition("this generation already used all its max_tokens")
        return self.request.resumed(self.text, self.remaining)

    def to_data(self) -> dict[str, Any]:
        return {"request": request_to_data(self.request), "text": self.text,
                "completion_tokens": self.completion_tokens}

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> PausedGeneration:
        return cls(request_from_data(d["request"]), d["text"], d["completion_tokens"])


# -- the window -------------------------------------------------------------------------


class ContextWindow:
    """One agent's context; see the module essay."""

    def __init__(self, agent: str, tokenizer: Tokenizer, config: ContextConfig,
                 system: str = "") -> None:
        if not isinstance(agent, str) or not agent:
            raise InvalidArgument("agent must be a non-empty string")
        if not isinstance(system, str):
            raise InvalidArgument("the system prompt must be a string")
        self.agent = agent
        self.tok = tokenizer
        self.cfg = config
        self.system = system
        self.system_tokens = tokenizer.count_message("system", system) if system else 0
        self.overhead_max = max(tokenizer.overhead(True), tokenizer.overhead(False))
        self.turn_space = (config.window_tokens - config.reserve_tokens - self.overhead_max
                           - self.system_tokens - config.summary_cap - config.memory_cap)
        if self.turn_space < MIN_TURN_SPACE:
            raise InvalidArgument(
                f"the window leaves {self.turn_space} tokens for turns (window "
                f"{config.window_tokens} - reserve {config.reserve_tokens} - system "
                f"{self.system_tokens} - summary {config.summary_cap} - memories "
                f"{config.memory_cap} - template {self.overhead_max}); at least "
                f"{MIN_TURN_SPACE} are needed")
        self.max_turn = min(config.max_turn_tokens or self.turn_space // 2, self.turn_space)
        if self.max_turn < tokenizer.count_message("assistant", TRUNCATED) + 8:
            raise InvalidArgument(f"max_turn_tokens {self.max_turn} is too small to cut a turn")
        self.summary = ""
        self.summary_msg_tokens = 0
        self.memories: tuple[Memory, ...] = ()
        self.memory_msg_tokens = 0
        self.turns: deque[Turn] = deque()
        self.turn_tokens = 0
        self.next_seq = 1
        self.above = False  # pressure at or above warn_fraction (warning given)
        self.warnings = 0
        self.evictions = 0
        self.pending: Eviction | None = None
        self.generation: PausedGeneration | None = None
        self.events: list[ContextEvent] = []  # drained by the caller
        self.recall_outbox: list[Turn] = []  # drained by the caller
        self.full_in_recall: set[int] = set()  # cut turns in the queue whose full text is out

    # -- accounting -------------------------------------------------------------------

    @property
    def budget(self) -> int:
        """The most the prompt may take: the window less the reserve for the answer."""
        return self.cfg.window_tokens - self.cfg.reserve_tokens

    @property
    def pressure(self) -> float:
        return self.turn_tokens / self.turn_space

    def prompt_tokens(self) -> int:
        """The prompt's size now (exact for an exact tokenizer)."""
        msgs = self.system_tokens + self.summary_msg_tokens + self.memory_msg_tokens
        has_system = bool(self.system or self.summary or self.memories)
        return msgs + self.turn_tokens + self.tok.overhead(has_system)

    def _emit(self, kind: str, **data: Any) -> None:
        self.events.append(ContextEvent(kind, self.agent, data))

    def _check_pressure(self) -> None:
        p = self.pressure
        if not self.above and p >= self.cfg.warn_fraction:
            self.above = True
            self.warnings += 1
            self._emit("pressure", pressure=round(p, 4), used=self.turn_tokens,
                       space=self.turn_space, prompt_tokens=self.prompt_tokens(),
                       window=self.cfg.window_tokens)
        elif self.above and p < self.cfg.warn_fraction:
            self.above = False
            self._emit("pressure_cleared", pressure=round(p, 4))

    # -- turns ------------------------------------------------------------------------

    def add(self, role: str, text: str) -> tuple[Turn, Eviction | None]:
        """Append a turn; returns it and the eviction it caused (if any)."""
        if role not in TURN_ROLES:
            raise InvalidArgument("a turn's role is user or assistant (a tool's output is "
                                  "added as a user turn)", role=role)
        if not isinstance(text, str):
            raise InvalidArgument("a turn's text must be a string")
        tokens = self.tok.count_message(role, text)
        stored, full = text, None
        if tokens > self.max_turn:
            room = self.max_turn - self.tok.count_message(role, TRUNCATED)
            while True:
                stored = truncate(self.tok, text, max(0, room)) + TRUNCATED
                if self.tok.count_message(role, stored) <= self.max_turn or room <= 0:
                    break
                room -= 1
            tokens = self.tok.count_message(role, stored)
            full = text
        need_evict = self.turn_tokens + tokens > self.turn_space
        if need_evict and self.pending is not None:
            raise Busy("the summary of the last eviction is being written; try again after it")
        seq = self.next_seq
        self.next_seq += 1
        turn = Turn(seq, role, stored, tokens)
        if full is not None:
            self.recall_outbox.append(Turn(seq, role, full, tokens))
            self.full_in_recall.add(seq)
            self._emit("truncated", seq=seq, kept_tokens=tokens,
                       original_tokens=self.tok.count_message(role, full))
        eviction = self._evict(tokens) if need_evict else None
        self.turns.append(turn)
        self.turn_tokens += tokens
        self._check_pressure()
        assert self.prompt_tokens() <= self.budget, "context window invariant"
        return turn, eviction

    def _evict(self, incoming: int) -> Eviction:
        target = max(0, int(self.cfg.evict_fraction * self.turn_space) - incoming)
        out: list[Turn] = []
        while self.turns and (self.turn_tokens > target
                              or self.turn_tokens + incoming > self.turn_space):
            t = self.turns.popleft()
            self.turn_tokens -= t.tokens
            out.append(t)
        self.evictions += 1
        ev = Eviction(self.evictions, tuple(out), self.summary, self._summary_text_cap())
        self.pending = ev
        for t in out:
            if t.seq in self.full_in_recall:  # its full text went to recall when it was cut
                self.full_in_recall.discard(t.seq)
            else:
                self.recall_outbox.append(t)
        self._emit("evicted", eviction=ev.id, first=ev.first, last=ev.last, turns=len(out),
                   tokens=sum(t.tokens for t in out), pressure=round(self.pressure, 4))
        return ev

    def _summary_text_cap(self) -> int:
        return max(0, self.cfg.summary_cap - self.tok.count_message("system", SUMMARY_HEADER))

    def _set_summary(self, text: str) -> None:
        cap = self.cfg.summary_cap
        body = truncate(self.tok, text.strip(), self._summary_text_cap())
        while body and self.tok.count_message("system", SUMMARY_HEADER + body) > cap:
            body = body[:-1]
        self.summary = body
        self.summary_msg_tokens = (self.tok.count_message("system", SUMMARY_HEADER + body)
                                   if body else 0)

    def complete_eviction(self, eviction_id: int, summary: str) -> None:
        """The summarizer's answer for the pending eviction (cut to the cap)."""
        ev = self._pending(eviction_id)
        if not isinstance(summary, str):
            raise InvalidArgument("a summary must be a string")
        self._set_summary(summary)
        self.pending = None
        self._emit("summarized", eviction=ev.id, first=ev.first, last=ev.last,
                   summary_tokens=self.summary_msg_tokens)

    def fail_eviction(self, eviction_id: int, reason: str) -> None:
        """No summary could be written: keep the old one and say where the turns went."""
        ev = self._pending(eviction_id)
        note = f"[turns {ev.first}-{ev.last} are in recall without a summary]"
        keep = truncate(self.tok, ev.previous_summary,
                        max(0, self._summary_text_cap() - self.tok.count(note) - 2))
        self._set_summary(f"{keep}\n{note}" if keep else note)
        self.pending = None
        self._emit("summary_failed", eviction=ev.id, first=ev.first, last=ev.last,
                   reason=str(reason)[:200])

    def _pending(self, eviction_id: int) -> Eviction:
        if self.pending is None or self.pending.id != eviction_id:
            raise IllegalTransition(f"eviction {eviction_id} is not the pending one")
        return self.pending

    def drain(self) -> tuple[list[ContextEvent], list[Turn]]:
        """Take the events and the turns bound for recall since the last drain."""
        ev, rc = self.events, self.recall_outbox
        self.events, self.recall_outbox = [], []
        return ev, rc

    # -- memories -------------------------------------------------------------------------

    def set_memories(self, memories: Sequence[Memory]) -> tuple[Memory, ...]:
        """Inject archival memories, best first, as many as fit the memory cap."""
        kept: list[Memory] = []
        cap = self.cfg.memory_cap
        for m in memories:
            if not isinstance(m, Memory):
                raise InvalidArgument("memories must be Memory records")
            if self.tok.count_message("system", _render_memories((*kept, m))) <= cap:
                kept.append(m)
        self.memories = tuple(kept)
        self.memory_msg_tokens = (self.tok.count_message("system", _render_memories(self.memories))
                                  if kept else 0)
        self._emit("memories", ids=[m.id for m in kept], offered=len(memories),
                   tokens=self.memory_msg_tokens)
        return self.memories

    def clear_memories(self) -> None:
        self.memories = ()
        self.memory_msg_tokens = 0

    # -- the prompt -----------------------------------------------------------------------

    def messages(self) -> tuple[Message, ...]:
        """What is sent to the model (the window invariant holds for it)."""
        out: list[Message] = []
        if self.system:
            out.append(Message("system", self.system))
        if self.summary:
            out.append(Message("system", SUMMARY_HEADER + self.summary))
        if self.memories:
            out.append(Message("system", _render_memories(self.memories)))
        out += [Message(t.role, t.text) for t in self.turns]  # type: ignore[arg-type]
        return tuple(out)

    def request(self, **kw: Any) -> ChatRequest:
        """A chat request for the current prompt; ``max_tokens`` is the reserve."""
        kw.setdefault("max_tokens", self.cfg.reserve_tokens)
        if kw["max_tokens"] > self.cfg.reserve_tokens:
            raise InvalidArgument(f"max_tokens {kw['max_tokens']} exceeds the reserve "
                                  f"({self.cfg.reserve_tokens}) this window keeps for answers")
        return ChatRequest(self.messages(), **kw)

    # -- paused generation ----------------------------------------------------------------

    def pause_generation(self, request: ChatRequest, text: str, completion_tokens: int) -> None:
        self.generation = PausedGeneration(request, text, completion_tokens)

    def take_generation(self) -> PausedGeneration | None:
        g, self.generation = self.generation, None
        return g

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        if self.pending is not None:
            raise Busy("a summary is being written; snapshot after it")
        body = {
            "format": FORMAT, "agent": self.agent, "tokenizer": self.tok.name,
            "config": self.cfg.to_data(), "system": self.system, "summary": self.summary,
            "memories": [[m.id, m.text, m.score] for m in self.memories],
            "turns": [[t.seq, t.role, t.text, t.tokens] for t in self.turns],
            "next_seq": self.next_seq, "above": self.above, "warnings": self.warnings,
            "evictions": self.evictions, "full_in_recall": sorted(self.full_in_recall),
            "generation": self.generation.to_data() if self.generation else None,
        }
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = data.encode()
        return raw + b"\n" + hashlib.blake2b(raw, digest_size=16).hexdigest().encode()

    @classmethod
    def restore(cls, blob: bytes, tokenizer: Tokenizer) -> ContextWindow:
        raw, _, digest = bytes(blob).rpartition(b"\n")
        if hashlib.blake2b(raw, digest_size=16).hexdigest().encode() != digest:
            raise IntegrityError("context snapshot does not match its digest")
        try:
            b = json.loads(raw)
            if b.get("format") != FORMAT:
                raise InvalidArgument(f"not a context snapshot ({b.get('format')!r})")
            if b["tokenizer"] != tokenizer.name:
                raise InvalidArgument(
                    f"the snapshot was counted with {b['tokenizer']!r}, not {tokenizer.name!r}")
            w = cls(b["agent"], tokenizer, ContextConfig(**b["config"]), b["system"])
            w._set_summary(b["summary"])
            if w.summary != b["summary"]:
                raise InvalidArgument("the snapshot's summary exceeds its cap")
            w.memories = tuple(Memory(i, t, s) for i, t, s in b["memories"])
            w.memory_msg_tokens = (tokenizer.count_message("system", _render_memories(w.memories))
                                   if w.memories else 0)
            for seq, role, text, tokens in b["turns"]:
                w.turns.append(Turn(seq, role, text, tokens))
                w.turn_tokens += tokens
            w.next_seq, w.above = b["next_seq"], b["above"]
            w.warnings, w.evictions = b["warnings"], b["evictions"]
            w.full_in_recall = set(b["full_in_recall"])
            g = b["generation"]
            w.generation = PausedGeneration.from_data(g) if g is not None else None
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"malformed context snapshot: {e!r}") from None
        if w.prompt_tokens() > w.budget or w.turn_tokens > w.turn_space:
            raise InvalidArgument("the snapshot does not fit its own window")
        return w


def _render_memories(memories: Sequence[Memory]) -> str:
    return MEMORY_HEADER + "\n".join(f"- {m.text}" for m in memories)
