"""Typed wrappers over every syscall: ``aios.sdk.syscalls.<name>`` for ``Sys.<NAME>``.

These are thin: each is one trap.  Agent authors usually use the friendlier
:class:`aios.sdk.context.Context`, which is built on these.
"""

from __future__ import annotations

from typing import Any

from aios.abi.message import Message, from_wire
from aios.abi.slots import SLOT_AUTHORITY
from aios.abi.sysno import Sys
from aios.abi.trap import trap

_msg = from_wire

# plain ints: the dispatcher's fast path takes exact ints
_AGENT_CLONE = int(Sys.AGENT_CLONE)
_AGENT_INFO = int(Sys.AGENT_INFO)
_AGENT_KILL = int(Sys.AGENT_KILL)
_AGENT_LIST = int(Sys.AGENT_LIST)
_AGENT_LOOKUP = int(Sys.AGENT_LOOKUP)
_AGENT_MEM_ALLOC = int(Sys.AGENT_MEM_ALLOC)
_AGENT_MEM_FREE = int(Sys.AGENT_MEM_FREE)
_AGENT_MERGE = int(Sys.AGENT_MERGE)
_AGENT_POOL_ALLOC = int(Sys.AGENT_POOL_ALLOC)
_AGENT_REGISTER = int(Sys.AGENT_REGISTER)
_AGENT_RESUME = int(Sys.AGENT_RESUME)
_AGENT_SELF = int(Sys.AGENT_SELF)
_AGENT_SET_STATE = int(Sys.AGENT_SET_STATE)
_AGENT_SPAWN = int(Sys.AGENT_SPAWN)
_AGENT_SPECIALIZE = int(Sys.AGENT_SPECIALIZE)
_AGENT_SPLIT = int(Sys.AGENT_SPLIT)
_AGENT_SUPERVISOR_REGISTER = int(Sys.AGENT_SUPERVISOR_REGISTER)
_AGENT_SUSPEND = int(Sys.AGENT_SUSPEND)
_AGENT_UPGRADE = int(Sys.AGENT_UPGRADE)
_CAP_COPY = int(Sys.CAP_COPY)
_CAP_DELETE = int(Sys.CAP_DELETE)
_CAP_GRANT = int(Sys.CAP_GRANT)
_CAP_INSPECT = int(Sys.CAP_INSPECT)
_CAP_LIST = int(Sys.CAP_LIST)
_CAP_MINT = int(Sys.CAP_MINT)
_CAP_REVOKE = int(Sys.CAP_REVOKE)
_CLOCK = int(Sys.CLOCK)
_EVENT_PUBLISH = int(Sys.EVENT_PUBLISH)
_EVENT_RECV = int(Sys.EVENT_RECV)
_EVENT_SUBSCRIBE = int(Sys.EVENT_SUBSCRIBE)
_EVENT_UNSUBSCRIBE = int(Sys.EVENT_UNSUBSCRIBE)
_EXIT = int(Sys.EXIT)
_FRAME_ALLOC = int(Sys.FRAME_ALLOC)
_GET_ASYNC_RESULT = int(Sys.GET_ASYNC_RESULT)
_IPC_CALL = int(Sys.IPC_CALL)
_IPC_RECV = int(Sys.IPC_RECV)
_IPC_RECV_BATCH = int(Sys.IPC_RECV_BATCH)
_IPC_RECV_NOWAIT = int(Sys.IPC_RECV_NOWAIT)
_IPC_REPLY = int(Sys.IPC_REPLY)
_IPC_SEND = int(Sys.IPC_SEND)
_IPC_SEND_BATCH = int(Sys.IPC_SEND_BATCH)
_IPC_SEND_NOWAIT = int(Sys.IPC_SEND_NOWAIT)
_KERNEL_STATS = int(Sys.KERNEL_STATS)
_AGENT_CONTROL = int(Sys.AGENT_CONTROL)
_KERNEL_SHUTDOWN = int(Sys.KERNEL_SHUTDOWN)
_SCHED_SET = int(Sys.SCHED_SET)
_SCHED_STATS = int(Sys.SCHED_STATS)
_MUTEX_CREATE = int(Sys.MUTEX_CREATE)
_MUTEX_LOCK = int(Sys.MUTEX_LOCK)
_MUTEX_UNLOCK = int(Sys.MUTEX_UNLOCK)
_SEM_CREATE = int(Sys.SEM_CREATE)
_SEM_DOWN = int(Sys.SEM_DOWN)
_SEM_UP = int(Sys.SEM_UP)
_COND_CREATE = int(Sys.COND_CREATE)
_COND_WAIT = int(Sys.COND_WAIT)
_COND_SIGNAL = int(Sys.COND_SIGNAL)
_COND_BROADCAST = int(Sys.COND_BROADCAST)
_MEM_READ = int(Sys.MEM_READ)
_MEM_SHARE = int(Sys.MEM_SHARE)
_MEM_STAT = int(Sys.MEM_STAT)
_MEM_VIEW = int(Sys.MEM_VIEW)
_MEM_WRITE = int(Sys.MEM_WRITE)
_PAGE_MAP = int(Sys.PAGE_MAP)
_PAGE_UNMAP = int(Sys.PAGE_UNMAP)
_POOL_CREATE = int(Sys.POOL_CREATE)
_POOL_FREE = int(Sys.POOL_FREE)
_PQC_OPERATION = int(Sys.PQC_OPERATION)
_SLEEP = int(Sys.SLEEP)
_WAIT_CHILD = int(Sys.WAIT_CHILD)
_YIELD = int(Sys.YIELD)


