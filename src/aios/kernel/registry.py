"""The kernel's registry: how kernel modules plug in without the kernel naming them.

Linux's core never names its users: a subsystem registers its syscalls, its
file operations and its shutdown hooks.  This module is that seam for AIOS.
The kernel constructs one :class:`Registry` per kernel (``k.registry``) and
reads it; kernel modules (``aios.kmod.*``), installed by the composition
root ``aios.boot``, write it.  What can be registered:

* **Syscall blocks.**  :data:`aios.abi.sysno.BLOCKS` gives each owner its
  number ranges.  ``k.registry.syscalls.block(owner)`` returns a
  :class:`SyscallBlock`; ``block.add(Sys.X, handler)`` puts the handler in
  the dispatcher's table.  A number outside the owner's block is refused
  (``InvalidArgument``), so is a number already taken or a second block for
  the same owner (``AlreadyExists``): both are boot-time errors, loud and
  early.  The kernel registers its own blocks at construction.
* **Executor factories** by kind (``"isolated"``, ``"worker"``, ``"wasm"``):
  ``k.registry.executors.add(kind, factory)``.  The kernel asks for a kind
  and gets ``InvalidArgument`` when nothing provides it.
* **Shutdown callbacks** ``on_shutdown(fn, order)``: run by ``Kernel.close``
  after every agent was killed, lowest order first; one that raises does not
  stop the others (the first error is re-raised at the end).
* **Agent-exit callbacks** ``on_agent_exit(fn)``: ``fn(agent)`` once per
  agent that ends, after ``agent.lifecycle.exited`` was published, in
  registration order (``before_event=True``: just before it; supervision
  decides a restart there).
* **Syscall counting** ``count_syscalls()``: the dispatcher counts by number
  and failures by errno into two tables (metrics); not asked for, nothing is
  counted.
* **An IPC probe** ``set_ipc_probe(probe)`` (:class:`IpcProbe`): told of
  messages, calls, replies and semantic routes (metrics, traces); absent, the
  IPC paths pay one attribute test.
* **Typed extension state**: a module declares ``MEMORYD: Key[MemoryFabric]
  = Key("memoryd")`` and keeps its per-kernel state in ``k.ext[MEMORYD]``;
  a missing key is ``NoSuchObject`` naming the module.  There are no
  module-global maps keyed by kernel.

The kernel also defines a few keys of its own (:data:`SUPERVISOR`,
:data:`IMAGES`) for services it *calls* without importing them: the key's
type is a protocol written here, the implementation is a kernel module's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject
from aios.abi.sysno import BLOCKS, Sys

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.capabilities import Capability

log = logging.getLogger("aios.kernel.registry")

T = TypeVar("T")
Handler = Callable[..., Any]
TABLE_SIZE = max(hi for ranges in BLOCKS.values() for _lo, hi in ranges) + 1
ERRNO_SHIFT = 12  # syscall_errors keys: errno << 12 | syscall number (numbers are below 4096)


class Key(Generic[T]):
    """A typed name for one kernel module's per-kernel state."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


class Extensions:
    """Per-kernel state of kernel modules, by :class:`Key`."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[Key[Any], Any] = {}

    def __getitem__(self, key: Key[T]) -> T:
        try:
            v: T = self._d[key]
        except KeyError:
            raise NoSuchObject(f"kernel module {key.name!r} is not installed on this kernel") from None
        return v

    def __setitem__(self, key: Key[T], value: T) -> None:
        if key in self._d:
            raise AlreadyExists(f"kernel module {key.name!r} is already installed")
        self._d[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def get(self, key: Key[T]) -> T | None:
        return self._d.get(key)

    def pop(self, key: Key[T]) -> T | None:
        return self._d.pop(key, None)  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        return sorted(k.name for k in self._d)


class SyscallBlock:
    """One owner's numbers; ``add`` fills the dispatcher's table."""

    __slots__ = ("_table", "owner", "ranges")

    def __init__(self, table: SyscallTable, owner: str, ranges: tuple[tuple[int, int], ...]) -> None:
        self._table = table
        self.owner = owner
        self.ranges = ranges

    def __contains__(self, num: int) -> bool:
        return any(lo <= num <= hi for lo, hi in self.ranges)

    def add(self, num: int, handler: Handler) -> None:
        n = int(num)
        if n not in self:
            raise InvalidArgument(f"syscall {n} is outside the {self.owner!r} block {list(self.ranges)}")
        self._table.put(self.owner, n, handler)

    def add_all(self, handlers: Mapping[Sys, Handler]) -> None:
        for num, handler in handlers.items():
            self.add(num, handler)


class SyscallTable:
    """The dispatcher's list (index = syscall number) and who filled each entry."""

    def __init__(self) -> None:
        self.table: list[Handler | None] = [None] * TABLE_SIZE
        self.owners: dict[int, str] = {}
        self._blocks: dict[str, SyscallBlock] = {}

    def block(self, owner: str) -> SyscallBlock:
        ranges = BLOCKS.get(owner)
        if ranges is None:
            raise InvalidArgument(f"no syscall block is reserved for {owner!r} (see aios.abi.sysno.BLOCKS)")
        if owner in self._blocks:
            raise AlreadyExists(f"the {owner!r} syscall block is already registered")
        b = self._blocks[owner] = SyscallBlock(self, owner, ranges)
        return b

    def put(self, owner: str, num: int, handler: Handler) -> None:
        if not callable(handler):
            raise InvalidArgument(f"syscall {num}: handler is not callable")
        if self.table[num] is not None:
            raise AlreadyExists(f"syscall {num} is already registered by {self.owners[num]!r}")
        self.table[num] = handler
        self.owners[num] = owner

    def handler(self, num: int) -> Handler | None:
        return self.table[num] if 0 <= num < len(self.table) else None

    def count(self) -> int:
        return sum(1 for h in self.table if h is not None)

    def __iter__(self) -> Iterator[tuple[int, Handler]]:
        return ((n, h) for n, h in enumerate(self.table) if h is not None)


