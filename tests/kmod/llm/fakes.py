"""A scripted chat driver: the test decides when each token comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aios.lib.devices import DriverSpec
from aios.lib.llm.chat import (
    FEATURES,
    ChatChunk,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Usage,
    collect,
)

SPEC = DriverSpec("scripted-llm", "llm", "1.0.0", None, "a test double")


class ScriptedDriver:
    """Answers ``free`` tokens at once, then one token per ``release()``; counts
    requests and streams closed before their end."""

    name = "scripted-llm"

    def __init__(self, *, slots: int = 2, free: int = 1_000_000, prompt_tokens: int = 10) -> None:
        self.slots = slots
        self.free = free
        self.prompt_tokens = prompt_tokens
        self.requests: list[ChatRequest] = []
        self.closed_early = 0
        self.tokens_sent = 0
        self._gate = asyncio.Semaphore(0)

    def info(self) -> DriverInfo:
        return DriverInfo(self.name, "1.0.0", "scripted", self.slots, 4096, FEATURES)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        n = 0
        finished = False
        try:
            while n < request.max_tokens:
                if n >= self.free:
                    await self._gate.acquire()
                else:
                    await asyncio.sleep(0)
                n += 1
                self.tokens_sent += 1
                yield ChatChunk(f" t{n}")
            finished = True
            yield ChatChunk("", "length", Usage(self.prompt_tokens, n))
        finally:
            if not finished:
                self.closed_early += 1

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await collect(self.stream(request))

    async def aclose(self) -> None:
        return None
