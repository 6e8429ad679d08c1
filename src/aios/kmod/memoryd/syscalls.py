"""memoryd's syscalls (block 100-119; semantic-ipcd's are in its own package).

Each handler does on the kernel thread what must be instant and exact: the
O(1) capability lookup (so a revoked or missing capability fails here and
counts as a security violation), argument checks (bad input changes
nothing), quota charges.  The work itself (SQLite, embedding, scoring) is a
job on the fabric's worker thread; the handler returns an async handle and
the SDK wrapper waits for it with GET_ASYNC_RESULT.  The services are
imported lazily, by name, so importing the kernel does not import numpy,
faiss or ONNX Runtime (see :mod:`aios.kmod.memoryd.service` for the
threading design and :mod:`aios.kmod.semantic_ipcd.service` for
delivery).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import InvalidArgument
from aios.abi.rights import MEM_RIGHTS, ObjKind, Rights, rights_from_names
from aios.abi.slots import SLOT_AUTHORITY
from aios.abi.sysno import Sys
from aios.kernel.agents import Agent
from aios.kernel.args import as_int, as_opts, as_str, copy_plain
from aios.kernel.capabilities import Capability
from aios.kernel.quotas import Resource
from aios.kmod.memoryd import service as svc

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

MEMNS = ObjKind.MEMNS
READ = Rights.READ
WRITE = Rights.WRITE
MAX_SEARCH_NAMESPACES = 64
MAX_META_BYTES = 16 * 1024
TIERS = ("archival", "recall")


def _fab(k: Kernel) -> Any:
    return svc.fabric(k)


def _ns(a: Agent, slot: Any, need: Rights) -> tuple[str, int]:
    """The namespace name behind ``slot`` and the memory rights its capability carries."""
    cap: Capability = a.cspace.lookup(slot, MEMNS, need)
    return cap.obj.payload.name, int(cap.rights & MEM_RIGHTS)


def _opt_int(v: Any, name: str, lo: int, hi: int, default: int) -> int:
    return default if v is None else as_int(v, name, lo, hi)


def _opt_num(v: Any, name: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise InvalidArgument(f"{name} must be a positive number of seconds")
    return float(v)


def _meta(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if type(v) is not dict:
        raise InvalidArgument("meta must be a dict")
    meta: dict[str, Any] = copy_plain(v, "meta", MAX_META_BYTES)
    return meta


# -- memoryd (100-119) -----------------------------------------------------------


def sys_memd_create(k: Kernel, a: Agent, auth_slot: Any, name: Any, opts: Any = None) -> int:
    """A new namespace owned by the caller; its byte quota is charged to the authority."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ALLOC_MEMORY)
    nm = as_str(name, "name", 128)
    o = as_opts(opts, frozenset({"quota_items", "quota_bytes", "ttl_s", "max_items"}))
    items = _opt_int(o.get("quota_items"), "quota_items", 1, svc.MAX_NS_ITEMS, svc.DEFAULT_NS_ITEMS)
    nbytes = _opt_int(o.get("quota_bytes"), "quota_bytes", 1, svc.MAX_NS_BYTES, svc.DEFAULT_NS_BYTES)
    ttl = _opt_num(o.get("ttl_s"), "ttl_s")
    max_items = None if o.get("max_items") is None else as_int(o["max_items"], "max_items", 1)
    fab = svc.fabric(k)
    if nm in fab.objects:
        from aios.abi.errors import AlreadyExists

        raise AlreadyExists(f"memory namespace {nm!r} already exists")
    obj = fab.ns_object(nm)
    chg = k.cdt.charge(auth, Resource.MEMORY, nbytes, obj)
    fab.charges[obj.oid] = chg

    def job() -> None:
        from aios.kmod.memoryd.records import Retention, Tier

        ret = Retention(ttl, max_items)
        fab.core().create_namespace(f"agent:{a.aid}", nm, quota_items=items, quota_bytes=nbytes,
                                    retention={Tier.RECALL: ret, Tier.ARCHIVAL: ret})

    def then(_v: Any) -> int:
        if not a.alive:
            raise InvalidArgument("caller exited")
        slot: int = k.cdt.root(a.cspace, obj, MEM_RIGHTS).slot
        k.publish("mem.namespace.created", a.aid, agent=a.aid, namespace=nm, quota_items=items,
                  quota_bytes=nbytes)
        return slot

    def undo() -> None:
        if obj.refs == 0 and not obj.destroyed:
            obj.destroyed = True
            fab._ns_destroyed(obj)

    handle: int = fab.submit(a, job, then=then, undo=undo)
    return handle