async def agent_spawn(auth_slot: Any, entry: Any, opts: Any = None) -> Any:
    """Create an agent; returns an async handle whose result is ``(aid, control_slot, endpoint_slot)``."""
    return await trap(_AGENT_SPAWN, auth_slot, entry, opts)


async def agent_supervisor_register(auth_slot: Any) -> Any:
    return await trap(_AGENT_SUPERVISOR_REGISTER, auth_slot)


async def agent_register(dir_slot: Any, name: Any, ep_slot: Any) -> Any:
    """Publish a send-only endpoint under ``name`` in the directory."""
    return await trap(_AGENT_REGISTER, dir_slot, name, ep_slot)


async def agent_kill(slot: Any, tree: Any = False) -> Any:
    return await trap(_AGENT_KILL, slot, tree)


async def ipc_send(ep: Any, payload: Any) -> Any:
    return await trap(_IPC_SEND, ep, payload)


async def ipc_recv(ep: Any = 1, timeout: Any = None) -> Any:
    return _msg(await trap(_IPC_RECV, ep, timeout))


async def agent_mem_alloc(auth_slot: Any, size: Any) -> Any:
    """Allocate ``size`` bytes (<= 1 GiB) against the quota and map them; ``(slot, vaddr)``."""
    return await trap(_AGENT_MEM_ALLOC, auth_slot, size)


async def agent_mem_free(slot: Any) -> Any:
    """Unmap and drop this capability; the memory is freed with its last capability."""
    return await trap(_AGENT_MEM_FREE, slot)


async def frame_alloc(auth_slot: Any, nframes: Any) -> Any:
    """Allocate ``nframes`` contiguous frames, unmapped; returns the region's slot."""
    return await trap(_FRAME_ALLOC, auth_slot, nframes)


async def page_map(slot: Any, vaddr: Any = None, rights: Any = None) -> Any:
    """Map a region at ``vaddr`` (page aligned; None: next free) with at most the cap's rights."""
    return await trap(_PAGE_MAP, slot, vaddr, rights)


async def agent_pool_alloc(slot: Any) -> Any:
    """One object from the pool's free list; returns its byte offset in the pool."""
    return await trap(_AGENT_POOL_ALLOC, slot)


async def pqc_operation(op: Any, args: Any = None) -> Any:
    """Start an ML-KEM / ML-DSA operation off the kernel thread; returns an async handle."""
    return await trap(_PQC_OPERATION, op, args)


async def get_async_result(handle: Any, timeout: Any = None) -> Any:
    return await trap(_GET_ASYNC_RESULT, handle, timeout)


async def agent_self() -> Any:
    return await trap(_AGENT_SELF)


async def agent_lookup(dir_slot: Any, name: Any) -> Any:
    """A new slot holding a send capability to the endpoint registered as ``name``."""
    return await trap(_AGENT_LOOKUP, dir_slot, name)


async def agent_info(slot: Any = 0) -> Any:
    return await trap(_AGENT_INFO, slot)


async def agent_list(auth_slot: Any = SLOT_AUTHORITY) -> Any:
    """Children of the caller; everyone with ADMIN on the authority."""
    return await trap(_AGENT_LIST, auth_slot)


