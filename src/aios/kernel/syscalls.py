"""The kernel's own syscalls (xv6 ``syscall.c``): its blocks of the one table.

:class:`aios.abi.sysno.Sys` numbers every syscall; the dispatcher's table is
filled through the registry (``kernel/registry.py``), each owner within its
block.  :data:`KERNEL` is the kernel's part, written out by hand so its whole
interface reads on one page: the whitepaper's 1-13 (but 12) and 20-99 and 190-199.
Kernel modules register theirs (memoryd 100-119, semantic-ipcd 120-139,
security 150-169 and the whitepaper's PQC_OPERATION, 12, whose crypto the
kernel does not import) when they are installed.  An unknown number gets
``NoSuchSyscall`` (ENOSYS) from the dispatcher.

Every handler has the shape ``handler(kernel, agent, *args)``; the SDK
wrapper for ``Sys.X`` is ``aios.sdk.syscalls.x`` and the docs row is in
``docs/syscalls.md`` (a test keeps the three in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.sysno import Sys
from aios.kernel import (
    sys_agent,
    sys_cap,
    sys_event,
    sys_ipc,
    sys_mem,
    sys_misc,
    sys_sched,
)

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

Handler = Callable[..., Any]

KERNEL: dict[Sys, Handler] = {
    Sys.AGENT_SPAWN: sys_agent.sys_agent_spawn,
    Sys.AGENT_SUPERVISOR_REGISTER: sys_agent.sys_agent_supervisor_register,
    Sys.AGENT_REGISTER: sys_agent.sys_agent_register,
    Sys.AGENT_KILL: sys_agent.sys_agent_kill,
    Sys.IPC_SEND: sys_ipc.sys_ipc_send,
    Sys.IPC_RECV: sys_ipc.sys_ipc_recv,
    Sys.AGENT_MEM_ALLOC: sys_mem.sys_agent_mem_alloc,
    Sys.AGENT_MEM_FREE: sys_mem.sys_agent_mem_free,
    Sys.FRAME_ALLOC: sys_mem.sys_frame_alloc,
    Sys.PAGE_MAP: sys_mem.sys_page_map,
    Sys.AGENT_POOL_ALLOC: sys_mem.sys_agent_pool_alloc,
    Sys.GET_ASYNC_RESULT: sys_misc.sys_get_async_result,
    Sys.AGENT_SELF: sys_agent.sys_agent_self,
    Sys.AGENT_LOOKUP: sys_agent.sys_agent_lookup,
    Sys.AGENT_INFO: sys_agent.sys_agent_info,
    Sys.AGENT_LIST: sys_agent.sys_agent_list,
    Sys.YIELD: sys_misc.sys_yield,
    Sys.SLEEP: sys_misc.sys_sleep,
    Sys.WAIT_CHILD: sys_agent.sys_wait_child,
    Sys.EXIT: sys_agent.sys_exit,
    Sys.AGENT_CLONE: sys_agent.sys_agent_clone,
    Sys.AGENT_MERGE: sys_agent.sys_agent_merge,
    Sys.AGENT_SPLIT: sys_agent.sys_agent_split,
    Sys.AGENT_UPGRADE: sys_agent.sys_agent_upgrade,
    Sys.AGENT_SPECIALIZE: sys_agent.sys_agent_specialize,
    Sys.AGENT_SUSPEND: sys_agent.sys_agent_suspend,
    Sys.AGENT_RESUME: sys_agent.sys_agent_resume,
    Sys.AGENT_SET_STATE: sys_agent.sys_agent_set_state,
    Sys.CLOCK: sys_misc.sys_clock,
    Sys.AGENT_CONTROL: sys_agent.sys_agent_control,
    Sys.IPC_SEND_NOWAIT: sys_ipc.sys_ipc_send_nowait,
    Sys.IPC_RECV_NOWAIT: sys_ipc.sys_ipc_recv_nowait,
    Sys.IPC_CALL: sys_ipc.sys_ipc_call,
    Sys.IPC_REPLY: sys_ipc.sys_ipc_reply,
    Sys.IPC_SEND_BATCH: sys_ipc.sys_ipc_send_batch,
    Sys.IPC_RECV_BATCH: sys_ipc.sys_ipc_recv_batch,
    Sys.CAP_MINT: sys_cap.sys_cap_mint,
    Sys.CAP_COPY: sys_cap.sys_cap_copy,
    Sys.CAP_GRANT: sys_cap.sys_cap_grant,
    Sys.CAP_REVOKE: sys_cap.sys_cap_revoke,
    Sys.CAP_DELETE: sys_cap.sys_cap_delete,
    Sys.CAP_INSPECT: sys_cap.sys_cap_inspect,
    Sys.CAP_LIST: sys_cap.sys_cap_list,
    Sys.PAGE_UNMAP: sys_mem.sys_page_unmap,
    Sys.MEM_READ: sys_mem.sys_mem_read,
    Sys.MEM_WRITE: sys_mem.sys_mem_write,
    Sys.MEM_SHARE: sys_mem.sys_mem_share,
    Sys.POOL_CREATE: sys_mem.sys_pool_create,
    Sys.POOL_FREE: sys_mem.sys_pool_free,
    Sys.MEM_STAT: sys_mem.sys_mem_stat,
    Sys.MEM_VIEW: sys_mem.sys_mem_view,
    Sys.EVENT_PUBLISH: sys_event.sys_event_publish,
    Sys.EVENT_SUBSCRIBE: sys_event.sys_event_subscribe,
    Sys.EVENT_RECV: sys_event.sys_event_recv,
    Sys.EVENT_UNSUBSCRIBE: sys_event.sys_event_unsubscribe,
    Sys.SCHED_SET: sys_sched.sys_sched_set,
    Sys.SCHED_STATS: sys_sched.sys_sched_stats,
    Sys.MUTEX_CREATE: sys_sched.sys_mutex_create,
    Sys.MUTEX_LOCK: sys_sched.sys_mutex_lock,
    Sys.MUTEX_UNLOCK: sys_sched.sys_mutex_unlock,
    Sys.SEM_CREATE: sys_sched.sys_sem_create,
    Sys.SEM_DOWN: sys_sched.sys_sem_down,
    Sys.SEM_UP: sys_sched.sys_sem_up,
    Sys.COND_CREATE: sys_sched.sys_cond_create,
    Sys.COND_WAIT: sys_sched.sys_cond_wait,
    Sys.COND_SIGNAL: sys_sched.sys_cond_signal,
    Sys.COND_BROADCAST: sys_sched.sys_cond_broadcast,
    Sys.KERNEL_STATS: sys_misc.sys_kernel_stats,
    Sys.KERNEL_SHUTDOWN: sys_misc.sys_kernel_shutdown,
}




def register(k: Kernel) -> None:
    """Put the kernel's own handlers in the table (at construction)."""
    k.registry.syscalls.block("kernel").add_all(KERNEL)
