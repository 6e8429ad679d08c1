"""The OpenAI chat wire format, sans I/O: request bodies, SSE, stream assembly.

Three drivers speak this format: the HTTP driver over a socket, the embedded
llama.cpp server through its in-process API (which hands back the same chunk
dictionaries), and the simulated endpoint's loopback server.  So the encoding
and decoding live here once, as pure functions and two small state machines:

* :func:`request_body` turns a :class:`ChatRequest` into the JSON body
  (``response_format`` with a JSON schema, ``tools``, ``stream_options``
  asking for usage, and the resume convention: the snapshot becomes a final
  assistant message that the server continues, which llama.cpp's server does
  by default and vLLM with ``continue_final_message``).
* :class:`SSEDecoder` splits a byte stream into server-sent events
  (``data:`` lines, multi-line data, comments, CR/LF variants, ``[DONE]``).
* :class:`StreamAssembler` folds chunk dictionaries into :class:`ChatChunk`
  records: text deltas at once; tool-call fragments (which arrive as an
  index, then an id and a name, then pieces of the arguments) assembled; the
  finish reason held back until the usage chunk that ``include_usage``
  promises after it, so the final chunk carries both.
* :func:`error_for_status` maps an HTTP status to the error taxonomy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from aios.abi.errors import (
    AIOSError,
    Busy,
    DeviceError,
    InvalidArgument,
    MessageTooLarge,
    NoSuchObject,
    PermissionDenied,
    ProtocolError,
    TimedOut,
)
from aios.lib.llm.chat import ChatChunk, ChatRequest, Message, ToolCall, Usage

MAX_EVENT_BYTES: Final = 1 << 20  # one SSE event larger than this is a broken peer


def request_body(
    req: ChatRequest, model: str, *, stream: bool = True, resume_extra: bool = False
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/chat/completions`` for ``req``."""
    msgs = [m.to_openai() for m in req.messages]
    if req.resume_text:
        msgs.append(Message("assistant", req.resume_text).to_openai())
    body: dict[str, Any] = {
        "model": model,
        "messages": msgs,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if req.seed is not None:
        body["seed"] = req.seed
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.response_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": dict(req.response_schema),
                            "strict": True},
        }
    if req.tools:
        body["tools"] = [t.to_openai() for t in req.tools]
        tc = req.tool_choice
        if tc in ("auto", "none", "required"):
            body["tool_choice"] = tc
        elif tc is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": tc}}
    if req.resume_text and resume_extra:
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    return body


class SSEDecoder:
    """Incremental server-sent-events parser: bytes in, ``data`` payloads out."""

    __slots__ = ("_buf", "_data", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self.done = False  # saw "data: [DONE]"

    def feed(self, raw: bytes) -> list[str]:
        self._buf += raw
        if len(self._buf) > MAX_EVENT_BYTES:
            raise ProtocolError("server-sent event larger than 1 MiB")
        out: list[str] = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                return out
            line = self._buf[:i].rstrip(b"\r").decode("utf-8", "replace")
            self._buf = self._buf[i + 1 :]
            if not line:
                if self._data:
                    data = "\n".join(self._data)
                    self._data = []
                    if data.strip() == "[DONE]":
                        self.done = True
                    else:
                        out.append(data)
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            if name == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
            # "event", "id", "retry": not used by chat completions

    def close(self) -> list[str]:
        """End of input: an event still buffered without its blank line counts."""
        out: list[str] = []
        if self._buf.strip():
            out.extend(self.feed(b"\n"))
        if self._data:
            out.extend(self.feed(b"\n"))
        return out


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    try:
        return Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    args: list[str] = field(default_factory=list)


class StreamAssembler:
    """Folds OpenAI ``chat.completion.chunk`` dictionaries into :class:`ChatChunk`."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.content_chunks = 0  # chunks that carried text (one token each on most servers)
        self.text_len = 0
        self.texts: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._emitted_final = False

    def feed(self, chunk: Any) -> list[ChatChunk]:
        if not isinstance(chunk, dict):
            raise ProtocolError("stream chunk is not a JSON object")
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message", "") if isinstance(err, dict) else str(err)
            code = err.get("code", 500) if isinstance(err, dict) else 500
            raise error_for_status(code if isinstance(code, int) else 500, msg)
        out: list[ChatChunk] = []
        u = _usage(chunk.get("usage"))
        if u is not None:
            self.usage = u
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                self.content_chunks += 1
                self.text_len += len(text)
                self.texts.append(text)
                out.append(ChatChunk(text))
            for tc in (delta.get("tool_calls") or ()) if isinstance(delta, dict) else ():
                self._tool_fragment(tc)
            fr = choice.get("finish_reason")
            if isinstance(fr, str) and fr:
                self.finish_reason = fr
        return out

    def _tool_fragment(self, tc: Any) -> None:
        if not isinstance(tc, dict):
            return
        idx = tc.get("index", len(self._calls))
        p = self._calls.setdefault(idx if isinstance(idx, int) else 0, _PartialCall())
        if tc.get("id"):
            p.id = str(tc["id"])
        fn = tc.get("function") or {}
        if isinstance(fn, dict):
            if fn.get("name"):
                p.name = str(fn["name"])
            if isinstance(fn.get("arguments"), str):
                p.args.append(fn["arguments"])

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(p.id or f"call_{i}", p.name, "".join(p.args))
            for i, p in sorted(self._calls.items())
        )

    @property
    def complete(self) -> bool:
        """Saw a finish reason (the usage chunk may still follow)."""
        return self.finish_reason is not None

    def final(self) -> ChatChunk:
        """The closing chunk; call once the stream has ended normally."""
        if self.finish_reason is None:
            raise DeviceError("the stream ended without a finish reason")
        self._emitted_final = True
        calls = self.tool_calls
        reason = "tool_calls" if calls and self.finish_reason == "stop" else self.finish_reason
        return ChatChunk("", reason, self.usage or Usage(), calls)


def error_for_status(status: int, message: str = "") -> AIOSError:
    """The taxonomy's error for an HTTP status from a model endpoint."""
    text = f"model endpoint answered {status}" + (f": {message[:300]}" if message else "")
    if status in (400, 422):
        return InvalidArgument(text, status=status)
    if status in (401, 403):
        return PermissionDenied(text, status=status)
    if status == 404:
        return NoSuchObject(text, status=status)
    if status == 408:
        return TimedOut(text, status=status)
    if status == 413:
        return MessageTooLarge(text, status=status)
    if status == 429:
        return Busy(text, status=status)
    return DeviceError(text, status=status)


def decode_event(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"stream event is not JSON: {e}") from e