async def yield_() -> Any:
    return await trap(_YIELD)


async def sleep(seconds: Any) -> Any:
    return await trap(_SLEEP, seconds)


async def wait_child(aid: Any = 0, timeout: Any = None) -> Any:
    """Reap a zombie child (``aid`` 0: any); blocks until one exits."""
    return await trap(_WAIT_CHILD, aid, timeout)


async def exit(status: Any = None) -> Any:
    return await trap(_EXIT, status)


async def agent_clone(auth_slot: Any, opts: Any = None) -> Any:
    return await trap(_AGENT_CLONE, auth_slot, opts)


async def agent_merge(survivor_slot: Any, other_slot: Any, merger: Any = None) -> Any:
    return await trap(_AGENT_MERGE, survivor_slot, other_slot, merger)


async def agent_split(auth_slot: Any, splitter: Any, router: Any = None, opts: Any = None) -> Any:
    return await trap(_AGENT_SPLIT, auth_slot, splitter, router, opts)


async def agent_upgrade(slot: Any, entry: Any) -> Any:
    return await trap(_AGENT_UPGRADE, slot, entry)


async def agent_specialize(auth_slot: Any, spec: Any, opts: Any = None) -> Any:
    return await trap(_AGENT_SPECIALIZE, auth_slot, spec, opts)


async def agent_suspend(slot: Any) -> Any:
    return await trap(_AGENT_SUSPEND, slot)


async def agent_resume(slot: Any) -> Any:
    return await trap(_AGENT_RESUME, slot)


async def agent_set_state(state: Any) -> Any:
    """Replace the declared state (remote executors; in-process agents share ``ctx.state``)."""
    return await trap(_AGENT_SET_STATE, state)


async def clock() -> Any:
    """Kernel time in nanoseconds (monotonic, or virtual in tests)."""
    return await trap(_CLOCK)


async def ipc_send_nowait(ep: Any, payload: Any) -> Any:
    return await trap(_IPC_SEND_NOWAIT, ep, payload)


async def ipc_recv_nowait(ep: Any = 1) -> Any:
    return _msg(await trap(_IPC_RECV_NOWAIT, ep))


async def ipc_call(ep: Any, payload: Any, timeout: Any = None) -> Any:
    """Send and wait for the correlated reply; returns the reply payload."""
    return await trap(_IPC_CALL, ep, payload, timeout)


async def ipc_reply(call_id: Any, payload: Any) -> Any:
    return await trap(_IPC_REPLY, call_id, payload)


async def ipc_send_batch(ep: Any, payloads: Any) -> Any:
    """Send many messages; returns how many were accepted (blocks only if none fit)."""
    return await trap(_IPC_SEND_BATCH, ep, payloads)


async def ipc_recv_batch(ep: Any = 1, max_n: Any = 256, timeout: Any = None) -> Any:
    """Up to ``max_n`` messages; blocks only while the mailbox is empty."""
    out = await trap(_IPC_RECV_BATCH, ep, max_n, timeout)
    return out if not out or type(out[0]) is Message else [_msg(m) for m in out]


async def cap_mint(slot: Any, rights: Any, badge: Any = 0, quota: Any = None) -> Any:
    """A child of ``slot`` in the caller's space with ``rights & source`` (only narrows)."""
    return await trap(_CAP_MINT, slot, rights, badge, quota)


async def cap_copy(slot: Any) -> Any:
    return await trap(_CAP_COPY, slot)


async def cap_grant(slot: Any, ep_slot: Any, rights: Any = None, payload: Any = b'') -> Any:
    """Give a narrowed copy of ``slot`` to the owner of endpoint ``ep_slot``; returns its slot there."""
    return await trap(_CAP_GRANT, slot, ep_slot, rights, payload)


async def cap_revoke(slot: Any) -> Any:
    return await trap(_CAP_REVOKE, slot)


async def cap_delete(slot: Any) -> Any:
    return await trap(_CAP_DELETE, slot)


async def cap_inspect(slot: Any) -> Any:
    return await trap(_CAP_INSPECT, slot)


async def cap_list() -> Any:
    return await trap(_CAP_LIST)


async def page_unmap(vaddr: Any) -> Any:
    return await trap(_PAGE_UNMAP, vaddr)


async def mem_read(vaddr: Any, length: Any) -> Any:
    return await trap(_MEM_READ, vaddr, length)


