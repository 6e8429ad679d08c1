"""Syscall numbers (xv6 ``syscall.h``): the ABI between agents and the kernel.

Numbers 1-13 are the whitepaper's (section 4.3) in its order; the rest are
grouped by subsystem in blocks.  Numbers are ABI: never reuse one.  Each block
in :data:`BLOCKS` belongs to one owner, which registers its handlers with the
kernel's registry (``kernel/registry.py``); the registry refuses a number
outside the owner's block or one already taken.  The SDK wrapper for
``Sys.X`` is ``aios.sdk.syscalls.x`` and the docs row is in
``docs/syscalls.md`` (a test keeps the three in step).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


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
    # -- the kernel journal (171-174) ---------------------------------------------------
    IPC_SEND_DURABLE = 171
    AGENT_CHECKPOINT = 172
    AGENT_HISTORY = 173
    JOURNAL_STATUS = 174
    # -- device bus: devices (175-179) -------------------------------------------
    DEV_LIST = 175
    DEV_OPEN = 176
    DEV_ADD = 177
    DEV_REMOVE = 178
    DEV_HEALTH = 179
    # -- language-model devices: llm (180-189) ------------------------------------
    LLM_CHAT = 180
    LLM_RECV = 181
    LLM_CANCEL = 182
    LLM_STATS = 183
    LLM_BUDGET = 184
    # -- kernel (190-199) --------------------------------------------------------
    KERNEL_STATS = 190
    KERNEL_SHUTDOWN = 191
    # -- initd (200-209) -----------------------------------------------------------------
    UNIT_NOTIFY = 200
    UNIT_LIST = 201
    UNIT_CTL = 202
    UNIT_CAT = 203


# owner -> inclusive number ranges it may register
BLOCKS: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "kernel": ((1, 11), (13, 13), (20, 99), (190, 199)),
    "memoryd": ((100, 119),),
    "semantic_ipcd": ((120, 139),),
    "security": ((12, 12), (150, 169)),  # PQC_OPERATION: the kernel imports no crypto
    "devices": ((175, 179),),
    "llm": ((180, 189),),
    "journal": ((171, 174),),
    "initd": ((200, 209),),
}