def sys_memd_open(k: Kernel, a: Agent, auth_slot: Any, name: Any, rights: Any = None,
                  ep_slot: Any = None) -> int:
    """Operator access (ADMIN): a capability for an existing namespace (e.g. after a restart).

    With ``ep_slot`` the capability is installed in the space of that endpoint's owner
    instead (a message names its slot, as with CAP_GRANT): an operator's share that outlives
    the operator's console, since it derives from no capability of the console.
    """
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    nm = as_str(name, "name", 128)
    r = MEM_RIGHTS if rights is None else rights_from_names(rights) & MEM_RIGHTS
    if ep_slot is not None:
        a.cspace.lookup(ep_slot, ObjKind.ENDPOINT, Rights.WRITE | Rights.GRANT)
    fab = _fab(k)

    def then(_v: Any) -> int:
        obj = fab.ns_object(nm)
        if ep_slot is None:
            slot: int = k.cdt.root(a.cspace, obj, r).slot
            return slot
        from aios.abi.errors import AgentGone
        from aios.abi.message import Message
        from aios.kernel.sys_ipc import hand_off

        ep = a.cspace.lookup(ep_slot, ObjKind.ENDPOINT, Rights.WRITE | Rights.GRANT)
        mb = ep.obj.payload
        receiver = k.find(mb.owner)
        if receiver is None or not receiver.alive or mb.closed:
            raise AgentGone(f"agent {mb.owner} is gone")
        k.guard("grant", a, to=receiver.aid, kind=MEMNS.name, rights=int(r))
        payload = f"memory namespace {nm}".encode()
        if not mb.recv_waiters:  # the message will be queued, charged to the sender
            k.ledger.check(a.aid, len(payload) + limits.MSG_COST)
        cap = k.cdt.root(receiver.cspace, obj, r)
        hand_off(k, mb, Message(next(k.msg_seq), a.aid, ep.badge, payload, 0, cap.slot))
        k.publish("cap.granted", a.aid, agent=a.aid, to=receiver.aid, kind=MEMNS.name,
                  object=obj.oid, rights=int(cap.rights))
        peer: int = cap.slot
        return peer

    handle: int = fab.submit(a, lambda: fab.core().namespace(nm), then=then)
    return handle


def sys_memd_put(k: Kernel, a: Agent, ns_slot: Any, text: Any, opts: Any = None) -> int:
    name, r = _ns(a, ns_slot, WRITE)
    if type(text) is not str or not text:
        raise InvalidArgument("text must be a non-empty str")
    o = as_opts(opts, frozenset({"tier", "meta", "ttl_s", "role"}))
    tier = o.get("tier", "archival")
    if tier not in TIERS:
        raise InvalidArgument(f"tier must be one of {TIERS} (core blocks: MEMD_CORE_SET)")
    meta = _meta(o.get("meta"))
    ttl = _opt_num(o.get("ttl_s"), "ttl_s")
    role = o.get("role")
    if role is not None:
        role = as_str(role, "role", 64)
    if tier == "recall" and not role:
        role = "user"
    fab = svc.fabric(k)
    handle: int = fab.submit(a, lambda: svc.record_view(fab.core().put(
        name, r, text, tier=tier, meta=meta, ttl_s=ttl, role=role)), nbytes=len(text))
    return handle


def sys_memd_get(k: Kernel, a: Agent, ns_slot: Any, record_id: Any) -> int:
    name, r = _ns(a, ns_slot, READ)
    rid = as_int(record_id, "record_id", 1)
    fab = svc.fabric(k)
    handle: int = fab.submit(a, lambda: svc.record_view(fab.core().get(name, r, rid)))
    return handle


