"""The syscall table (xv6 ``syscall.h`` + ``syscall.c``).

:class:`Sys` numbers every syscall; :data:`TABLE` maps each number to its
handler, written out by hand so the whole kernel interface reads on one page.
Numbers 1-13 are the whitepaper's (section 4.3) in its order; the rest are
grouped by subsystem in blocks of ten.  Numbers are ABI: never reuse one.
An unknown number gets ``NoSuchSyscall`` (ENOSYS) from the dispatcher.

Every handler has the shape ``handler(kernel, agent, *args)``; the SDK
wrapper for ``Sys.X`` is ``aios.sdk.syscalls.x`` and the docs row is in
``docs/syscalls.md`` (a test keeps the three in step).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

from aios.kernel import (
    sys_agent,
    sys_cap,
    sys_event,
    sys_ipc,
    sys_mem,
    sys_memfabric,
    sys_misc,
    sys_sched,
    sys_security,
)


class Sys(IntEnum):
    # -- the whitepaper's 13 -------------------------------------------------
    AGENT_SPAWN = 1  # async
    AGENT_SUPERVISOR_REGISTER = 2
    AGENT_REGISTER = 3
    AGENT_KILL = 4
    IPC_SEND = 5  # payload <= 64 KiB
    IPC_RECV = 6
    AGENT_MEM_ALLOC = 7  # <= 1 GiB
    AGENT_MEM_FREE = 8
    FRAME_ALLOC = 9
    PAGE_MAP = 10
    AGENT_POOL_ALLOC = 11
    PQC_OPERATION = 12  # async
    GET_ASYNC_RESULT = 13
    # -- agents and time (20-39) -----------------------------------------------
    AGENT_SELF = 20
    AGENT_LOOKUP = 21
    AGENT_INFO = 22
    AGENT_LIST = 23
    YIELD = 24
    SLEEP = 25
    WAIT_CHILD = 26
    EXIT = 27
    AGENT_CLONE = 28
    AGENT_MERGE = 29
    AGENT_SPLIT = 30
    AGENT_UPGRADE = 31
    AGENT_SPECIALIZE = 32
    AGENT_SUSPEND = 33
    AGENT_RESUME = 34
    AGENT_SET_STATE = 35
    CLOCK = 36
    AGENT_CONTROL = 37
    # -- IPC (40-49) -------------------------------------------------------------
    IPC_SEND_NOWAIT = 40
    IPC_RECV_NOWAIT = 41
    IPC_CALL = 42
    IPC_REPLY = 43
    IPC_SEND_BATCH = 44
    IPC_RECV_BATCH = 45
    # -- capabilities (50-59) ----------------------------------------------------
    CAP_MINT = 50
    CAP_COPY = 51
    CAP_GRANT = 52
    CAP_REVOKE = 53
    CAP_DELETE = 54
    CAP_INSPECT = 55
    CAP_LIST = 56
    # -- memory (60-69) ----------------------------------------------------------
    PAGE_UNMAP = 60
    MEM_READ = 61
    MEM_WRITE = 62
    MEM_SHARE = 63
    POOL_CREATE = 64
    POOL_FREE = 65
    MEM_STAT = 66
    MEM_VIEW = 67
    # -- events (70-79) ----------------------------------------------------------
    EVENT_PUBLISH = 70
    EVENT_SUBSCRIBE = 71
    EVENT_RECV = 72
    EVENT_UNSUBSCRIBE = 73
    # -- scheduling (80-89) ------------------------------------------------------
    SCHED_SET = 80
    SCHED_STATS = 81
    # -- synchronisation (90-99) -------------------------------------------------
    MUTEX_CREATE = 90
    MUTEX_LOCK = 91
    MUTEX_UNLOCK = 92
    SEM_CREATE = 93
    SEM_DOWN = 94
    SEM_UP = 95
    COND_CREATE = 96
    COND_WAIT = 97
    COND_SIGNAL = 98
    COND_BROADCAST = 99
    # -- memory fabric: memoryd (100-119); async: results via GET_ASYNC_RESULT --
    MEMD_CREATE = 100
    MEMD_OPEN = 101
    MEMD_PUT = 102
    MEMD_GET = 103
    MEMD_DELETE = 104
    MEMD_SEARCH = 105
    MEMD_CORE_SET = 106
    MEMD_CORE_GET = 107
    MEMD_RECALL = 108
    MEMD_STATS = 109
    MEMD_LIST = 110
    MEMD_COMPACT = 111
    # -- semantic IPC: semantic-ipcd (120-139) ------------------------------------
    SEMANTIC_OPEN = 120
    SKILL_REGISTER = 121  # async
    SKILL_UNREGISTER = 122  # async
    INTENT_SEND = 123  # async
    SEMANTIC_STATUS = 124  # async
    # -- security (150-169) ------------------------------------------------------
    POLICY_RELOAD = 150
    TOKEN_EXPORT = 151
    TOKEN_IMPORT = 152
    TOKEN_REVOKE = 153
    AGENT_RELEASE = 154
    BEHAVIOR_STATUS = 155
    AGENT_IDENTITY = 156
    ATTEST_QUOTE = 157
    AUDIT_STATUS = 158
    # -- kernel (190-199) --------------------------------------------------------
    KERNEL_STATS = 190
    KERNEL_SHUTDOWN = 191


Handler = Callable[..., Any]

TABLE: dict[Sys, Handler] = {
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
    Sys.PQC_OPERATION: sys_misc.sys_pqc_operation,
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
    Sys.MEMD_CREATE: sys_memfabric.sys_memd_create,
    Sys.MEMD_OPEN: sys_memfabric.sys_memd_open,
    Sys.MEMD_PUT: sys_memfabric.sys_memd_put,
    Sys.MEMD_GET: sys_memfabric.sys_memd_get,
    Sys.MEMD_DELETE: sys_memfabric.sys_memd_delete,
    Sys.MEMD_SEARCH: sys_memfabric.sys_memd_search,
    Sys.MEMD_CORE_SET: sys_memfabric.sys_memd_core_set,
    Sys.MEMD_CORE_GET: sys_memfabric.sys_memd_core_get,
    Sys.MEMD_RECALL: sys_memfabric.sys_memd_recall,
    Sys.MEMD_STATS: sys_memfabric.sys_memd_stats,
    Sys.MEMD_LIST: sys_memfabric.sys_memd_list,
    Sys.MEMD_COMPACT: sys_memfabric.sys_memd_compact,
    Sys.SEMANTIC_OPEN: sys_memfabric.sys_semantic_open,
    Sys.SKILL_REGISTER: sys_memfabric.sys_skill_register,
    Sys.SKILL_UNREGISTER: sys_memfabric.sys_skill_unregister,
    Sys.INTENT_SEND: sys_memfabric.sys_intent_send,
    Sys.SEMANTIC_STATUS: sys_memfabric.sys_semantic_status,
    Sys.POLICY_RELOAD: sys_security.sys_policy_reload,
    Sys.TOKEN_EXPORT: sys_security.sys_token_export,
    Sys.TOKEN_IMPORT: sys_security.sys_token_import,
    Sys.TOKEN_REVOKE: sys_security.sys_token_revoke,
    Sys.AGENT_RELEASE: sys_security.sys_agent_release,
    Sys.BEHAVIOR_STATUS: sys_security.sys_behavior_status,
    Sys.AGENT_IDENTITY: sys_security.sys_agent_identity,
    Sys.ATTEST_QUOTE: sys_security.sys_attest_quote,
    Sys.AUDIT_STATUS: sys_security.sys_audit_status,
    Sys.KERNEL_STATS: sys_misc.sys_kernel_stats,
    Sys.KERNEL_SHUTDOWN: sys_misc.sys_kernel_shutdown,
}


def build_table() -> list[Handler | None]:
    """The dispatcher's view: a list indexed by syscall number."""
    size = max(Sys) + 1
    table: list[Handler | None] = [None] * size
    for num, handler in TABLE.items():
        table[num] = handler
    return table
