"""The one interface every language-model driver implements.

A driver turns a :class:`ChatRequest` into text.  The request is the
OpenAI-style chat request that every serving engine understands (vLLM, Ollama,
llama.cpp's server, hosted APIs) reduced to the parts an operating system must
reason about: the messages, how many tokens the answer may take
(``max_tokens``: what a budget reserves), sampling (``temperature``, ``seed``),
``stop`` strings, a JSON schema the answer must validate against
(``response_schema``), and tools the model may call.  ``resume_text`` is the
snapshot of an interrupted generation: the driver asks the model to continue
the assistant's answer from there, and the usage it reports counts only what
is new (see :class:`Usage`).

Streaming is an async iterator of :class:`ChatChunk`: text deltas as they are
decoded, then one final chunk with the finish reason, the assembled tool calls
and the usage.  Cancellation is asyncio's own: closing the iterator (``aclose()``, or leaving
an ``async with contextlib.aclosing(driver.stream(...))`` block; a bare
``break`` only closes it when it is garbage-collected) or cancelling the task
that drives it stops the generation on the device, and no usage is reported
for tokens never seen.
:func:`collect` turns a stream into a :class:`ChatResult`; every driver's
``chat`` is ``collect(stream(...))``.

Everything here is a frozen slotted dataclass, validated on construction: a
malformed request raises ``InvalidArgument`` before any device sees it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from aios.abi.errors import InvalidArgument

Role = Literal["system", "user", "assistant", "tool"]
ROLES: Final = frozenset({"system", "user", "assistant", "tool"})
FINISH_REASONS: Final = frozenset({"stop", "length", "tool_calls", "cancelled"})

MAX_TOKENS_LIMIT: Final = 1 << 20
MAX_STOP: Final = 4
MAX_MESSAGES: Final = 4096
SEED_MAX: Final = (1 << 32) - 2  # llama.cpp reserves 0xFFFFFFFF for "random"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: ``arguments`` is the JSON text it produced."""

    id: str
    name: str
    arguments: str

    def parsed(self) -> Any:
        """The arguments as JSON; ``InvalidArgument`` when the model wrote bad JSON."""
        try:
            return json.loads(self.arguments or "{}")
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"tool call {self.name!r}: arguments are not JSON ({e})") from e


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise InvalidArgument("tool name must be non-empty [A-Za-z0-9_-]", name=self.name)
        if not isinstance(self.parameters, Mapping):
            raise InvalidArgument("tool parameters must be a JSON schema object")

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str = ""
    name: str | None = None
    tool_call_id: str | None = None  # role == "tool": which call this answers
    tool_calls: tuple[ToolCall, ...] = ()  # role == "assistant": calls it made

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidArgument(f"message role must be one of {sorted(ROLES)}", role=self.role)
        if not isinstance(self.content, str):
            raise InvalidArgument("message content must be a string")
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidArgument("a tool message needs the tool_call_id it answers")

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return out


def user(text: str) -> Message:
    return Message("user", text)


def system(text: str) -> Message:
    return Message("system", text)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_schema: Mapping[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool's name
    top_p: float | None = None
    resume_text: str = ""  # the assistant's answer so far (a snapshot to continue)

    def __post_init__(self) -> None:
        if isinstance(self.messages, list):
            object.__setattr__(self, "messages", tuple(self.messages))
        if isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        if isinstance(self.tools, list):
            object.__setattr__(self, "tools", tuple(self.tools))
        if not self.messages or len(self.messages) > MAX_MESSAGES:
            raise InvalidArgument(f"a chat needs 1..{MAX_MESSAGES} messages")
        if not all(isinstance(m, Message) for m in self.messages):
            raise InvalidArgument("messages must be Message records")
        if (
            not isinstance(self.max_tokens, int)
            or isinstance(self.max_tokens, bool)
            or not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT
        ):
            raise InvalidArgument(f"max_tokens must be an int in [1, {MAX_TOKENS_LIMIT}]")
        t = self.temperature
        if not isinstance(t, int | float) or isinstance(t, bool) or not 0.0 <= t <= 2.0:
            raise InvalidArgument("temperature must be in [0, 2]")
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
            or not 0 <= self.seed <= SEED_MAX
        ):
            raise InvalidArgument(f"seed must be an int in [0, {SEED_MAX}]")
        if self.top_p is not None and not (
            isinstance(self.top_p, int | float) and 0.0 < self.top_p <= 1.0
        ):
            raise InvalidArgument("top_p must be in (0, 1]")
        if len(self.stop) > MAX_STOP or not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidArgument(f"stop takes at most {MAX_STOP} non-empty strings")
        if self.response_schema is not None and not isinstance(self.response_schema, Mapping):
            raise InvalidArgument("response_schema must be a JSON schema object")
        if self.response_schema is not None and self.tools:
            raise InvalidArgument("a request takes a response schema or tools, not both")
        names = {t.name for t in self.tools}
        if len(names) != len(self.tools):
            raise InvalidArgument("tool names must be distinct")
        tc = self.tool_choice
        if tc is not None and tc not in ("auto", "none", "required") and tc not in names:
            raise InvalidArgument(f"tool_choice {tc!r} names no tool of this request")
        if not isinstance(self.resume_text, str):
            raise InvalidArgument("resume_text must be a string")

    def prompt_chars(self) -> int:
        return sum(len(m.content) for m in self.messages)

    def resumed(self, text: str, max_tokens: int) -> ChatRequest:
        """The same request continuing after ``text`` with ``max_tokens`` left."""
        return ChatRequest(
            self.messages, max_tokens, self.temperature, self.seed, self.stop,
            self.response_schema, self.tools, self.tool_choice, self.top_p, text,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one request cost.

    ``prompt_tokens`` and ``completion_tokens`` are what the caller is charged:
    for a resumed request, the original prompt once and every generated token
    once.  ``recomputed_tokens`` is what the device did again to resume (the
    snapshot re-read as prompt): its cost, never the caller's."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    recomputed_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.recomputed_tokens + other.recomputed_tokens,
        )


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One streamed piece: a text delta, or (last) the finish reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    finish_reason: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()

    def json(self) -> Any:
        """The answer parsed as JSON (for schema-constrained requests)."""
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"the model's answer is not JSON ({e})") from e


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """What a driver tells the device bus about itself."""

    driver: str
    version: str
    model: str
    slots: int
    context_tokens: int
    features: frozenset[str] = frozenset()


FEATURES: Final = frozenset(
    {"stream", "stop", "seed", "temperature", "json_schema", "tools", "usage", "cancel", "resume"}
)


@runtime_checkable
class ChatDriver(Protocol):
    """A language model behind the device bus."""

    def info(self) -> DriverInfo: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...


async def collect(chunks: AsyncIterator[ChatChunk]) -> ChatResult:
    """Drain a stream into one result (the final chunk must come)."""
    parts: list[str] = []
    async for c in chunks:
        if c.text:
            parts.append(c.text)
        if c.final:
            assert c.finish_reason is not None
            return ChatResult("".join(parts), c.finish_reason, c.usage or Usage(), c.tool_calls)
    raise InvalidArgument("the stream ended without a final chunk")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate (about 4 characters a token in English,
    never less than one per word): what budgets reserve before the model has
    counted."""
    return max(len(text.split()), math.ceil(len(text) / 3)) if text else 0