def sys_memd_delete(k: Kernel, a: Agent, ns_slot: Any, record_id: Any) -> int:
    name, r = _ns(a, ns_slot, WRITE)
    rid = as_int(record_id, "record_id", 1)
    fab = _fab(k)
    handle: int = fab.submit(a, lambda: fab.core().delete(name, r, rid))
    return handle


def sys_memd_search(k: Kernel, a: Agent, ns_slots: Any, query: Any, opts: Any = None) -> int:
    """Archival (semantic) or recall (words) search over namespaces the caller may READ."""
    if type(ns_slots) is int:
        ns_slots = [ns_slots]
    if type(ns_slots) is tuple:  # lists may arrive as tuples over the trap wire
        ns_slots = list(ns_slots)
    if type(ns_slots) not in (list, tuple) or not 1 <= len(ns_slots) <= MAX_SEARCH_NAMESPACES:
        raise InvalidArgument(f"ns_slots must be a slot or a list of 1 to {MAX_SEARCH_NAMESPACES} slots")
    scopes: dict[str, int] = {}
    for s in ns_slots:
        name, r = _ns(a, s, READ)
        scopes[name] = scopes.get(name, 0) | r
    o = as_opts(opts, frozenset({"k", "filters", "tier", "since", "until", "role"}))
    kk = _opt_int(o.get("k"), "k", 1, 1000, 10)
    tier = o.get("tier", "archival")
    if tier not in TIERS:
        raise InvalidArgument(f"tier must be one of {TIERS}")
    filters = o.get("filters")
    if filters is not None and type(filters) is not dict:
        raise InvalidArgument("filters must be a dict")
    fab = svc.fabric(k)
    if tier == "archival":
        if type(query) is not str or not query.strip():
            raise InvalidArgument("query must be a non-empty str")
        flt = copy_plain(filters, "filters", MAX_META_BYTES) if filters else None

        def job() -> list[dict[str, Any]]:
            t0 = time.perf_counter()
            hits = fab.core().search(scopes, query, kk, filters=flt)
            fab.search_seconds.observe(time.perf_counter() - t0)
            return [svc.hit_view(h) for h in hits]
    else:
        if query is not None and type(query) is not str:
            raise InvalidArgument("query must be a str or None")
        since, until, role = o.get("since"), o.get("until"), o.get("role")
        for v, what in ((since, "since"), (until, "until")):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise InvalidArgument(f"{what} must be a time in seconds")
        if role is not None:
            as_str(role, "role", 64)

        def job() -> list[dict[str, Any]]:
            out = []
            for name, r in scopes.items():
                out += [svc.record_view(x) for x in fab.core().recall_search(
                    name, r, query or None, since=since, until=until, role=role, k=kk)]
            if len(scopes) > 1:
                out.sort(key=lambda d: -d["created"])
            return out[:kk]

    handle: int = fab.submit(a, job)
    return handle


def sys_memd_core_set(k: Kernel, a: Agent, ns_slot: Any, label: Any, value: Any, opts: Any = None) -> int:
    """Set, append to or edit a core block; every version is kept."""
    name, r = _ns(a, ns_slot, WRITE)
    lab = as_str(label, "label", 64)
    if type(value) is not str:
        raise InvalidArgument("value must be a str")
    o = as_opts(opts, frozenset({"limit", "mode", "old"}))
    mode = o.get("mode", "set")
    if mode not in ("set", "append", "replace"):
        raise InvalidArgument("mode must be set, append or replace")
    limit = None if o.get("limit") is None else as_int(o["limit"], "limit", 1, 64 * 1024)
    old = o.get("old")
    if mode == "replace":
        old = as_str(old, "old", 64 * 1024)
    fab = svc.fabric(k)

    def job() -> dict[str, Any]:
        core = fab.core()
        if mode == "append":
            blk = core.core_append(name, r, lab, value)
        elif mode == "replace":
            blk = core.core_replace(name, r, lab, old, value)
        else:
            blk = core.core_set(name, r, lab, value, limit=limit)
        return dict(svc.block_view(blk))

    handle: int = fab.submit(a, job)
    return handle


