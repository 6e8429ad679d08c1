"""Confinement: how strictly an agent is held, and why it can only tighten.

Every agent has a :class:`Confinement` record, made once by
:func:`aios.kernel.lifecycle.spawn` and never widened: the executor its code
runs in, the rights of the authority it was made with (which decide its
sandbox profile: ACCESS_NET opens the network, ACCESS_FS the file tree), the
limits its process is held to (address space, processes, CPU seconds, CPU
weight), the read-only code directories Landlock lets it see, and the
environment it starts with.  The executors enforce exactly this record
(:meth:`aios.kernel.executor_host.ExecutorHost.spec_for` builds the sandbox spec
from it), so the record is not a description of the sandbox but its source.

The order
---------
Executors are ordered by how much of the host their code can touch::

    inproc  <  worker  <  isolated
                       <  wasm          (isolated and wasm are incomparable)

``inproc`` code runs in the kernel process with the kernel's authority;
``worker`` code in a separate but unsandboxed process; ``isolated`` code in
its own namespaces under Landlock, seccomp, rlimits and cgroups; ``wasm``
code in a Wasmtime store with fuel, an epoch deadline and no host access
beyond WASI preopens.  The last two confine in different ways, so neither is
"at least as strict" as the other: a derived agent of one must stay in it.

A record ``c`` is *at least as strict as* ``b`` (``covers(c, b)`` is empty)
when, on every axis: ``c``'s executor is at or above ``b``'s; its rights are
a subset of ``b``'s; each limit is at or below ``b``'s (0 = unlimited is the
top); its code directories are among ``b``'s or are the verified image the
agent itself runs from; and its environment is no wider (an in-process
agent sees the kernel's environment; every other executor starts from the
allowlist of :mod:`aios.sandbox.environment`).

The invariant
-------------
An agent made by, or from, another agent (spawn, clone, split, specialize,
a supervised restart; upgrade swaps code inside an existing record) is at
least as strict as its *creator* (the agent making the call) and its
*source* (the agent it is copied from, or the agent it replaces).  It is
checked in one place, :func:`derive`, which every one of those operations
calls, and enforced like this:

* the executor, when not asked for, is the strictest of the bounds' (a clone
  of an isolated agent is isolated); asked for, it must be at or above each
  bound's, else :class:`~aios.abi.errors.PermissionDenied` names both;
* rights, limits and code directories are narrowed to the bounds, the way
  minting a capability narrows its rights (asking for more yields less).

The operator - init (the host's :func:`aios.host.spawn_root`) and console
agents (connections on the daemon's socket) - is no bound: it may start any
agent in any executor.

Test-only weakening
-------------------
Security tests must show that each mechanism they test is what stops the
attack.  :func:`weaken_for_tests` switches mechanisms off on one kernel
(this check, the capability rights check, and the isolated executor's
Landlock, seccomp, namespaces, rlimits, cgroups, per-agent uid and
environment scrubbing).  It is a Python function on the kernel object: no
syscall, spawn option, file or environment variable reaches it, so no agent
can.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from aios.abi import limits
from aios.abi.errors import InvalidArgument, PermissionDenied
from aios.abi.faults import SANDBOX_SWITCHES
from aios.abi.rights import Rights, rights_names
from aios.abi.slots import SLOT_AUTHORITY

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel

# executor -> the executors at least as strict as it (the order, written out)
AT_LEAST: Final[dict[str, frozenset[str]]] = {
    "inproc": frozenset({"inproc", "worker", "isolated", "wasm"}),
    "worker": frozenset({"worker", "isolated", "wasm"}),
    "isolated": frozenset({"isolated"}),
    "wasm": frozenset({"wasm"}),
}
EXECUTORS: Final = tuple(AT_LEAST)
CONSOLE: Final = "console"  # the executor name of a console agent (the operator)
ENV_KERNEL: Final = "kernel"  # in-process: the kernel's own environment
ENV_ALLOWLIST: Final = "allowlist"  # every other executor (aios.sandbox.environment)
DEFAULT_PROCESSES: Final = 16

# what weaken_for_tests accepts on the kernel side (the sandbox's are aios.sandbox.process.SWITCHES)
KERNEL_SWITCHES: Final = ("confinement", "capabilities")


def executor_at_least(executor: str, floor: str) -> bool:
    """``executor`` confines at least as much as ``floor``."""
    return executor in AT_LEAST.get(floor, frozenset())


def strictest(executors: Iterable[str]) -> str | None:
    """The least executor at or above all of ``executors`` (None if there is none)."""
    out = "inproc"
    for e in executors:
        if executor_at_least(e, out):
            out = e
        elif not executor_at_least(out, e):
            return None
    return out


def env_of(executor: str) -> str:
    return ENV_KERNEL if executor == "inproc" else ENV_ALLOWLIST


@dataclass(frozen=True, slots=True)
class Confinement:
    """How one agent is held.  Limits use 0 for "no limit"."""

    executor: str
    rights: Rights
    memory: int  # bytes: RLIMIT_AS and the memory cgroup (the authority's memory quota)
    processes: int  # pids cgroup and RLIMIT_NPROC
    cpu_seconds: int  # RLIMIT_CPU
    cpu_weight: int  # cgroup CPU weight ceiling
    code_paths: tuple[str, ...] = ()  # read-only directories (verified images) Landlock adds
    operator: bool = False  # init and console agents: not a bound on what they start

    @property
    def env(self) -> str:
        return env_of(self.executor)

    @property
    def network(self) -> bool:
        return bool(self.rights & Rights.ACCESS_NET)

    @property
    def fs_read(self) -> bool:
        return bool(self.rights & Rights.ACCESS_FS)

    def describe(self) -> dict[str, object]:
        return {
            "executor": self.executor,
            "rights": rights_names(self.rights),
            "memory": self.memory,
            "processes": self.processes,
            "cpu_seconds": self.cpu_seconds,
            "cpu_weight": self.cpu_weight,
            "code_paths": list(self.code_paths),
            "env": self.env,
            "operator": self.operator,
        }


OPERATOR: Final = Confinement(CONSOLE, Rights(-1 & ((1 << 14) - 1)), 0, 0, 0, 0, (), True)


def _within(value: int, bound: int) -> bool:
    return bound == 0 or (value != 0 and value <= bound)


def weaker_axes(c: Confinement, bound: Confinement, own_images: Iterable[str] = ()) -> list[str]:
    """The axes on which ``c`` is *less* confined than ``bound`` (empty: it is covered)."""
    if bound.operator:
        return []
    out: list[str] = []
    if not executor_at_least(c.executor, bound.executor):
        out.append(f"executor {c.executor} < {bound.executor}")
    extra = Rights(c.rights & ~bound.rights)
    if extra:
        out.append(f"rights +{','.join(rights_names(extra))}")
    for name in ("memory", "processes", "cpu_seconds", "cpu_weight"):
        if not _within(getattr(c, name), getattr(bound, name)):
            out.append(f"{name} {getattr(c, name)} > {getattr(bound, name)}")
    paths = set(c.code_paths) - set(bound.code_paths) - set(own_images)
    if paths:
        out.append(f"code paths +{sorted(paths)}")
    if c.env == ENV_KERNEL and bound.env != ENV_KERNEL:
        out.append("environment: the kernel's")
    return out


def of(k: Kernel, a: Agent) -> Confinement:
    """``a``'s record, narrowed to the rights its authority holds now (revocation narrows)."""
    if a is k.init:
        return OPERATOR
    c: Confinement | None = a.confinement
    if c is None:
        # every agent but init is made by lifecycle.spawn, which sets the record
        from aios.abi.errors import KernelPanic

        raise KernelPanic(f"agent {a.aid} has no confinement record")
    if c.operator:
        return c
    try:
        live = int(a.cspace.get(SLOT_AUTHORITY).rights) if a.cspace is not None else int(c.rights)
    except Exception:
        live = 0
    held = int(c.rights)
    return c if live & held == held else replace(c, rights=Rights(held & live))


