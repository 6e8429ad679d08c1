"""Language models from an agent: ``ctx.llm``.

A model is a device the kernel shares among agents; an agent reaches it
through a DEVICE capability in its space (given by its parent, usually with a
token budget, or opened by an operator with ``DEV_OPEN``)::

    reply = await ctx.llm.chat([{"role": "user", "content": "Name a colour."}],
                               max_tokens=16, seed=1)
    reply.text, reply.usage["completion_tokens"]

    async for piece in ctx.llm.chat(messages, stream=True):   # tokens as they come
        print(piece, end="")

    data = (await ctx.llm.chat(msgs, json_schema=SCHEMA)).json()

Messages are dicts (``role``, ``content``) or plain strings (a user message).
A call names its priority class (``"interactive"``, ``"normal"``, ``"batch"``),
an optional deadline in seconds and the program it belongs to; the kernel's
device queue orders it among every agent's calls.  Abandoning a stream
(closing the iterator, leaving ``async with``) cancels the call on the device,
as does the agent's death.  Errors are the kernel's: ``QuotaExceeded`` when a
token budget cannot cover the call (nothing was sent), ``PermissionDenied``
without the ``use`` right, ``Busy`` for a deadline that cannot be met.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.sdk import syscalls as sc


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished call: the text, why it ended, tool calls, and what it cost."""

    text: str
    finish_reason: str
    usage: dict[str, Any]
    tool_calls: tuple[dict[str, Any], ...] = ()
    device: str = ""
    model: str = ""

    def json(self) -> Any:
        """The answer parsed as JSON (for ``json_schema`` calls)."""
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"the model's answer is not JSON ({e})") from e


def _messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for m in messages:
        out.append({"role": "user", "content": m} if isinstance(m, str) else dict(m))
    return out


@dataclass
class Call:
    """One call: ``await`` it for the :class:`Reply`, or ``async for`` its text pieces
    (then :attr:`reply` holds the end)."""

    llm: LLM
    messages: list[dict[str, Any]]
    opts: dict[str, Any]
    handle: int | None = None
    reply: Reply | None = None
    _parts: list[str] = field(default_factory=list)

    async def _start(self) -> int:
        if self.handle is None:
            slot = await self.llm.resolve()
            self.handle = await sc.llm_chat(slot, self.messages, self.opts)
        return self.handle

    def _end(self, r: dict[str, Any]) -> Reply:
        self.reply = Reply("".join(self._parts), r["finish_reason"], r["usage"],
                           tuple(r.get("tool_calls") or ()), r.get("device", ""), r.get("model", ""))
        return self.reply

    async def result(self) -> Reply:
        h = await self._start()
        r = await sc.llm_recv(h, None, True)
        self._parts.append(r["text"])
        return self._end(r)

    def __await__(self) -> Generator[Any, None, Reply]:
        return self.result().__await__()

    async def __aiter__(self) -> AsyncIterator[str]:
        h = await self._start()
        try:
            while True:
                r = await sc.llm_recv(h, None, False)
                if r["text"]:
                    self._parts.append(r["text"])
                    yield r["text"]
                if r["done"]:
                    self._end(r)
                    return
        finally:
            if self.reply is None:
                await self.cancel()

    async def cancel(self) -> dict[str, Any] | None:
        """Stop the call on the device (idempotent); returns what it was charged."""
        if self.handle is None or self.reply is not None:
            return None
        try:
            r: dict[str, Any] = await sc.llm_cancel(self.handle)
        except NoSuchObject:
            return None  # already ended and read
        return r


class LLM:
    """The agent's language model: the first model capability it holds, or ``slot``."""

    __slots__ = ("slot",)

    def __init__(self, slot: int | None = None) -> None:
        self.slot = slot

    async def resolve(self) -> int:
        if self.slot is None:
            held = (await sc.llm_stats(None))["devices"]
            if not held:
                raise NoSuchObject("this agent holds no language-model capability "
                                   "(its parent passes one in spawn's caps, or DEV_OPEN)")
            self.slot = int(held[0]["slot"])
        return self.slot

    def chat(self, messages: Any, *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: list[str] | str | None = None,
             json_schema: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None,
             tool_choice: str | None = None, priority: str | None = None,
             deadline_s: float | None = None, program: int | None = None,
             stream: bool = False) -> Call:
        """A call: ``await`` it (whole answer) or, with ``stream=True``, ``async for`` it."""
        opts: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        for k, v in (("seed", seed), ("stop", stop), ("json_schema", json_schema), ("tools", tools),
                     ("tool_choice", tool_choice), ("priority", priority),
                     ("deadline_s", deadline_s), ("program", program)):
            if v is not None:
                opts[k] = v
        del stream  # both forms are the same call; iterating it is what streams
        return Call(self, _messages(messages), opts)

    async def stats(self) -> dict[str, Any]:
        """This model's queue as the agent may see it (its own line; ADMIN: everyone's)."""
        r: dict[str, Any] = await sc.llm_stats(await self.resolve())
        return r

    async def usage(self) -> dict[str, Any]:
        """The agent's own LLM usage: totals and per program."""
        r: dict[str, Any] = await sc.llm_stats(None)
        return r

    async def budget(self, tokens: int, rights: Any = None) -> int:
        """A child capability of this model with a token budget (to give a child agent)."""
        r: int = await sc.llm_budget(await self.resolve(), tokens, rights)
        return r
