"""Syscall shims for time, async results, post-quantum operations and statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import InvalidArgument, NoSuchObject, WouldBlock
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel.agents import Agent
from aios.kernel.args import as_int
from aios.kernel.waits import BLOCK, Wait

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel


def sys_yield(k: Kernel, a: Agent) -> Any:
    if a.sched is not None:
        k.sched.yield_(a.sched)
    k.agents.transition(a, "preempt")
    return BLOCK


def sys_sleep(k: Kernel, a: Agent, seconds: Any) -> Any:
    deadline = k.deadline(seconds)
    if deadline is None:
        raise InvalidArgument("sleep needs a number of seconds")
    w = Wait(a, None, "sleep")
    a.wait = w
    w.timer = k.call_at(deadline, k.wake, w, None)
    k.agents.transition(a, "block")
    return BLOCK


def sys_clock(k: Kernel, a: Agent) -> int:
    """Kernel time in nanoseconds (monotonic, or virtual in tests)."""
    return k.now()


def sys_get_async_result(k: Kernel, a: Agent, handle: Any, timeout: Any = None) -> Any:
    h = as_int(handle, "handle", 1)
    op = k.async_ops.get(h)
    if op is None or op.owner != a.aid:
        raise NoSuchObject(f"no async operation {h}")
    if op.done:
        k.drop_async(h)
        if op.error is not None:
            raise op.error
        return op.value
    if timeout == 0:
        raise WouldBlock("operation still running")
    return k.park(a, op.waiters, timeout)


def sys_kernel_shutdown(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY) -> None:
    """Stop the kernel (needs ADMIN): every agent is killed and state is flushed."""
    from aios.abi.rights import ObjKind, Rights

    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    k.publish("kernel.shutdown", a.aid, by=a.aid)
    k.stop()


def sys_kernel_stats(k: Kernel, a: Agent) -> dict[str, Any]:
    return {
        **k.stats,
        "agents_live": k.agents.live,
        "agents_total": len(k.agents),
        "runnable": len(k.sched),
        "events": k.bus.statistics(),
        "arena_free_frames": k.arena.frames.free_frames,
        "arena_frames": k.arena.frames.nframes,
        "page_size": limits.PAGE_SIZE,
        "remote_agents": k.executors.busy(),
        "executors": sorted(k.executors._execs),
        "home": str(k.home) if k.home is not None else None,
    }