def check_enabled(k: Kernel) -> bool:
    return "confinement" not in k.executors.test_disable


def derive(
    k: Kernel,
    op: str,
    *,
    creator: Agent,
    source: Confinement | None,
    executor: str | None,
    rights: Rights,
    memory: int | None,
    cpu_weight: int | None,
    processes: int,
    cpu_seconds: int,
    images: tuple[str, ...],
    operator: bool = False,
) -> Confinement:
    """The record of an agent ``op`` is about to make; raises PermissionDenied when the
    executor asked for is weaker than a bound.  ``executor`` None: not asked for.

    ``memory`` / ``cpu_weight``: what the new authority will carry (None: no limit of its
    own, which the executors read as the defaults); ``images``: verified image
    directories this very spawn runs from (the only code paths it may add)."""
    if operator:
        return OPERATOR
    mem = memory if memory is not None else limits.DEFAULT_CHILD_MEMORY
    weight = cpu_weight if cpu_weight is not None else limits.DEFAULT_CHILD_CPU_WEIGHT
    if not check_enabled(k):
        # the pre-confinement behaviour, for the security mutants only
        ex = executor or "inproc"
        return Confinement(ex, rights, mem, processes or DEFAULT_PROCESSES, cpu_seconds, weight, images)
    bounds = [b for b in (of(k, creator), source) if b is not None and not b.operator]
    if not bounds:  # the operator's: as asked
        return Confinement(executor or "inproc", rights, mem, processes or DEFAULT_PROCESSES,
                           cpu_seconds, weight, images)
    floor = bounds[0].executor if len(bounds) == 1 else strictest(b.executor for b in bounds)
    if floor is None:
        raise PermissionDenied(
            f"{op}: no executor confines at least as much as both "
            + " and ".join(sorted({b.executor for b in bounds}))
        )
    if executor is None:
        ex = floor
    elif executor not in AT_LEAST:
        raise InvalidArgument(f"executor must be one of {EXECUTORS}")
    elif executor not in AT_LEAST[floor]:
        who = "its source and creator" if source is not None else "its creator"
        raise PermissionDenied(
            f"{op}: executor {executor!r} is weaker than {floor!r}, the executor of {who}; "
            f"an agent can only make agents at least as confined as itself"
        )
    else:
        ex = executor
    # narrow every other axis to the bounds, as minting narrows rights (by construction,
    # the result is covered by each bound: weaker_axes() is the same reading, for reports)
    r = int(rights)
    procs = processes or DEFAULT_PROCESSES
    secs = cpu_seconds
    for b in bounds:  # 0 is "no limit": the tighter of two limits, inlined (spawn is hot)
        r &= int(b.rights)
        if b.memory and (not mem or b.memory < mem):
            mem = b.memory
        if b.cpu_weight and (not weight or b.cpu_weight < weight):
            weight = b.cpu_weight
        if b.processes and (not procs or b.processes < procs):
            procs = b.processes
        if b.cpu_seconds and (not secs or b.cpu_seconds < secs):
            secs = b.cpu_seconds
    inherited = source.code_paths if source is not None else bounds[0].code_paths
    if images or inherited:
        paths = tuple(p for p in dict.fromkeys([*images, *inherited])
                      if p in images or all(p in b.code_paths for b in bounds))
    else:
        paths = ()
    b0 = bounds[0]
    if (ex == b0.executor and r == int(b0.rights) and mem == b0.memory and procs == b0.processes
            and secs == b0.cpu_seconds and weight == b0.cpu_weight and paths == b0.code_paths):
        return b0  # the same confinement: share the record (agents are many, records few)
    return Confinement(ex, Rights(r), mem, procs, secs, weight, paths)


