"""The async face of a context window: summarizer, recall and archive injected.

:class:`AgentContext` wraps a :class:`~aios.lib.cognitive.context.ContextWindow`
and does what the pure core asks of its caller, in order, under one lock:

* turns evicted (or cut) go to a :class:`RecallSink` (memoryd's recall tier
  once the kernel module wires it; :class:`MemorydRecall` adapts a
  ``MemoryCore``-like object, :class:`InMemoryRecall` is the default);
* a pending eviction gets its summary from a :class:`Summarizer`.
  :class:`ModelSummarizer` asks a language model through any
  :class:`~aios.lib.llm.chat.ChatDriver` (in the kernel: the agent's handle
  on the LLM device, so the tokens are charged to the agent).  Evicted turns
  that would not fit one summarization prompt are folded in several calls,
  each adding to the summary so far: the recursion that gives MemGPT's
  "recursive summary" its name;
* ``inject(query)`` asks a :class:`Retriever` (memoryd's archival search) for
  relevant memories and places as many as fit the memory cap;
* events (``context.*``) go to an injected callback (the kernel module
  publishes and audits them).

Everything the model sees comes out of :meth:`AgentContext.request`, so the
window invariant of the core is the invariant of what is sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from aios.abi.errors import AIOSError, InvalidArgument
from aios.lib.cognitive.context import (
    ContextConfig,
    ContextEvent,
    ContextWindow,
    Eviction,
    Memory,
    PausedGeneration,
    Turn,
)
from aios.lib.cognitive.tokenizer import Tokenizer, count_chat, truncate
from aios.lib.llm.chat import ChatDriver, ChatRequest, ChatResult, Message


@runtime_checkable
class Summarizer(Protocol):
    async def summarize(self, agent: str, previous: str, turns: Sequence[Turn],
                        max_tokens: int) -> str: ...


@runtime_checkable
class RecallSink(Protocol):
    async def store(self, agent: str, turns: Sequence[Turn]) -> None: ...

    async def search(self, agent: str, query: str, k: int) -> list[Turn]: ...


@runtime_checkable
class Retriever(Protocol):
    async def retrieve(self, agent: str, query: str, k: int) -> list[Memory]: ...


_WORDS = re.compile(r"\w+")


class InMemoryRecall:
    """Recall in this process: every turn kept, searched by shared words."""

    def __init__(self) -> None:
        self.turns: dict[str, dict[int, Turn]] = {}

    async def store(self, agent: str, turns: Sequence[Turn]) -> None:
        book = self.turns.setdefault(agent, {})
        for t in turns:
            book[t.seq] = t

    async def search(self, agent: str, query: str, k: int) -> list[Turn]:
        q = set(_WORDS.findall(query.lower()))
        scored = [(len(q & set(_WORDS.findall(t.text.lower()))), -t.seq, t)
                  for t in self.turns.get(agent, {}).values()]
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [t for s, _, t in scored[:k] if s > 0]


class MemorydRecall:
    """Recall in memoryd's recall tier (a ``MemoryCore`` and a namespace the agent
    may write), searched with its full-text index."""

    def __init__(self, core: Any, namespace: str, rights: Any) -> None:
        self.core, self.ns, self.rights = core, namespace, rights

    async def store(self, agent: str, turns: Sequence[Turn]) -> None:
        for t in turns:
            self.core.recall_append(self.ns, self.rights, t.role, t.text,
                                    meta={"agent": agent, "seq": t.seq, "tokens": t.tokens})

    async def search(self, agent: str, query: str, k: int) -> list[Turn]:
        out = []
        for r in self.core.recall_search(self.ns, self.rights, query, k=k):
            if r.meta.get("agent") == agent:
                out.append(Turn(int(r.meta["seq"]), str(r.role), r.text, int(r.meta["tokens"])))
        return out


class MemorydArchive:
    """Archival memories from memoryd (semantic search over namespaces the agent reads)."""

    def __init__(self, core: Any, scopes: dict[str, Any]) -> None:
        self.core, self.scopes = core, scopes

    async def retrieve(self, agent: str, query: str, k: int) -> list[Memory]:
        return [Memory(f"{h.record.namespace}:{h.record.id}", h.record.text, float(h.score))
                for h in self.core.search(self.scopes, query, k)]


class ModelSummarizer:
    """Summaries written by a language model (through the LLM device in the kernel)."""

    SYSTEM = ("You keep a running summary of a conversation. Merge the new turns into the "
              "summary so far. Keep names, numbers, decisions and open questions. Be brief.")

    def __init__(self, driver: ChatDriver, tokenizer: Tokenizer, window_tokens: int, *,
                 seed: int | None = 0) -> None:
        self.driver, self.tok, self.window, self.seed = driver, tokenizer, window_tokens, seed
        self.calls = 0

    def _request(self, previous: str, turns: Sequence[Turn], max_tokens: int) -> ChatRequest:
        body = "\n".join(f"{t.role}: {t.text}" for t in turns)
        return ChatRequest((Message("system", self.SYSTEM),
                            Message("user", f"Summary so far:\n{previous or '(none)'}\n\n"
                                            f"New turns:\n{body}\n\nUpdated summary:")),
                           max_tokens=max_tokens, temperature=0.0, seed=self.seed)

    async def summarize(self, agent: str, previous: str, turns: Sequence[Turn],
                        max_tokens: int) -> str:
        if max_tokens < 1:
            return ""
        summary, rest = previous, list(turns)
        while rest:
            # the largest prefix of the remaining turns whose prompt fits the model
            n = len(rest)
            while n > 1 and count_chat(self.tok, self._request(summary, rest[:n], max_tokens)
                                       .messages) + max_tokens > self.window:
                n -= 1
            req = self._request(summary, rest[:n], max_tokens)
            if count_chat(self.tok, req.messages) + max_tokens > self.window:
                cut = Turn(rest[0].seq, rest[0].role, truncate(
                    self.tok, rest[0].text, max(0, self.window // 2 - max_tokens)), 0)
                req = self._request(summary, [cut], max_tokens)
            result: ChatResult = await self.driver.chat(req)
            self.calls += 1
            summary = result.text.strip()
            rest = rest[n:]
        return summary


class AgentContext:
    """One agent's context with its summarizer, recall and archive (see the module essay)."""

    def __init__(self, agent: str, tokenizer: Tokenizer, config: ContextConfig, *,
                 system: str = "", summarizer: Summarizer | None = None,
                 recall: RecallSink | None = None, retriever: Retriever | None = None,
                 on_event: Callable[[ContextEvent], None] | None = None,
                 window: ContextWindow | None = None) -> None:
        self.window = window or ContextWindow(agent, tokenizer, config, system)
        self.summarizer = summarizer
        self.recall = recall if recall is not None else InMemoryRecall()
        self.retriever = retriever
        self.on_event = on_event
        self.events: list[ContextEvent] = []
        self._lock = asyncio.Lock()

    @property
    def agent(self) -> str:
        return self.window.agent

    async def _flush(self) -> None:
        events, to_recall = self.window.drain()
        if to_recall:
            await self.recall.store(self.agent, to_recall)
        for e in events:
            self.events.append(e)
            if self.on_event is not None:
                self.on_event(e)

    async def _summarize(self, ev: Eviction) -> None:
        if self.summarizer is None:
            self.window.fail_eviction(ev.id, "no summarizer")
            return
        try:
            text = await self.summarizer.summarize(self.agent, ev.previous_summary, ev.turns,
                                                   ev.summary_tokens)
        except (AIOSError, OSError) as e:
            self.window.fail_eviction(ev.id, str(e))
            return
        except asyncio.CancelledError:
            self.window.fail_eviction(ev.id, "cancelled")
            raise
        self.window.complete_eviction(ev.id, text)

    async def add(self, role: str, text: str) -> Turn:
        """Append a turn; evicts, stores to recall and summarizes as needed."""
        async with self._lock:
            turn, ev = self.window.add(role, text)
            try:
                await self._flush()  # evicted turns are in recall before the summary exists
                if ev is not None:
                    await self._summarize(ev)
            finally:
                await self._flush()
            return turn

    async def inject(self, query: str, k: int = 5) -> tuple[Memory, ...]:
        """Place the archival memories most relevant to ``query`` into the prompt."""
        if self.retriever is None:
            raise InvalidArgument("this context has no archive to retrieve from")
        if not 1 <= k <= 100:
            raise InvalidArgument("k must be 1..100")
        found = await self.retriever.retrieve(self.agent, query, k)
        async with self._lock:
            kept = self.window.set_memories(found)
            await self._flush()
            return kept

    async def search_recall(self, query: str, k: int = 10) -> list[Turn]:
        return await self.recall.search(self.agent, query, k)

    def request(self, **kw: Any) -> ChatRequest:
        return self.window.request(**kw)

    async def snapshot(self) -> bytes:
        async with self._lock:
            return self.window.snapshot()

    @classmethod
    def restore(cls, blob: bytes, tokenizer: Tokenizer, **kw: Any) -> AgentContext:
        w = ContextWindow.restore(blob, tokenizer)
        return cls(w.agent, tokenizer, w.cfg, window=w, **kw)

    def pause(self, request: ChatRequest, text: str, completion_tokens: int) -> None:
        self.window.pause_generation(request, text, completion_tokens)

    def paused(self) -> PausedGeneration | None:
        return self.window.generation
