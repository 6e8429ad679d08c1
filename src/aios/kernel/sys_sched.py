"""Syscall shims for scheduling and synchronisation.

Who may set what (issue: Scheduler 2.0):

* an agent may change its own fair weight, nice value, slice and hint, up to
  the CPU-weight ceiling of its authority (its quota); a child's ceiling is at
  most its parent's, because authority is minted only narrower;
* changing another agent needs SUPERVISOR on that agent's control capability;
* entering the deadline (EDF) class needs SUPERVISOR on one's own authority
  for oneself, or SUPERVISOR on the target's control capability for another;
  admission control may still refuse it (``Busy``).

Mutexes, semaphores and condition variables are SYNC kernel objects: created
by a syscall, held as capabilities (WRITE to use them), shareable by grant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, PermissionDenied
from aios.abi.rights import ObjKind, Rights
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel.agents import Agent, DeadAgent, agent_of
from aios.kernel.args import as_int, as_opts, as_str
from aios.kernel.capabilities import KObject
from aios.kernel.quotas import Resource
from aios.kernel.sched.fair import clamp_weight, weight_of_nice

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

SCHED_PARAMS = frozenset(
    {"weight", "nice", "slice_ns", "hint", "class", "runtime_ns", "deadline_ns", "period_ns"}
)
SYNC_RW = Rights.READ | Rights.WRITE | Rights.GRANT


def _ceiling(t: Agent) -> int:
    try:
        auth = t.cspace.get(SLOT_AUTHORITY)
    except Exception:
        return 1024
    lim = auth.limits[Resource.CPU_WEIGHT] if auth.limits is not None else None
    return 88761 if lim is None else lim


def sys_sched_set(k: Kernel, a: Agent, slot: Any, params: Any) -> dict[str, Any]:
    """Change an agent's scheduling class or parameters; returns its new statistics."""
    cap = a.cspace.lookup(slot, ObjKind.AGENT, Rights.NONE)
    t = agent_of(cap.obj.payload)
    if t is not a and not cap.rights & Rights.SUPERVISOR:
        raise PermissionDenied("changing another agent's scheduling needs SUPERVISOR")
    if not t.alive or t.sched is None:
        raise InvalidArgument(f"agent {t.aid} is not schedulable")
    p = as_opts(params, SCHED_PARAMS, "params")
    cls = p.get("class", "fair")
    if cls == "deadline":
        if t is a:
            a.cspace.lookup(SLOT_AUTHORITY, ObjKind.AUTHORITY, Rights.SUPERVISOR)
        k.sched.set_deadline(
            t.sched,
            runtime_ns=as_int(p.get("runtime_ns"), "runtime_ns"),
            deadline_ns=as_int(p.get("deadline_ns"), "deadline_ns"),
            period_ns=as_int(p.get("period_ns"), "period_ns"),
        )
    elif cls == "fair":
        weight = p.get("weight")
        if "nice" in p:
            weight = weight_of_nice(as_int(p["nice"], "nice", -20, 19))
        if weight is not None:
            weight = clamp_weight(weight, _ceiling(t))
        hint = p.get("hint")
        if hint is not None:
            as_str(hint, "hint", 32)
        slice_ns = p.get("slice_ns")
        if slice_ns is not None:
            as_int(slice_ns, "slice_ns", 1)
        if t.sched is not None and k.sched.stats(t.sched)["class"] != "fair":
            k.sched.set_fair_class(t.sched)
        k.sched.set_fair(t.sched, weight=weight, slice_ns=slice_ns, hint=hint)
    else:
        raise InvalidArgument("class must be 'fair' or 'deadline'")
    k.publish("sched.changed", a.aid, agent=t.aid, by=a.aid, **{k2: v for k2, v in p.items() if isinstance(v, (int, str))})
    return _row(k, t)


def _row(k: Kernel, t: Agent) -> dict[str, Any]:
    row: dict[str, Any] = {"aid": t.aid, "name": t.name, "agent_state": t.status.value}
    if t.sched is not None and t.alive:
        row.update(k.sched.stats(t.sched))
    elif t.aid in k.executors.fuel:
        row.update(k.executors.usage(t.aid) or {})
    elif t.executor is not None:
        row["class"] = t.kind  # scheduled by the host (cgroup CPU weight)
    return row