async def mem_write(vaddr: Any, data: Any) -> Any:
    return await trap(_MEM_WRITE, vaddr, data)


async def mem_share(slot: Any, ep_slot: Any, rights: Any = None) -> Any:
    """Grant a memory capability (read-only or read-write) to the owner of ``ep_slot``."""
    return await trap(_MEM_SHARE, slot, ep_slot, rights)


async def pool_create(auth_slot: Any, obj_size: Any, count: Any) -> Any:
    """A pool of ``count`` objects of ``obj_size`` bytes, mapped; ``(slot, vaddr)``."""
    return await trap(_POOL_CREATE, auth_slot, obj_size, count)


async def pool_free(slot: Any, offset: Any) -> Any:
    return await trap(_POOL_FREE, slot, offset)


async def mem_stat() -> Any:
    return await trap(_MEM_STAT)


async def mem_view(vaddr: Any, length: Any) -> Any:
    """A direct view for in-process agents (read-only unless mapped writable)."""
    return await trap(_MEM_VIEW, vaddr, length)


async def event_publish(slot: Any, topic: Any, data: Any = None) -> Any:
    """Publish ``data`` on ``topic``; kernel topics need ADMIN.  Returns the event's sequence."""
    return await trap(_EVENT_PUBLISH, slot, topic, data)


async def event_subscribe(slot: Any, pattern: Any, opts: Any = None) -> Any:
    return await trap(_EVENT_SUBSCRIBE, slot, pattern, opts)


async def event_recv(sid: Any, timeout: Any = None) -> Any:
    return await trap(_EVENT_RECV, sid, timeout)


async def event_unsubscribe(sid: Any) -> Any:
    return await trap(_EVENT_UNSUBSCRIBE, sid)


async def kernel_stats() -> Any:
    return await trap(_KERNEL_STATS)


async def sched_set(slot: Any, params: Any) -> Any:
    """Change an agent's scheduling class or parameters; returns its new statistics."""
    return await trap(_SCHED_SET, slot, params)


async def sched_stats(slot: Any = None) -> Any:
    """Scheduling statistics of one agent, or of the caller and its children."""
    return await trap(_SCHED_STATS, slot)


async def mutex_create() -> Any:
    return await trap(_MUTEX_CREATE)


async def mutex_lock(slot: Any, timeout: Any = None) -> Any:
    """Lock (priority inheritance: the owner runs at least at the caller's priority)."""
    return await trap(_MUTEX_LOCK, slot, timeout)


async def mutex_unlock(slot: Any) -> Any:
    return await trap(_MUTEX_UNLOCK, slot)


async def sem_create(value: Any = 0) -> Any:
    return await trap(_SEM_CREATE, value)


async def sem_down(slot: Any, timeout: Any = None) -> Any:
    return await trap(_SEM_DOWN, slot, timeout)


async def sem_up(slot: Any) -> Any:
    return await trap(_SEM_UP, slot)


async def cond_create() -> Any:
    return await trap(_COND_CREATE)


async def cond_wait(cond_slot: Any, mutex_slot: Any, timeout: Any = None) -> Any:
    """Release the mutex and wait; woken by a signal with the mutex held again."""
    return await trap(_COND_WAIT, cond_slot, mutex_slot, timeout)


async def cond_signal(slot: Any) -> Any:
    return await trap(_COND_SIGNAL, slot)


async def cond_broadcast(slot: Any) -> Any:
    return await trap(_COND_BROADCAST, slot)


async def agent_control(auth_slot: Any, aid: Any) -> Any:
    """Operator access: control and send capabilities for any agent (needs ADMIN)."""
    return await trap(_AGENT_CONTROL, auth_slot, aid)


async def kernel_shutdown(auth_slot: Any = SLOT_AUTHORITY) -> Any:
    """Stop the kernel (needs ADMIN)."""
    return await trap(_KERNEL_SHUTDOWN, auth_slot)


# -- security (150-169) ----------------------------------------------------------

_POLICY_RELOAD = int(Sys.POLICY_RELOAD)
_TOKEN_EXPORT = int(Sys.TOKEN_EXPORT)
_TOKEN_IMPORT = int(Sys.TOKEN_IMPORT)
_TOKEN_REVOKE = int(Sys.TOKEN_REVOKE)
_AGENT_RELEASE = int(Sys.AGENT_RELEASE)
_BEHAVIOR_STATUS = int(Sys.BEHAVIOR_STATUS)
_AGENT_IDENTITY = int(Sys.AGENT_IDENTITY)
_ATTEST_QUOTE = int(Sys.ATTEST_QUOTE)
_AUDIT_STATUS = int(Sys.AUDIT_STATUS)


