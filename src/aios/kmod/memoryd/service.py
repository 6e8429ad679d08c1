"""memoryd inside a running kernel: one worker thread, one MemoryCore, kernel objects.

Design
------
**One thread owns the fabric.**  :class:`~aios.kmod.memoryd.core.MemoryCore`
holds a SQLite connection and vector indexes and is not meant to be shared
across threads; the embedder (MiniLM on ONNX Runtime) costs milliseconds per
call.  Neither may run on the kernel thread, which must keep dispatching
traps.  So each kernel gets one :class:`MemoryFabric` with a *single-thread*
executor: every job that touches the core or the semantic router runs there,
in submission order, and nothing else ever touches them.  Both are created
lazily by the first job (loading MiniLM takes about a second), so a kernel
that never uses the fabric pays nothing.  The embedders are process-wide
singletons (``default_embedder``) and not thread-safe, so jobs of *all*
kernels in one process also take a process-wide lock; one process normally
hosts one kernel, so the lock is uncontended.

**Async syscalls.**  A handler validates its arguments and capabilities on
the kernel thread (so bad input and missing rights fail at once and change
nothing), then :meth:`MemoryFabric.submit` creates a kernel async op, runs
the job on the worker and, back on the kernel thread (an asyncio done
callback), optionally passes the result through ``then`` (which may install
a capability) and completes the op.  The caller's SDK wrapper waits with
GET_ASYNC_RESULT.  This is ``Kernel.run_in_thread`` with a dedicated thread
and a kernel-thread continuation; like it, an in-flight job counts in
``kernel.external`` so a kernel running until idle waits for it.

**Namespaces are capabilities.**  A namespace is a kernel object of kind
``MEMNS`` whose payload is its name; one object per namespace while any
capability to it exists.  READ / WRITE / GRANT on the capability are the
core's read / write / grant rights (the bit values coincide), handed to the
core with every job, so revocation (CAP_REVOKE) takes effect on the next
call, and sharing is the ordinary CAP_GRANT.  Creating a namespace charges
its byte quota to the creator's authority (the MEMORY resource, like a
region) until the last capability to it is gone.

**Typing.**  The core, the router and the embedders are imported by name
and typed ``Any`` here: this module is reached from ``boot.py``,
which is checked with ``mypy --strict``, and naming them would pull numpy,
ONNX Runtime and jsonschema (untyped) into that check and into the
kernel's import time.

**State.**  ``$AIOS_HOME/memory`` when the kernel has a home, else a
temporary directory removed when the kernel closes.  ``kernel.close`` is
wrapped (as the security glue does) to close the core on its own thread.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError, Busy, Cancelled, KernelPanic
from aios.kernel.accounts import payload_bytes
from aios.kernel.registry import Key
from aios.lib.histogram import Histogram

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.capabilities import KObject
    from aios.kernel.kernel import Kernel
    from aios.kernel.quotas import Charge

log = logging.getLogger("aios.memoryd")

DEFAULT_NS_ITEMS = 10_000
DEFAULT_NS_BYTES = 16 << 20
MAX_NS_ITEMS = 1_000_000
MAX_NS_BYTES = 1 << 30

MEMORY_HINT = ("stop the kernel and restore the memory directory from a backup, or move memory.sqlite "
               "aside to start with empty memory (vector indexes are rebuilt from it)")

_PROCESS_LOCK = threading.Lock()  # embedders are process-wide and not thread-safe


@dataclass(frozen=True, slots=True)
class NsRef:
    """Payload of a MEMNS kernel object."""

    name: str


class MemoryFabric:
    """A kernel's memoryd + semantic-ipcd state: the worker thread and what lives on it."""

    def __init__(self, k: Kernel, embedder_spec: str | None = None) -> None:
        self.k = k
        self.spec = embedder_spec
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="aios-memfabric")
        self._tmp: str | None = None
        if k.home is not None:
            self.directory = Path(k.home) / "memory"
        else:
            self._tmp = tempfile.mkdtemp(prefix="aios-memory-")
            self.directory = Path(self._tmp)
        # worker thread only:
        self._core: Any | None = None
        self._router: Any | None = None
        self._embedder: Any | None = None
        self.choice: Any | None = None
        # kernel thread only:
        self.objects: dict[str, KObject] = {}  # namespace name -> live MEMNS object
        self.charges: dict[int, Charge] = {}  # object id -> creation charge
        self.skills: dict[int, set[str]] = {}  # aid -> registered skill names
        self.service_obj: KObject | None = None  # semantic-ipcd's SERVICE object
        self.jobs = 0
        self.closed = False
        self.search_seconds = Histogram()  # archival search latency (observed on the worker)

    # -- worker side (only ever called on the worker thread) -------------------

    def embedder(self) -> Any:
        if self._embedder is None:
            emb = importlib.import_module("aios.lib.vectors.embedding")
            self._embedder, self.choice = emb.default_embedder(self.spec)
        return self._embedder

    def core(self) -> Any:
        if self._core is None:
            core = importlib.import_module("aios.kmod.memoryd.core")
            self._core = core.MemoryCore(self.directory, self.embedder())
            for line in self._core.recoveries:
                log.warning("%s", line)
        return self._core

    def router(self) -> Any:
        if self._router is None:
            sem = importlib.import_module("aios.kmod.semantic_ipcd.core")
            self._router = sem.SemanticRouter(self.embedder())
        return self._router

    def _job(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with _PROCESS_LOCK:
            return fn(*args)

    # -- kernel side -----------------------------------------------------------

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...],
            on_done: Callable[[Any, AIOSError | None], None], *,
            agent: Agent | None = None, nbytes: int = 0) -> None:
        """Run ``fn(*args)`` on the worker; ``on_done(value, error)`` on the kernel thread.

        A request in flight is a kernel buffer: ``JOB_COST + nbytes`` is charged to
        ``agent``'s memory quota until it is done (QuotaExceeded if it does not fit)."""
        from aios.abi.limits import JOB_COST

        k = self.k
        if self.closed:
            raise Busy("the memory fabric is shut down")
        cost = JOB_COST + nbytes
        owner = agent.aid if agent is not None else 0
        k.ledger.take(owner, cost)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self._job, fn, args)
        k.external += 1
        self.jobs += 1

        def done(f: asyncio.Future[Any]) -> None:
            k.external -= 1
            k.ledger.give(owner, cost)
            value: Any = None
            err: AIOSError | None = None
            if f.cancelled():
                err = Cancelled("memory fabric job cancelled")
            else:
                exc = f.exception()
                if exc is None:
                    value = f.result()
                else:
                    err = self._as_error(exc)
            try:
                on_done(value, err)
            finally:
                k.kick()

        fut.add_done_callback(done)

    def submit(self, a: Agent, fn: Callable[..., Any], *args: Any,
               then: Callable[[Any], Any] | None = None,
               undo: Callable[[], None] | None = None, nbytes: int = 0) -> int:
        """Start a job for agent ``a``; returns the async handle its result completes.

        ``then`` maps the worker's result on the kernel thread (may raise a taxonomy
        error); ``undo`` runs on the kernel thread if the job or ``then`` failed.
        """
        k = self.k
        op = k.new_async(a)

        def finish(value: Any, err: AIOSError | None) -> None:
            if err is None and then is not None:
                try:
                    value = then(value)
                except AIOSError as e:
                    err = e
            if err is not None and undo is not None:
                undo()
            if err is not None:
                k.complete_async(op, error=err)
            else:
                k.complete_async(op, value)

        try:
            self.run(fn, args, finish, agent=a, nbytes=nbytes + payload_bytes(args))
        except AIOSError:
            k.drop_async(op.handle)
            if undo is not None:
                undo()
            raise
        return op.handle

    def completed(self, a: Agent, value: Any) -> int:
        """An async handle that is already done (for calls that need no worker)."""
        op = self.k.new_async(a)
        self.k.complete_async(op, value)
        return op.handle

    def totals(self, timeout: float) -> tuple[int, int, int] | None:
        """``(namespaces, items, bytes)`` of the whole store, read on the worker within
        ``timeout`` seconds; None when the store was never opened (nothing is loaded for
        the asking) or the worker is busy longer than that (metrics scrapes)."""
        if self._core is None or self.closed:
            return None

        def job() -> tuple[int, int, int]:
            core = self.core()
            return len(core.namespaces()), *core.totals()

        try:
            return self._pool.submit(self._job, job, ()).result(timeout)  # type: ignore[no-any-return]
        except Exception:
            return None

    def detach(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire and forget on the worker (no loop needed): e.g. forgetting a dead agent's skills."""
        if not self.closed:
            self._pool.submit(self._job, fn, args)

    def _as_error(self, exc: BaseException) -> AIOSError:
        """The storage edge of the memory store: a damaged or unreadable store is
        ``StorageError`` (naming the file and what to do), never ``KernelPanic``."""
        if isinstance(exc, AIOSError):
            return exc
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
            return Busy(f"memory store: {exc}")
        if isinstance(exc, (sqlite3.Error, OSError, ValueError, EOFError)):
            from aios.lib.storage import storage_error

            return storage_error(exc, self.directory / "memory.sqlite", "the memory store", MEMORY_HINT)
        self.k.stats["panics"] += 1
        log.error("memory fabric job failed: %r", exc, exc_info=exc)
        self.k.publish("kernel.panic", 0, handler="memoryd", error=repr(exc))
        return KernelPanic(f"memory fabric: {exc!r}")

    # -- namespace objects -----------------------------------------------------

    def ns_object(self, name: str) -> KObject:
        """The live MEMNS object for ``name`` (made on first use)."""
        from aios.abi.rights import ObjKind

        obj = self.objects.get(name)
        if obj is None or obj.destroyed:
            obj = self.k.cdt.new_object(ObjKind.MEMNS, NsRef(name), self._ns_destroyed)
            self.objects[name] = obj
        return obj

    def _ns_destroyed(self, obj: KObject) -> None:
        ref: NsRef = obj.payload
        if self.objects.get(ref.name) is obj:
            del self.objects[ref.name]
        chg = self.charges.pop(obj.oid, None)
        if chg is not None:
            self.k.cdt.uncharge(chg)

    # -- shutdown --------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True

        def shut() -> None:
            if self._core is not None:
                self._core.close()
                self._core = None

        try:
            self._pool.submit(self._job, shut, ()).result(timeout=30)
        except Exception as e:  # closing must not stop the kernel's shutdown
            log.warning("memory fabric close: %r", e)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


MEMORYD: Key[MemoryFabric] = Key("memoryd")


def install(k: Kernel, embedder_spec: str | None = None) -> MemoryFabric:
    """The memoryd kernel module: a (lazy) fabric in ``k.ext[MEMORYD]``, its syscall
    block (100-119), and a shutdown hook that closes the store."""
    from aios.kmod.memoryd.syscalls import HANDLERS

    fab = MemoryFabric(k, embedder_spec or os.environ.get("AIOS_EMBEDDER") or None)
    k.ext[MEMORYD] = fab
    k.registry.syscalls.block("memoryd").add_all(HANDLERS)
    k.registry.on_shutdown(fab.close, order=50)
    return fab


def fabric(k: Kernel) -> MemoryFabric:
    """The kernel's fabric (NoSuchObject when memoryd is not installed)."""
    return k.ext[MEMORYD]


# -- plain views of the core's records (what crosses the syscall boundary) ------


def record_view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "namespace": r.namespace, "tier": r.tier.value, "text": r.text,
            "meta": r.meta, "created": r.created, "expires": r.expires, "role": r.role}


def hit_view(h: Any) -> dict[str, Any]:
    return {**record_view(h.record), "score": round(float(h.score), 6)}


def block_view(b: Any) -> dict[str, Any]:
    return {"namespace": b.namespace, "label": b.label, "value": b.value, "limit": b.limit,
            "version": b.version, "updated": b.updated}


def usage_view(name: str, u: Any) -> dict[str, Any]:
    return {"namespace": name, "items": u.items, "bytes": u.bytes, "quota_items": u.quota_items,
            "quota_bytes": u.quota_bytes, "by_tier": {t.value: n for t, n in u.by_tier.items()}}
