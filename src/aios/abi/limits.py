"""Every limit of the kernel, in one place (xv6 ``param.h``).

Defaults follow the whitepaper where it names a number (binary IPC 64 KiB,
``AgentMemAlloc`` 1 GiB).  Nothing else in the kernel writes a bare limit.
"""

from __future__ import annotations

from typing import Final

# -- IPC (whitepaper 4.3: IPCSend max 64 KB) ---------------------------------
IPC_MAX_PAYLOAD: Final = 64 * 1024  # bytes per binary message
MAILBOX_DEPTH: Final = 1024  # messages queued per mailbox before senders block
IPC_MAX_BATCH: Final = 4096  # messages in one IPCSendBatch / IPCRecvBatch

# -- memory (whitepaper 4.3: AgentMemAlloc max 1 GB) --------------------------
PAGE_SIZE: Final = 4096
AGENT_MEM_ALLOC_MAX: Final = 1 << 30  # bytes in one AgentMemAlloc
ARENA_BYTES: Final = 4 << 30  # the shared memfd arena (sparse: pages cost only when touched)
VADDR_PAGES: Final = 1 << 24  # virtual pages per agent address space (64 GiB of 4 KiB pages)
POOL_MAX_OBJECTS: Final = 1 << 20  # objects in one fixed-size pool
MEM_IO_MAX: Final = 1 << 20  # bytes in one MemRead / MemWrite

# -- capabilities ----------------------------------------------------------
CSPACE_SLOTS: Final = 1 << 17  # slots per capability space (a parent holds two per child)
CDT_MAX_DEPTH: Final = 64  # derivation chain length (bounds quota charging walks)

# default quota of the root authority (init); children get at most their parent's
ROOT_QUOTA_MEMORY: Final = 16 << 30
ROOT_QUOTA_AGENTS: Final = 1_000_000
ROOT_QUOTA_IPC_RATE: Final = 100_000_000  # messages per second
ROOT_QUOTA_CPU_WEIGHT: Final = 88761  # the top of Linux's nice-to-weight table

# defaults for a child whose spawner does not say
DEFAULT_CHILD_MEMORY: Final = 256 << 20
DEFAULT_CHILD_AGENTS: Final = 64
DEFAULT_CHILD_IPC_RATE: Final = 1_000_000
DEFAULT_CHILD_CPU_WEIGHT: Final = 1024

# -- agents ----------------------------------------------------------------
MAX_AGENTS: Final = 1_000_000  # live agents in one kernel
AGENT_NAME_MAX: Final = 128
SPEC_MAX_BYTES: Final = 64 * 1024  # serialized specialization spec / state handed across ops
TRACE_MAX: Final = 4000  # characters of a faulted agent's traceback kept in its exit record

# -- events ----------------------------------------------------------------
EVENT_QUEUE_DEPTH: Final = 1024  # per subscriber, default
EVENT_QUEUE_MAX: Final = 65536  # per subscriber, upper bound an agent may ask for
EVENT_TOPIC_MAX: Final = 256  # characters
EVENT_MAX_PAYLOAD: Final = 16 * 1024  # bytes of encoded event data published by an agent
EVENT_SUBSCRIPTIONS_MAX: Final = 64  # per agent
EVENT_HISTORY_DEPTH: Final = 4096  # recent events a daemon keeps for `aios events --since`

# -- scheduling --------------------------------------------------------------
SLICE_NS: Final = 750_000  # base time slice (Linux's sysctl_sched_base_slice)
LOOP_BATCH: Final = 256  # agent dispatches between polls of the I/O loop

# -- time --------------------------------------------------------------------
MAX_TIMEOUT_S: Final = 7 * 24 * 3600.0  # longest timeout a blocking call may ask for

# -- kernel buffers charged to agents (MEMORY quota; kernel/accounts.py) ------
MSG_COST: Final = 128  # bytes charged per queued message, on top of its payload
EVENT_COST: Final = 512  # bytes charged per queued event (plus an agent's published payload)
ASYNC_COST: Final = 256  # bytes charged per pending async result
JOB_COST: Final = 1024  # bytes charged per memory-fabric / semantic request in flight (plus its text)

# -- async operations --------------------------------------------------------
ASYNC_OPS_PER_AGENT: Final = 1024  # outstanding GetAsyncResult handles per agent
PQC_WORKERS: Final = 2  # threads running PQCOperation off the kernel thread

# -- Wasm agents ---------------------------------------------------------------
WASM_FUEL_PER_CPU_S: Final = 500_000_000  # rough: instructions per CPU-second when quota is in seconds