def sys_sched_stats(k: Kernel, a: Agent, slot: Any = None) -> list[dict[str, Any]]:
    """Scheduling statistics: of one agent (a control slot), or of the caller and its
    children (``None``; everyone with ADMIN on the authority)."""
    if slot is not None:
        cap = a.cspace.lookup(slot, ObjKind.AGENT, Rights.READ)
        t = cap.obj.payload
        if type(t) is DeadAgent:  # reaped: what its exit record kept
            return [t.sched_row()]
        return [_row(k, agent_of(t))]
    everyone = False
    try:
        everyone = bool(a.cspace.get(SLOT_AUTHORITY).rights & Rights.ADMIN)
    except Exception:
        everyone = False
    return [_row(k, t) for t in k.agents if t.alive and t.aid != 1
            and (everyone or t is a or t.parent == a.aid)]


# -- synchronisation objects ---------------------------------------------------


def _new_sync(k: Kernel, a: Agent, oid: int) -> int:
    def destroy(obj: KObject) -> None:
        try:
            k.sync.destroy(obj.payload)
        except Exception:
            k.sync_orphans.add(obj.payload)

    obj = k.cdt.new_object(ObjKind.SYNC, oid, destroy)
    return k.cdt.root(a.cspace, obj, SYNC_RW).slot


def _sync(a: Agent, slot: Any) -> int:
    cap = a.cspace.lookup(slot, ObjKind.SYNC, Rights.WRITE)
    oid: int = cap.obj.payload
    return oid


def _park_sync(k: Kernel, a: Agent, oid: int, timeout: Any) -> Any:
    return k.park(a, None, timeout, data=("sync", oid))


def sys_mutex_create(k: Kernel, a: Agent) -> int:
    return _new_sync(k, a, k.sync.mutex_create())


def _acquire(k: Kernel, a: Agent, oid: int, timeout: Any,
             take: Callable[[int, int], bool], try_take: Callable[[int, int], None]) -> Any:
    """Take a mutex or semaphore now, or park until it is handed over (timeout 0: would-block)."""
    k.deadline(timeout)  # validate before anything changes
    if timeout == 0:
        try_take(oid, a.aid)
        return None
    if take(oid, a.aid):
        return None
    return _park_sync(k, a, oid, timeout)


def sys_mutex_lock(k: Kernel, a: Agent, slot: Any, timeout: Any = None) -> Any:
    """Lock (priority inheritance: the owner runs at least at the caller's priority)."""
    return _acquire(k, a, _sync(a, slot), timeout, k.sync.lock, k.sync.trylock)


def sys_mutex_unlock(k: Kernel, a: Agent, slot: Any) -> None:
    mid = _sync(a, slot)
    k.wake_sync(k.sync.unlock(mid, a.aid))


def sys_sem_create(k: Kernel, a: Agent, value: Any = 0) -> int:
    return _new_sync(k, a, k.sync.sem_create(as_int(value, "value", 0, (1 << 31) - 1)))


def sys_sem_down(k: Kernel, a: Agent, slot: Any, timeout: Any = None) -> Any:
    """P: take one unit, or wait for one."""
    return _acquire(k, a, _sync(a, slot), timeout, k.sync.sem_down, k.sync.sem_trydown)


def sys_sem_up(k: Kernel, a: Agent, slot: Any) -> None:
    k.wake_sync(k.sync.sem_up(_sync(a, slot)))


def sys_cond_create(k: Kernel, a: Agent) -> int:
    return _new_sync(k, a, k.sync.cond_create())


def sys_cond_wait(k: Kernel, a: Agent, cond_slot: Any, mutex_slot: Any, timeout: Any = None) -> Any:
    """Release the mutex and wait; on wake-up by a signal the mutex is held again.
    On timeout the caller gets ``TimedOut`` *without* the mutex (unlike pthreads)."""
    cid = _sync(a, cond_slot)
    mid = _sync(a, mutex_slot)
    k.deadline(timeout)
    k.wake_sync(k.sync.cond_wait(cid, mid, a.aid))
    return _park_sync(k, a, cid, timeout)


def sys_cond_signal(k: Kernel, a: Agent, slot: Any) -> None:
    k.wake_sync(k.sync.cond_signal(_sync(a, slot)))


def sys_cond_broadcast(k: Kernel, a: Agent, slot: Any) -> int:
    woken = k.sync.cond_broadcast(_sync(a, slot))
    for key in woken:
        k.wake_sync(key)
    return len(woken)

