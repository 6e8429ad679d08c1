"""Syscall shims for capabilities: mint, copy, grant, revoke, delete, inspect, list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import AgentGone, InvalidArgument, PermissionDenied, WouldBlock
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights, rights_from_names
from aios.kernel.agents import Agent
from aios.kernel.args import as_int
from aios.kernel.capabilities import Capability
from aios.kernel.ipc import check_payload
from aios.kernel.quotas import Quota

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel


def sys_cap_mint(k: Kernel, a: Agent, slot: Any, rights: Any, badge: Any = 0, quota: Any = None) -> int:
    """A child of ``slot`` in the caller's space with ``rights & source`` (only narrows)."""
    src = a.cspace.get(slot)
    r = rights_from_names(rights)
    b = as_int(badge, "badge", 0, (1 << 63) - 1)
    q = Quota.from_dict(quota)
    if quota is not None and src.limits is None:
        raise InvalidArgument("only authority capabilities carry quotas")
    cap = k.cdt.derive(src, a.cspace, r, badge=b or None, quota=q)
    return cap.slot


def sys_cap_copy(k: Kernel, a: Agent, slot: Any) -> int:
    src = a.cspace.get(slot)
    return k.cdt.derive(src, a.cspace, src.rights).slot


def grant(k: Kernel, a: Agent, src: Capability, ep_slot: Any, rights: Rights, payload: bytes) -> int:
    """Derive ``src`` into the space of the agent owning endpoint ``ep_slot`` and tell it."""
    if not src.rights & Rights.GRANT:
        raise PermissionDenied(f"slot {src.slot} lacks GRANT")
    ep = a.cspace.lookup(ep_slot, ObjKind.ENDPOINT, Rights.WRITE | Rights.GRANT)
    mb = ep.obj.payload
    if mb.closed:
        raise AgentGone(f"mailbox of agent {mb.owner} is closed")
    if mb.full() and not mb.recv_waiters:
        raise WouldBlock(f"mailbox of agent {mb.owner} is full")
    receiver = k.find(mb.owner)
    if receiver is None or not receiver.alive:
        raise AgentGone(f"agent {mb.owner} is gone")
    action = "mem_share" if src.obj.kind in (ObjKind.MEMORY, ObjKind.POOL) else "grant"
    k.guard(action, a, to=receiver.aid, kind=src.obj.kind.name, rights=int(rights & src.rights))
    if not mb.recv_waiters:  # the message will be queued, charged to the sender
        k.ledger.check(a.aid, len(payload) + limits.MSG_COST)
    cap = k.cdt.derive(src, receiver.cspace, rights)
    from aios.kernel.sys_ipc import hand_off

    hand_off(k, mb, Message(next(k.msg_seq), a.aid, ep.badge, payload, 0, cap.slot))
    k.publish("cap.granted", a.aid, agent=a.aid, to=receiver.aid, kind=src.obj.kind.name,
              object=src.obj.oid, rights=int(cap.rights))
    return cap.slot


def sys_cap_grant(k: Kernel, a: Agent, slot: Any, ep_slot: Any, rights: Any = None, payload: Any = b"") -> int:
    """Give a narrowed copy of ``slot`` to the owner of endpoint ``ep_slot``; returns its slot there."""
    src = a.cspace.get(slot)
    r = src.rights if rights is None else rights_from_names(rights) & src.rights
    return grant(k, a, src, ep_slot, r, check_payload(payload))


def sys_cap_revoke(k: Kernel, a: Agent, slot: Any) -> int:
    cap = a.cspace.get(slot)
    n = k.cdt.revoke(cap)
    k.publish("cap.revoked", a.aid, agent=a.aid, kind=cap.obj.kind.name, object=cap.obj.oid, invalidated=n)
    return n


def sys_cap_delete(k: Kernel, a: Agent, slot: Any) -> None:
    cap = a.cspace.get(slot)
    if cap.obj.kind in (ObjKind.MEMORY, ObjKind.POOL):
        a.pt.unmap_cap(cap)
    k.cdt.delete(cap)


def sys_cap_inspect(k: Kernel, a: Agent, slot: Any) -> dict[str, Any]:
    cap: Capability = a.cspace.get(slot)
    return cap.describe()


def sys_cap_list(k: Kernel, a: Agent) -> list[dict[str, Any]]:
    return [c.describe() for c in a.cspace.caps()]
