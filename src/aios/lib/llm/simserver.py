"""The simulated engine as an OpenAI-compatible endpoint on loopback.

:class:`SimServer` listens on ``127.0.0.1`` (an ephemeral port), speaks just
enough HTTP/1.1 for ``POST /v1/chat/completions`` (streamed as server-sent
events in a chunked body, or one JSON answer) and ``GET /v1/models``, and runs
every request through a :class:`~aios.lib.llm.simengine.SimEngine`, stepping
it as fast as the event loop allows (``time_scale`` > 0 sleeps each step's
virtual duration times the scale).  It is the endpoint the HTTP driver is
tested against: real sockets, real SSE, real chunked encoding.

The "model" is deterministic: a request's answer is a stream of words chosen
by hashing its seed and messages, ``n`` words long where ``n`` comes from the
same hash (at most ``max_tokens``: one word is one token and one event).  A
final assistant message is a snapshot to continue: the answer resumes at that
word, so an interrupted and resumed stream reads exactly like an unbroken one.
With ``response_format`` the answer is a JSON instance of the schema; with
``tools`` and a ``tool_choice`` of ``"required"`` or a tool's name it is a
tool call whose arguments are an instance of the tool's parameters.  Usage is
counted the same way: one token per word of every message, four per message
for the chat template, four for the generation prompt.

Faults for tests: :meth:`fail_next` answers the next requests with a status
(429 with ``Retry-After``, 503, ...) and :meth:`drop_after` cuts the next
streams after so many content events, mid-body, as a crashed server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from aios.lib.llm.simengine import EngineConfig, SimEngine, mix64

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 1 << 20
VOCAB: Final = ["the", "agent", "reads", "a", "plan", "and", "then", "calls", "one", "tool", "to", "check", "each", "step", "before", "it", "writes", "the", "answer", "with", "care", "so", "that", "every", "user", "gets", "what", "they", "asked", "for", "in", "time", "while", "the", "kernel", "shares", "the", "model", "fairly", "among", "all", "programs", "running", "today"]


def sim_tokens(text: str) -> int:
    return len(text.split())


def schema_instance(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A small valid instance of a JSON schema (the subset models are asked for)."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], rng, depth + 1)
    t = schema.get("type", "object")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(v, rng, depth + 1) for k, v in props.items()}
    if t == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [schema_instance(schema.get("items", {}), rng, depth + 1) for _ in range(n)]
    if t == "string":
        return " ".join(rng.choice(VOCAB) for _ in range(2))
    if t == "integer":
        lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 99))
        return rng.randint(lo, hi)
    if t == "number":
        return round(rng.uniform(float(schema.get("minimum", 0)),
                                 float(schema.get("maximum", 100))), 2)
    if t == "boolean":
        return rng.random() < 0.5
    return None


@dataclass(slots=True)
class _Gen:
    """One request being generated: the pieces it will stream."""

    rid: int
    pieces: list[str]
    prompt_tokens: int
    tool: tuple[str, str] | None  # (call id, name): pieces are the arguments
    stop: tuple[str, ...]
    queue: asyncio.Queue[tuple[int, str | None]] = field(default_factory=asyncio.Queue)


class SimServer:
    """``async with SimServer() as s: s.url``: an endpoint on loopback."""

    def __init__(self, engine: EngineConfig | None = None, *, seed: int = 0,
                 model: str = "sim-1", api_key: str | None = None,
                 time_scale: float = 0.0, natural_max: int = 48) -> None:
        self.engine = SimEngine(engine or EngineConfig(slots=8, step_tokens=256,
                                                       kv_tokens=32_768))
        self.seed, self.model, self.api_key = seed, model, api_key
        self.time_scale, self.natural_max = time_scale, natural_max
        self._server: asyncio.base_events.Server | None = None
        self._gens: dict[int, _Gen] = {}
        self._rid = 0
        self._wake = asyncio.Event()
        self._stepper: asyncio.Task[None] | None = None
        self._faults: deque[tuple[int, float | None]] = deque()
        self._drops: deque[int] = deque()
        self.requests = 0
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> SimServer:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._stepper = asyncio.create_task(self._step_loop())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def aclose(self) -> None:
        if self._stepper is not None:
            self._stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stepper
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None) -> None:
        self._faults.extend([(status, retry_after)] * n)

    def drop_after(self, chunks: int, n: int = 1) -> None:
        self._drops.extend([chunks] * n)

    # -- the engine loop -------------------------------------------------------------

    async def _step_loop(self) -> None:
        while True:
            if not self.engine.busy:
                self._wake.clear()
                await self._wake.wait()
            res = self.engine.step()
            if res is None:
                await asyncio.sleep(0)
                continue
            for rid, gen in res.progress:
                g = self._gens.get(rid)
                if g is not None:
                    g.queue.put_nowait((gen, None))
            for f in res.finished:
                g = self._gens.get(f.rid)
                if g is not None:
                    g.queue.put_nowait((f.generated, f.reason))
            await asyncio.sleep(res.duration_ns / 1e9 * self.time_scale)

    # -- HTTP --------------------------------------------------------------------------

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (ln.partition(":") for ln in lines[1:] if ln)}
            n = int(headers.get("content-length", "0"))
            if n > MAX_BODY:
                await self._respond(writer, 413, {"error": {"message": "body too large"}})
                return
            body = await reader.readexactly(n) if n else b""
            await self._route(method, path, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(self, w: asyncio.StreamWriter, status: int, obj: Any,
                       extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        hdr = [f"HTTP/1.1 {status} X", "content-type: application/json",
               f"content-length: {len(data)}", "connection: close"]
        hdr += [f"{k}: {v}" for k, v in (extra or {}).items()]
        w.write(("\r\n".join(hdr) + "\r\n\r\n").encode() + data)
        await w.drain()

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     w: asyncio.StreamWriter) -> None:
        if method == "GET" and path == "/v1/models":
            await self._respond(w, 200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "owned_by": "aios-sim"}]})
            return
        if method != "POST" or path != "/v1/chat/completions":
            await self._respond(w, 404, {"error": {"message": f"no route {method} {path}"}})
            return
        self.requests += 1
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            await self._respond(w, 401, {"error": {"message": "bad API key"}})
            return
        if self._faults:
            status, ra = self._faults.popleft()
            extra = {"retry-after": f"{ra}"} if ra is not None else {}
            await self._respond(w, status, {"error": {"message": "injected"}}, extra)
            return
        try:
            req = json.loads(body)
            g = self._plan(req)
        except (ValueError, KeyError, TypeError) as e:
            await self._respond(w, 400, {"error": {"message": f"bad request: {e}"}})
            return
        self._gens[g.rid] = g
        try:
            if req.get("stream"):
                await self._stream(g, req, w)
            else:
                await self._whole(g, w)
        finally:
            self._gens.pop(g.rid, None)
            self.engine.cancel(g.rid)

    # -- generation -------------------------------------------------------------------

    def _plan(self, req: dict[str, Any]) -> _Gen:
        msgs = req["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("messages must be a non-empty list")
        snapshot = ""
        if msgs[-1].get("role") == "assistant":
            snapshot = str(msgs[-1].get("content") or "")
            msgs = msgs[:-1]
        canon = json.dumps([[m.get("role"), m.get("content")] for m in msgs])
        seed = req.get("seed", self.seed)
        h = int.from_bytes(hashlib.blake2b(f"{seed}|{canon}".encode(), digest_size=8).digest(),
                           "little")
        prompt = sum(sim_tokens(str(m.get("content") or "")) + 4 for m in msgs) + 4
        prompt += sim_tokens(snapshot)
        max_tokens = int(req.get("max_tokens") or 256)
        rng = random.Random(h)
        tool: tuple[str, str] | None = None
        rf = req.get("response_format") or {}
        tools = req.get("tools") or []
        choice = req.get("tool_choice")
        if tools and (choice == "required" or isinstance(choice, dict)):
            fn = (next(t["function"] for t in tools
                       if t["function"]["name"] == choice["function"]["name"])
                  if isinstance(choice, dict) else tools[0]["function"])
            args = json.dumps(schema_instance(fn.get("parameters", {}), rng))
            pieces = [args[i:i + 4] for i in range(0, len(args), 4)]
            tool = (f"call_{h % 10**8}", fn["name"])
        elif rf.get("type") == "json_schema":
            text = json.dumps(schema_instance(rf["json_schema"]["schema"], rng))
            pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
        else:
            offset = sim_tokens(snapshot)
            n = 1 + mix64(h ^ 0xA5A5) % self.natural_max
            words = [VOCAB[mix64(h + i) % len(VOCAB)] for i in range(offset, max(n, offset))]
            pieces = [(" " if (i + offset) or snapshot else "") + wd
                      for i, wd in enumerate(words)]
        self._rid += 1
        stop = req.get("stop") or ()
        g = _Gen(self._rid, pieces, prompt, tool, tuple([stop] if isinstance(stop, str) else stop))
        target = max(1, len(pieces))
        self.engine.submit(g.rid, prompt, max(1, min(max_tokens, 1 << 20)), target)
        self._wake.set()
        return g

    def _chunk(self, g: _Gen, delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {"id": f"chatcmpl-{g.rid}", "object": "chat.completion.chunk",
               "model": self.model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}
        return self._event(obj)

    @staticmethod
    def _event(obj: Any) -> bytes:
        data = b"data: " + json.dumps(obj).encode() + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    async def _stream(self, g: _Gen, req: dict[str, Any], w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        drop = self._drops.popleft() if self._drops else None
        sent = 0
        events = 0
        text = ""
        reason: str | None = None
        w.write(self._chunk(g, {"role": "assistant", "content": ""}))
        if g.tool is not None:
            w.write(self._chunk(g, {"tool_calls": [{"index": 0, "id": g.tool[0], "type": "function",
                                                    "function": {"name": g.tool[1],
                                                                 "arguments": ""}}]}))
        while reason is None:
            total, reason = await g.queue.get()
            while sent < min(total, len(g.pieces)):
                piece = g.pieces[sent]
                sent += 1
                if g.tool is not None:
                    w.write(self._chunk(g, {"tool_calls": [{"index": 0, "function": {
                        "arguments": piece}}]}))
                    continue
                cut = self._stop_at(text + piece, g.stop)
                if cut is not None:
                    piece = (text + piece)[:cut][len(text):]
                    reason = "stop"
                text += piece
                if piece:
                    w.write(self._chunk(g, {"content": piece}))
                    events += 1
                if drop is not None and events >= drop:
                    await w.drain()
                    w.transport.abort()  # mid-body: the client sees a broken stream
                    return
                if reason == "stop" and cut is not None:
                    break
            await w.drain()
        done = "tool_calls" if g.tool is not None else reason
        w.write(self._chunk(g, {}, done))
        if (req.get("stream_options") or {}).get("include_usage"):
            w.write(self._event({"id": f"chatcmpl-{g.rid}", "object": "chat.completion.chunk",
                                 "model": self.model, "choices": [], "usage": {
                                     "prompt_tokens": g.prompt_tokens, "completion_tokens": sent,
                                     "total_tokens": g.prompt_tokens + sent}}))
        w.write(self._event_raw(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await w.drain()

    @staticmethod
    def _event_raw(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    @staticmethod
    def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
        cuts = [text.find(s) for s in stops if s in text]
        return min(cuts) if cuts else None

    async def _whole(self, g: _Gen, w: asyncio.StreamWriter) -> None:
        total, reason = 0, None
        while reason is None:
            total, reason = await g.queue.get()
        n = min(total, len(g.pieces))
        text = "".join(g.pieces[:n])
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if g.tool is not None:
            msg = {"role": "assistant", "content": None, "tool_calls": [
                {"id": g.tool[0], "type": "function",
                 "function": {"name": g.tool[1], "arguments": text}}]}
            reason = "tool_calls"
        await self._respond(w, 200, {
            "id": f"chatcmpl-{g.rid}", "object": "chat.completion", "model": self.model,
            "choices": [{"index": 0, "message": msg, "finish_reason": reason}],
            "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": n,
                      "total_tokens": g.prompt_tokens + n}})