async def policy_reload(auth_slot: Any) -> Any:
    """Reload the policy files now (ADMIN); an invalid set is refused, the old one stays."""
    return await trap(_POLICY_RELOAD, auth_slot)


async def token_export(slot: Any, rights: Any = None, opts: Any = None) -> Any:
    """A node-signed bearer token for a held capability (GRANT); opts: expiry/expires_in, audience, rate."""
    return await trap(_TOKEN_EXPORT, slot, rights, opts)


async def token_import(token: Any) -> Any:
    """Verify a token and install its capability; returns the new slot."""
    return await trap(_TOKEN_IMPORT, token)


async def token_revoke(auth_slot: Any, rid: Any, reason: Any = "") -> Any:
    """Revoke a token block by revocation id (ADMIN); returns installed slots revoked."""
    return await trap(_TOKEN_REVOKE, auth_slot, rid, reason)


async def agent_release(slot: Any) -> Any:
    """Reverse the automated responses in force on an agent (SUPERVISOR)."""
    return await trap(_AGENT_RELEASE, slot)


async def behavior_status(slot: Any = 0) -> Any:
    """Anomaly score, components and active responses of an agent."""
    return await trap(_BEHAVIOR_STATUS, slot)


async def agent_identity(slot: Any = 0) -> Any:
    """An agent's public key and node-signed binding to its id and image."""
    return await trap(_AGENT_IDENTITY, slot)


async def attest_quote(nonce: Any) -> Any:
    """The kernel's PCRs and ``nonce`` signed by the node key, with the event log."""
    return await trap(_ATTEST_QUOTE, nonce)


async def audit_status() -> Any:
    """Size, acknowledged size and pending entries of the audit log."""
    return await trap(_AUDIT_STATUS)


# -- the kernel journal (171-174) ---------------------------------------------------
_IPC_SEND_DURABLE = int(Sys.IPC_SEND_DURABLE)
_AGENT_CHECKPOINT = int(Sys.AGENT_CHECKPOINT)
_AGENT_HISTORY = int(Sys.AGENT_HISTORY)
_JOURNAL_STATUS = int(Sys.JOURNAL_STATUS)


async def ipc_send_durable(ep: Any, payload: Any) -> Any:
    """Send a message that survives a kernel crash; answered once it is journaled."""
    return await trap(_IPC_SEND_DURABLE, ep, payload)


async def agent_checkpoint(state: Any) -> Any:
    """Save ``state`` (a dict of plain data) in the journal; returns the checkpoint number."""
    return await trap(_AGENT_CHECKPOINT, state)


async def agent_history(auth_slot: Any = 2) -> Any:
    """Exited agents the journal keeps: exit status and fault (``aios ps -a``)."""
    return await trap(_AGENT_HISTORY, auth_slot)


async def journal_status() -> Any:
    """The kernel journal: acknowledged sequence, pending records, size, commits."""
    return await trap(_JOURNAL_STATUS)


# -- initd (200-209) -------------------------------------------------------------------
_UNIT_NOTIFY = int(Sys.UNIT_NOTIFY)
_UNIT_LIST = int(Sys.UNIT_LIST)
_UNIT_CTL = int(Sys.UNIT_CTL)
_UNIT_CAT = int(Sys.UNIT_CAT)


async def unit_notify(state: Any) -> Any:
    """sd_notify for a unit's agent: ``"READY=1"``, ``"WATCHDOG=1"`` (one per line)."""
    return await trap(_UNIT_NOTIFY, state)


async def unit_list(name: Any = None) -> Any:
    """Every unit's status (``name``: one unit's, with its recent log lines)."""
    return await trap(_UNIT_LIST, name)


async def unit_ctl(auth_slot: Any, op: Any, name: Any = None) -> Any:
    """``start``, ``stop``, ``restart`` or ``reset-failed`` a unit (SUPERVISOR)."""
    return await trap(_UNIT_CTL, auth_slot, op, name)


async def unit_cat(name: Any) -> Any:
    """A unit's file: its source and text."""
    return await trap(_UNIT_CAT, name)