class ExecutorFactory(Protocol):
    """What the executors kernel module registers per kind.

    ``create(sink, disabled)`` builds the executor (not started);
    ``spec(aid, entry, info, sandbox)`` the spec its ``spawn`` takes, from the
    kernel's plain sandbox description; ``usage(consumed)`` the CPU record of
    an agent that consumed ``consumed`` units (Wasm fuel), or None."""

    def create(self, sink: Any, disabled: frozenset[str]) -> Any: ...

    def spec(self, aid: int, entry: str, info: dict[str, Any], sandbox: dict[str, Any]) -> Any: ...

    def usage(self, consumed: int) -> dict[str, Any] | None: ...


class ExecutorFactories:
    def __init__(self) -> None:
        self._by_kind: dict[str, ExecutorFactory] = {}

    def add(self, kind: str, factory: ExecutorFactory) -> None:
        if kind in self._by_kind:
            raise AlreadyExists(f"an executor of kind {kind!r} is already registered")
        self._by_kind[kind] = factory

    def __getitem__(self, kind: str) -> ExecutorFactory:
        f = self._by_kind.get(kind)
        if f is None:
            raise InvalidArgument(f"no executor of kind {kind!r} is installed on this kernel")
        return f

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)


class SupervisorPort(Protocol):
    """Restart policies (the supervision kernel module); the kernel calls these."""

    records: dict[int, Any]

    def register(self, a: Agent, parent: Agent, auth: Capability, entry: Any, opts: dict[str, Any],
                 policy: str, domain: str) -> None: ...

    def stop(self, a: Agent) -> None: ...


class ImagePort(Protocol):
    """The signed-image store (the images kernel module); ``AGENT_SPAWN`` of an image calls it."""

    def is_store_ref(self, ref: str) -> bool: ...

    def resolve(self, ref: str, home: Any) -> tuple[Any, Any]: ...


class IpcProbe(Protocol):
    """What observes binary IPC and semantic routes (the observe kernel module: metrics
    and traces).  The kernel calls it only when one is registered, so an unobserved
    kernel pays one attribute test per message.

    ``sent`` counts plain messages; ``call`` is a call leaving ``a`` for the mailbox of
    ``receiver`` (``parent``: a route token from :meth:`route`, else the caller's own
    context); ``received`` the moment its receiver takes it; ``replied`` its answer;
    ``ended`` any end of a call (after ``replied``, or a timeout, a dead party).
    ``route`` opens a semantic route for ``a`` and returns a token; ``routed`` closes it
    with its outcome."""

    def sent(self, a: Agent, n: int, nbytes: int) -> None: ...

    def call(self, a: Agent, cid: int, receiver: int, nbytes: int, parent: Any = None) -> None: ...

    def received(self, cid: int, receiver: Agent) -> None: ...

    def replied(self, a: Agent, cid: int, nbytes: int) -> None: ...

    def ended(self, cid: int) -> None: ...

    def route(self, a: Agent, intent: str) -> Any: ...

    def routed(self, token: Any, outcome: str, targets: int) -> None: ...


SUPERVISOR: Key[SupervisorPort] = Key("supervision")
IMAGES: Key[ImagePort] = Key("images")


class Registry:
    """Everything kernel modules register with one kernel."""

    def __init__(self) -> None:
        self.syscalls = SyscallTable()
        self.executors = ExecutorFactories()
        self._shutdown: list[tuple[int, int, Callable[[], None]]] = []
        self.exit_hooks: list[Callable[[Agent], None]] = []
        self.early_exit_hooks: list[Callable[[Agent], None]] = []
        self.ipc_probe: IpcProbe | None = None
        self.syscall_counts: list[int] | None = None  # by number, every completed syscall
        self.syscall_errors: dict[int, int] | None = None  # errno << 12 | number -> count

    def count_syscalls(self) -> tuple[list[int], dict[int, int]]:
        """Have the dispatcher count syscalls by number (and failures by number and
        errno) from the next dispatch on; returns the two tables it fills.  Off (the
        default) it tests one local per syscall and counts nothing."""
        if self.syscall_counts is None or self.syscall_errors is None:
            self.syscall_counts = [0] * TABLE_SIZE
            self.syscall_errors = {}
        return self.syscall_counts, self.syscall_errors

    def set_ipc_probe(self, probe: IpcProbe) -> None:
        """Observe IPC calls and semantic routes (one probe per kernel)."""
        if self.ipc_probe is not None:
            raise AlreadyExists("an IPC probe is already registered")
        self.ipc_probe = probe

    def on_shutdown(self, fn: Callable[[], None], order: int = 0) -> None:
        """Run ``fn()`` at kernel shutdown, after the agents were killed (low ``order`` first)."""
        self._shutdown.append((order, len(self._shutdown), fn))

    def on_agent_exit(self, fn: Callable[[Agent], None], *, before_event: bool = False) -> None:
        """Run ``fn(agent)`` when an agent ends: after ``agent.lifecycle.exited`` was
        published, or (``before_event``, supervision) just before it."""
        (self.early_exit_hooks if before_event else self.exit_hooks).append(fn)

    def run_shutdown(self) -> None:
        hooks, self._shutdown = sorted(self._shutdown), []
        first: BaseException | None = None
        for _order, _seq, fn in hooks:
            try:
                fn()
            except BaseException as e:  # every hook runs; the first failure is re-raised
                log.error("shutdown hook %r failed: %r", fn, e)
                if first is None:
                    first = e
        if first is not None:
            raise first
