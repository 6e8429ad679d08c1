"""OpenAI-compatible HTTP driver: vLLM, Ollama, llama.cpp's server, hosted APIs.

The driver streams every request (``stream: true`` with
``stream_options.include_usage``, so the last event carries exact token
counts) and turns transport trouble into one of three outcomes:

* **Retry** with exponential backoff and jitter (seeded, so tests are
  deterministic) on 429 and 5xx answers, honouring ``Retry-After``, and on
  connection errors and timeouts before the first byte.
* **Resume** when a stream breaks after text has been delivered: the next
  attempt sends the text so far as the start of the assistant's answer (the
  snapshot; llama.cpp continues a final assistant message by default, vLLM
  with ``continue_final_message``, sent when ``resume_extra`` is set) with
  ``max_tokens`` reduced by what was delivered.  The caller sees one
  uninterrupted stream; the usage counts the prompt once and every generated
  token once, taking each content event as one token (which is what these
  servers send), and reports what the device re-read as ``recomputed_tokens``.
* **Fail** with the taxonomy's error once retries are spent or the error is
  not transient (``error_for_status``: 4xx are the caller's fault).

A :class:`CircuitBreaker` (closed, open, half-open) stops hammering an
endpoint that keeps failing: while open, calls fail at once with ``Busy``.

API keys come from an environment variable or from a file under
``$AIOS_HOME/keys/`` that must be mode 0600; they live in a :class:`Secret`
whose ``repr`` and ``str`` are masked, and go nowhere but the
``Authorization`` header.

All HTTP goes through one seam, ``httpx.AsyncBaseTransport`` (one method,
``handle_async_request``), so logic tests use ``httpx.MockTransport`` and no
sockets, and the same driver talks to the simulated endpoint over loopback.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import httpx

from aios.abi.errors import (
    AIOSError,
    Busy,
    DeviceError,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    TimedOut,
)
from aios.abi.home import aios_home
from aios.lib.llm.chat import (
    FEATURES,
    ChatChunk,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Usage,
    collect,
)
from aios.lib.llm.openai import (
    SSEDecoder,
    StreamAssembler,
    decode_event,
    error_for_status,
    request_body,
)

DRIVER_VERSION: Final = "1.0.0"
RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
MAX_ERROR_BODY: Final = 4096
KEY_ENV: Final = "AIOS_LLM_API_KEY"
DEFAULT_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)


class Secret:
    """A credential that never prints itself."""

    __slots__ = ("_v",)

    def __init__(self, value: str) -> None:
        if not value or any(c in value for c in "\r\n"):
            raise InvalidArgument("an API key must be one non-empty line")
        self._v = value

    def reveal(self) -> str:
        return self._v

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def load_api_key(
    *, env: str | None = KEY_ENV, name: str | None = None, home: str | Path | None = None
) -> Secret | None:
    """The key from ``$env``, else from ``$AIOS_HOME/keys/<name>.key`` (mode 0600)."""
    if env and os.environ.get(env):
        return Secret(os.environ[env].strip())
    if name is None:
        return None
    if not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgument("key name must be [A-Za-z0-9_-]")
    base = aios_home(home)
    path = base / "keys" / f"{name}.key"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NoSuchObject(f"no key file {path}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionDenied(
            f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            "make it 0600"
        )
    return Secret(path.read_text().strip())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base_s: float = 0.25
    max_s: float = 8.0
    jitter: float = 0.25  # +- this fraction of the delay

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_s))
        d: float = min(self.max_s, self.base_s * (2.0 ** attempt))
        return max(0.0, d * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after ``threshold`` failures in a row; after ``cooldown_s`` lets one
    call through (half-open): its success closes the circuit, its failure opens
    it again."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or cooldown_s < 0:
            raise InvalidArgument("threshold >= 1 and cooldown >= 0")
        self.threshold, self.cooldown_s, self._clock = threshold, cooldown_s, clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trips = 0

    def check(self) -> None:
        if self.state is BreakerState.OPEN:
            if self._clock() - self.opened_at < self.cooldown_s:
                left = self.cooldown_s - (self._clock() - self.opened_at)
                raise Busy(f"model endpoint circuit is open ({left:.1f} s until a retry)")
            self.state = BreakerState.HALF_OPEN

    def success(self) -> None:
        self.state, self.failures = BreakerState.CLOSED, 0

    def failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            if self.state is not BreakerState.OPEN:
                self.trips += 1
            self.state, self.opened_at = BreakerState.OPEN, self._clock()


class _Broken(Exception):
    """The stream ended before its finish reason."""


def _retry_after(resp: httpx.Response) -> float | None:
    v = resp.headers.get("retry-after")
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None  # an HTTP date: use our own backoff


class HttpDriver:
    """A model behind an OpenAI-compatible ``/v1/chat/completions``."""

    name = "llm-http"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: Secret | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int = 0,
        resume_extra: bool = False,
        slots: int = 8,
        context_tokens: int = 8192,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument("base_url must be http(s)://...")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.resume_extra = resume_extra
        self._slots, self._ctx = slots, context_tokens
        self._client = httpx.AsyncClient(transport=transport, timeout=timeout)
        self.retries = 0
        self.resumes = 0

    def __repr__(self) -> str:
        return f"HttpDriver({self.base_url!r}, model={self.model!r})"

    def info(self) -> DriverInfo:
        return DriverInfo(self.name, DRIVER_VERSION, self.model, self._slots, self._ctx, FEATURES)

    def _headers(self) -> dict[str, str]:
        h = {"accept": "text/event-stream"}
        if self._key is not None:
            h["authorization"] = f"Bearer {self._key.reveal()}"
        return h

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await collect(self.stream(request))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        url = f"{self.base_url}/v1/chat/completions"
        req = request
        carried = 0  # content events delivered by earlier, broken attempts
        attempt = 0
        while True:
            self.breaker.check()
            body = request_body(req, self.model, stream=True, resume_extra=self.resume_extra)
            asm = StreamAssembler()
            got_text: list[str] = []
            wait: float | None = None
            failure: AIOSError | None = None
            try:
                async with self._client.stream("POST", url, json=body,
                                               headers=self._headers()) as resp:
                    if resp.status_code != 200:
                        raw = await resp.aread()
                        err = error_for_status(resp.status_code,
                                               raw[:MAX_ERROR_BODY].decode("utf-8", "replace"))
                        if resp.status_code not in RETRY_STATUS:
                            raise err
                        self.breaker.failure()
                        failure, wait = err, _retry_after(resp)
                    else:
                        dec = SSEDecoder()
                        async for raw in resp.aiter_bytes():
                            for data in dec.feed(raw):
                                for ch in asm.feed(decode_event(data)):
                                    got_text.append(ch.text)
                                    yield ch
                            if dec.done:
                                break
                        for data in dec.close():
                            for ch in asm.feed(decode_event(data)):
                                got_text.append(ch.text)
                                yield ch
                        if not asm.complete:
                            raise _Broken
                        self.breaker.success()
                        yield self._final(asm, carried)
                        return
            except (httpx.TimeoutException, httpx.TransportError, _Broken) as e:
                self.breaker.failure()
                failure = (TimedOut("model endpoint timed out")
                           if isinstance(e, httpx.TimeoutException)
                           else DeviceError("model endpoint stream broke"))
            if got_text:  # resume from the snapshot instead of starting over
                n = asm.content_chunks
                carried += n
                left = request.max_tokens - carried
                if left < 1:
                    yield ChatChunk("", "length", Usage(0, carried, 0))
                    return
                req = request.resumed(req.resume_text + "".join(got_text), left)
                self.resumes += 1
            attempt += 1
            assert failure is not None
            if attempt >= self.retry.attempts or self.breaker.state is BreakerState.OPEN:
                raise failure
            self.retries += 1
            await self._sleep(self.retry.delay(attempt - 1, self._rng, wait))

    @staticmethod
    def _final(asm: StreamAssembler, carried: int) -> ChatChunk:
        fin = asm.final()
        u = fin.usage or Usage()
        if carried:
            u = Usage(max(0, u.prompt_tokens - carried), u.completion_tokens + carried,
                      u.prompt_tokens)
        return ChatChunk("", fin.finish_reason, u, fin.tool_calls)