# -- memory fabric: memoryd (100-119) and semantic-ipcd (120-139) --------------------
# Each of these but SEMANTIC_OPEN is async in the kernel (SQLite and embedding run on the
# fabric's worker thread); the wrappers wait for the result with GET_ASYNC_RESULT.

_MEMD_CREATE = int(Sys.MEMD_CREATE)
_MEMD_OPEN = int(Sys.MEMD_OPEN)
_MEMD_PUT = int(Sys.MEMD_PUT)
_MEMD_GET = int(Sys.MEMD_GET)
_MEMD_DELETE = int(Sys.MEMD_DELETE)
_MEMD_SEARCH = int(Sys.MEMD_SEARCH)
_MEMD_CORE_SET = int(Sys.MEMD_CORE_SET)
_MEMD_CORE_GET = int(Sys.MEMD_CORE_GET)
_MEMD_RECALL = int(Sys.MEMD_RECALL)
_MEMD_STATS = int(Sys.MEMD_STATS)
_MEMD_LIST = int(Sys.MEMD_LIST)
_MEMD_COMPACT = int(Sys.MEMD_COMPACT)
_SEMANTIC_OPEN = int(Sys.SEMANTIC_OPEN)
_SKILL_REGISTER = int(Sys.SKILL_REGISTER)
_SKILL_UNREGISTER = int(Sys.SKILL_UNREGISTER)
_INTENT_SEND = int(Sys.INTENT_SEND)
_SEMANTIC_STATUS = int(Sys.SEMANTIC_STATUS)


async def _waited(sysno: int, *args: Any) -> Any:
    handle = await trap(sysno, *args)
    return await trap(_GET_ASYNC_RESULT, handle, None)


async def memd_create(auth_slot: Any, name: Any, opts: Any = None) -> Any:
    """A new memory namespace (quota_items, quota_bytes, ttl_s, max_items); returns its slot."""
    return await _waited(_MEMD_CREATE, auth_slot, name, opts)


async def memd_open(auth_slot: Any, name: Any, rights: Any = None, ep_slot: Any = None) -> Any:
    """A capability for an existing namespace (ADMIN); returns its slot (with ``ep_slot``:
    installed in that endpoint owner's space, returns the slot there)."""
    return await _waited(_MEMD_OPEN, auth_slot, name, rights, ep_slot)


async def memd_put(ns_slot: Any, text: Any, opts: Any = None) -> Any:
    """Store a passage (archival, embedded) or a message (recall); returns the record."""
    return await _waited(_MEMD_PUT, ns_slot, text, opts)


async def memd_get(ns_slot: Any, record_id: Any) -> Any:
    return await _waited(_MEMD_GET, ns_slot, record_id)


async def memd_delete(ns_slot: Any, record_id: Any) -> Any:
    return await _waited(_MEMD_DELETE, ns_slot, record_id)


async def memd_search(ns_slots: Any, query: Any, opts: Any = None) -> Any:
    """Search one or several namespaces (k, filters, tier); returns hits, best first."""
    return await _waited(_MEMD_SEARCH, ns_slots, query, opts)


async def memd_core_set(ns_slot: Any, label: Any, value: Any, opts: Any = None) -> Any:
    """Set / append / replace a core block (opts: mode, limit, old); returns the block."""
    return await _waited(_MEMD_CORE_SET, ns_slot, label, value, opts)


async def memd_core_get(ns_slot: Any, label: Any = None, opts: Any = None) -> Any:
    """A core block, its history (opts history=True), or every block (label None)."""
    return await _waited(_MEMD_CORE_GET, ns_slot, label, opts)


async def memd_recall(ns_slot: Any, op: Any, text: Any = None, opts: Any = None) -> Any:
    """The recall tier: op 'append' (opts role, meta) or 'search' (opts k, since, until, role)."""
    return await _waited(_MEMD_RECALL, ns_slot, op, text, opts)


async def memd_stats(ns_slot: Any = None) -> Any:
    """The fabric's status (embedder, store) or one namespace's usage and quotas."""
    return await _waited(_MEMD_STATS, ns_slot)


async def memd_list(auth_slot: Any = SLOT_AUTHORITY) -> Any:
    """The caller's namespace capabilities (ADMIN: every namespace, with usage)."""
    return await _waited(_MEMD_LIST, auth_slot)