def check_upgrade(k: Kernel, caller: Agent, target: Agent) -> None:
    """New code chosen by ``caller`` will run in ``target``'s record: it must bound the caller."""
    if not check_enabled(k):
        return
    weaker = weaker_axes(of(k, target), of(k, caller))
    if weaker:
        raise PermissionDenied(
            f"upgrade: agent {target.aid} is less confined than the caller ({'; '.join(weaker)}); "
            "an agent cannot choose code for a less confined one"
        )


def may_name_paths(k: Kernel, a: Agent) -> bool:
    """May the kernel read a host path (an image, a Wasm module) named by ``a``?

    Only for the operator and for agents whose own code already runs with the
    kernel's file authority (in-process and worker agents, trusted code that
    could open the path itself).  A sandboxed agent - and, confinement being
    monotone, everything it makes - names code by digest or by name in the
    verified image store instead."""
    c = of(k, a)
    return c.operator or c.executor in ("inproc", "worker") or not check_enabled(k)


def weaken_for_tests(k: Kernel, *mechanisms: str) -> None:
    """Switch mechanisms off on ``k`` (security tests only; call before any agent starts).

    Kernel-side: ``confinement`` (this module's check), ``capabilities`` (the
    rights test of every capability lookup).  Isolated executor: ``landlock``,
    ``seccomp``, ``namespaces``, ``rlimits``, ``cgroup``, ``uid`` and ``env``
    (the environment allowlist)."""
    unknown = set(mechanisms) - set(KERNEL_SWITCHES) - set(SANDBOX_SWITCHES)
    if unknown:
        raise InvalidArgument(f"unknown mechanisms {sorted(unknown)}")
    k.executors.test_disable = frozenset(k.executors.test_disable | set(mechanisms))
    if "capabilities" in mechanisms:
        k.cdt.enforce_rights = False