def sys_memd_core_get(k: Kernel, a: Agent, ns_slot: Any, label: Any = None, opts: Any = None) -> int:
    """One core block (with ``history``: every version), or all blocks when ``label`` is None."""
    name, r = _ns(a, ns_slot, READ)
    lab = None if label is None else as_str(label, "label", 64)
    o = as_opts(opts, frozenset({"history"}))
    history = bool(o.get("history", False))
    fab = svc.fabric(k)

    def job() -> Any:
        core = fab.core()
        if lab is None:
            return [svc.block_view(b) for b in core.core_list(name, r)]
        if history:
            return [svc.block_view(b) for b in core.core_history(name, r, lab)]
        return svc.block_view(core.core_get(name, r, lab))

    handle: int = fab.submit(a, job)
    return handle


def sys_memd_recall(k: Kernel, a: Agent, ns_slot: Any, op: Any, text: Any = None, opts: Any = None) -> int:
    """The recall tier: ``append`` a message (role in opts) or ``search`` it by words/time."""
    if op == "append":
        o = as_opts(opts, frozenset({"role", "meta"}))
        return sys_memd_put(k, a, ns_slot, text, {"tier": "recall", "role": o.get("role", "user"),
                                                   "meta": o.get("meta")})
    if op == "search":
        return sys_memd_search(k, a, [ns_slot], text, {**as_opts(opts, frozenset({"k", "since", "until", "role"})),
                                                       "tier": "recall"})
    raise InvalidArgument("op must be 'append' or 'search'")


def sys_memd_stats(k: Kernel, a: Agent, ns_slot: Any = None) -> int:
    """Fabric status (embedder, directory, namespaces), or a namespace's usage and quotas."""
    fab = svc.fabric(k)
    if ns_slot is not None:
        name, _r = _ns(a, ns_slot, Rights.NONE)
        handle: int = fab.submit(a, lambda: svc.usage_view(name, fab.core().usage(name)))
        return handle

    def job() -> dict[str, Any]:
        core = fab.core()
        ch = fab.choice
        return {"embedder": ch.name if ch else None, "dim": ch.dim if ch else None,
                "embedder_reason": ch.reason if ch else None, "directory": str(fab.directory),
                "namespaces": len(core.namespaces()), "recoveries": list(core.recoveries)}

    def then(v: dict[str, Any]) -> dict[str, Any]:
        return {**v, "live_objects": len(fab.objects), "jobs": fab.jobs,
                "skill_agents": len(fab.skills)}

    handle = fab.submit(a, job, then=then)
    return handle


def sys_memd_list(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY) -> int:
    """The caller's namespace capabilities; with ADMIN every namespace on disk, with usage."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.NONE)
    fab = svc.fabric(k)
    if not auth.rights & Rights.ADMIN:
        from aios.abi.rights import rights_names

        held = [{"slot": c.slot, "namespace": c.obj.payload.name, "rights": rights_names(c.rights)}
                for c in a.cspace.caps() if c.obj.kind is MEMNS]
        h: int = fab.completed(a, held)
        return h

    def job() -> list[dict[str, Any]]:
        core = fab.core()
        return [{**svc.usage_view(n.name, core.usage(n.name)), "owner": n.owner, "created": n.created}
                for n in core.namespaces()]

    h = fab.submit(a, job)
    return h


def sys_memd_compact(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY) -> int:
    """Apply retention now (ADMIN): expired and over-limit records go, indexes are rebuilt."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    fab = _fab(k)

    def job() -> dict[str, int]:
        rep = fab.core().compact()
        return {"expired": rep.expired, "evicted": rep.evicted, "indexes_rebuilt": rep.indexes_rebuilt}

    h: int = fab.submit(a, job)
    return h


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.MEMD_CREATE: sys_memd_create,
    Sys.MEMD_OPEN: sys_memd_open,
    Sys.MEMD_PUT: sys_memd_put,
    Sys.MEMD_GET: sys_memd_get,
    Sys.MEMD_DELETE: sys_memd_delete,
    Sys.MEMD_SEARCH: sys_memd_search,
    Sys.MEMD_CORE_SET: sys_memd_core_set,
    Sys.MEMD_CORE_GET: sys_memd_core_get,
    Sys.MEMD_RECALL: sys_memd_recall,
    Sys.MEMD_STATS: sys_memd_stats,
    Sys.MEMD_LIST: sys_memd_list,
    Sys.MEMD_COMPACT: sys_memd_compact,
}