async def memd_compact(auth_slot: Any = SLOT_AUTHORITY) -> Any:
    """Apply retention now (ADMIN)."""
    return await _waited(_MEMD_COMPACT, auth_slot)


async def semantic_open(auth_slot: Any = SLOT_AUTHORITY) -> Any:
    """A semantic-ipcd send capability (authority needs SEMANTIC_SEND); returns its slot."""
    return await trap(_SEMANTIC_OPEN, auth_slot)


async def skill_register(name: Any, description: Any, examples: Any = None, opts: Any = None) -> Any:
    """Register a skill of the caller (opts: schema, allowed_senders)."""
    return await _waited(_SKILL_REGISTER, name, description, examples, opts)


async def skill_unregister(name: Any = None) -> Any:
    """Remove one of the caller's skills (None: all); returns how many."""
    return await _waited(_SKILL_UNREGISTER, name)


async def intent_send(svc_slot: Any, intent: Any, payload: Any = None, opts: Any = None) -> Any:
    """Route an intent by meaning (opts: broadcast, explain, timeout); returns the decision and reply."""
    return await _waited(_INTENT_SEND, svc_slot, intent, payload, opts)


async def semantic_status(opts: Any = None) -> Any:
    """semantic-ipcd's embedder, thresholds and skills; ``{"skill": name}`` explains one."""
    return await _waited(_SEMANTIC_STATUS, opts)


# -- the device bus (175-179) and language-model devices (180-189) -------------------

_DEV_LIST = int(Sys.DEV_LIST)
_DEV_OPEN = int(Sys.DEV_OPEN)
_DEV_ADD = int(Sys.DEV_ADD)
_DEV_REMOVE = int(Sys.DEV_REMOVE)
_DEV_HEALTH = int(Sys.DEV_HEALTH)
_LLM_CHAT = int(Sys.LLM_CHAT)
_LLM_RECV = int(Sys.LLM_RECV)
_LLM_CANCEL = int(Sys.LLM_CANCEL)
_LLM_STATS = int(Sys.LLM_STATS)
_LLM_BUDGET = int(Sys.LLM_BUDGET)


async def dev_list(auth_slot: Any = SLOT_AUTHORITY, device_class: Any = None) -> Any:
    """Devices (of one class, or all), drivers and device classes on the bus."""
    return await trap(_DEV_LIST, auth_slot, device_class)


async def dev_open(auth_slot: Any, device_id: Any, rights: Any = None) -> Any:
    """A capability for a device (the class's right on the authority, or ADMIN); returns its slot."""
    return await trap(_DEV_OPEN, auth_slot, device_id, rights)


async def dev_add(auth_slot: Any, driver: Any, config: Any = None, opts: Any = None) -> Any:
    """Hotplug a device of ``driver`` (ADMIN; opts: device_id, min_version); returns it."""
    return await trap(_DEV_ADD, auth_slot, driver, config, opts)


async def dev_remove(auth_slot: Any, device_id: Any) -> Any:
    """Hot-unplug a device (ADMIN); its calls fail, capabilities to it go stale."""
    return await trap(_DEV_REMOVE, auth_slot, device_id)


async def dev_health(auth_slot: Any, device_id: Any, health: Any = None, detail: Any = "") -> Any:
    """A device's health, or (ADMIN) set it: ok, degraded, failed, removed."""
    return await trap(_DEV_HEALTH, auth_slot, device_id, health, detail)


async def llm_chat(dev_slot: Any, messages: Any, opts: Any = None) -> Any:
    """Admit a chat on a language-model device (``use``); returns the call's handle."""
    return await trap(_LLM_CHAT, dev_slot, messages, opts)


async def llm_recv(handle: Any, timeout: Any = None, whole: Any = False) -> Any:
    """What a call streamed since the last receive (``whole``: wait for the end)."""
    return await trap(_LLM_RECV, handle, timeout, whole)


async def llm_cancel(handle: Any) -> Any:
    """Stop a call; returns the tokens it was charged."""
    return await trap(_LLM_CANCEL, handle)


async def llm_stats(dev_slot: Any = None) -> Any:
    """A device's queue and clients, or (no slot) the caller's models and usage."""
    return await trap(_LLM_STATS, dev_slot)


async def llm_budget(dev_slot: Any, tokens: Any, rights: Any = None) -> Any:
    """Derive a device capability with a token budget; returns its slot."""
    return await trap(_LLM_BUDGET, dev_slot, tokens, rights)
