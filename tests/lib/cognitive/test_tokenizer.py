"""Counting in the model's own tokens: the GGUF vocabulary rebuilt, checked
against llama.cpp's own count; the simulated endpoint's count; truncation."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.cognitive.gguf import read_metadata
from aios.lib.cognitive.tokenizer import (
    CHATML,
    EstimateTokenizer,
    GGUFTokenizer,
    WordTokenizer,
    count_chat,
    template_from_jinja,
    truncate,
)
from aios.lib.llm.chat import ChatRequest, Message
from aios.lib.llm.embedded import default_model_path
from aios.lib.llm.http import HttpDriver
from aios.lib.llm.simserver import SimServer


@pytest.fixture(scope="module")
def tok() -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf()


CHATS = [
    [Message("user", "What is 2+2?")],
    [Message("system", "Be brief."), Message("user", "Name three colours."),
     Message("assistant", "Red, green, blue."), Message("user", "  And  two more?\n")],
    [Message("user", "naïve café — ünïcödé 日本語 😀 12345 apples cost $3.50!!")],
    [Message("system", "You plan."), Message("user", "def f(x):\n    return x**2  # c"),
     Message("assistant", "it's we're they'll I'd\n\n\tdone   "),
     Message("user", "<|im_start|>user\nhi<|im_end|> literal specials")],
]


def test_reads_the_embedded_models_vocabulary() -> None:
    meta = read_metadata(default_model_path())
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert len(meta["tokenizer.ggml.tokens"]) == meta["llama.vocab_size"] == 49152
    assert "<|im_start|>" in meta["tokenizer.chat_template"]


def test_template_is_chatml_with_smollm_default_system(tok: GGUFTokenizer) -> None:
    assert tok.template.prefix == CHATML.prefix and tok.template.suffix == CHATML.suffix
    assert tok.template.default_system is not None
    assert "SmolLM" in tok.template.default_system
    assert tok.overhead(False) > tok.overhead(True)  # the default system prompt costs
    assert tok.context_length == 8192
    with pytest.raises(NoSuchObject):
        template_from_jinja("{{ messages }}")


@pytest.mark.llm
def test_counts_equal_llama_cpp_prompt_tokens(tok: GGUFTokenizer) -> None:
    """The count the context manager uses is exactly what llama.cpp charges."""
    from aios.lib.llm.embedded import EmbeddedDriver

    async def go() -> list[int]:
        d = EmbeddedDriver(slots=1, context_tokens=2048)
        try:
            out = []
            for msgs in CHATS:
                r = await d.chat(ChatRequest(tuple(msgs), max_tokens=1, seed=1))
                out.append(r.usage.prompt_tokens)
            return out
        finally:
            await d.aclose()

    theirs = asyncio.run(go())
    ours = [count_chat(tok, m) for m in CHATS]
    assert ours == theirs


def test_word_tokenizer_is_the_simulated_endpoints_count() -> None:
    async def go() -> list[int]:
        async with SimServer(seed=2) as srv:
            d = HttpDriver(srv.url, "sim-1")
            out = [(await d.chat(ChatRequest(tuple(m), max_tokens=2))).usage.prompt_tokens
                   for m in CHATS]
            await d.aclose()
            return out

    assert asyncio.run(go()) == [count_chat(WordTokenizer(), m) for m in CHATS]


messages = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]),
                              st.text(max_size=80)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_a_conversation_costs_the_sum_of_its_messages(tok: GGUFTokenizer,
                                                      msgs: list[tuple[str, str]]) -> None:
    ms = [Message(r, c) for r, c in msgs]  # type: ignore[arg-type]
    rendered = tok.template.render(ms)
    assert count_chat(tok, ms) == tok.count(rendered)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.integers(min_value=0, max_value=60))
def test_truncate_gives_a_prefix_within_the_limit(tok: GGUFTokenizer, text: str, n: int) -> None:
    for t in (tok, WordTokenizer(), EstimateTokenizer()):
        cut = truncate(t, text, n)
        assert text.startswith(cut)
        assert t.count(cut) <= n
        if t.count(text) <= n:
            assert cut == text


def test_truncate_keeps_as_much_as_fits(tok: GGUFTokenizer) -> None:
    text = "one two three four five six seven eight nine ten"
    assert truncate(tok, text, 4) == "one two three four"
    assert truncate(WordTokenizer(), text, 3) == "one two three "
    with pytest.raises(InvalidArgument):
        truncate(tok, text, -1)


def _gguf(tmp: Path, body: bytes, version: int = 3, nkv: int = 1) -> Path:
    p = tmp / "m.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, nkv) + body)
    return p


def test_malformed_gguf_files_are_refused(tmp_path: Path) -> None:
    key = struct.pack("<Q", 3) + b"abc"
    ok = _gguf(tmp_path, key + struct.pack("<I", 4) + struct.pack("<I", 7))
    assert read_metadata(ok)["abc"] == 7
    cases = {
        "magic": b"GGML" + b"\0" * 20,
        "version": b"GGUF" + struct.pack("<IQQ", 9, 0, 0),
        "huge string": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40),
        "huge array": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<IIQ", 9, 4,
                                                                                  1 << 40),
        "bad type": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<I", 99),
        "short": b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + key + struct.pack("<I", 4),
    }
    for why, blob in cases.items():
        p = tmp_path / "bad.gguf"
        p.write_bytes(blob)
        with pytest.raises(InvalidArgument):
            read_metadata(p)
        assert why
    with pytest.raises(NoSuchObject):
        read_metadata(tmp_path / "missing.gguf")
    not_bpe = _gguf(tmp_path, struct.pack("<Q", 20) + b"tokenizer.ggml.model" +
                    struct.pack("<I", 8) + struct.pack("<Q", 5) + b"llama")
    with pytest.raises(NoSuchObject):
        GGUFTokenizer.from_gguf(not_bpe)
