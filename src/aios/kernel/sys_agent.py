"""Syscall shims for agents: spawn, lifecycle, names, info, exit and wait.

Each shim checks the capability slot it is given (O(1)), validates the
rest of its arguments and calls into :mod:`aios.kernel.lifecycle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import (
    AgentGone,
    AIOSError,
    AlreadyExists,
    InvalidArgument,
    NoSuchAgent,
    PermissionDenied,
    WouldBlock,
)
from aios.abi.rights import ObjKind, Rights
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel import lifecycle
from aios.kernel.agents import Agent, agent_of
from aios.kernel.args import as_bool, as_dict, as_int, as_str, copy_plain
from aios.kernel.capabilities import Capability
from aios.kernel.quotas import Resource
from aios.kernel.waits import BLOCK

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel


def _authority(a: Agent, slot: Any, need: Rights) -> Capability:
    cap: Capability = a.cspace.lookup(slot, ObjKind.AUTHORITY, need)
    return cap


def _spawning(k: Kernel, a: Agent, slot: Any) -> Capability:
    """The authority to spawn with; refused at once when its agents quota is spent
    (a spawn loop's refusals then cost a lookup, not a plan, hooks and policy)."""
    auth = _authority(a, slot, Rights.SPAWN_AGENT)
    k.cdt.check(auth, Resource.AGENTS, 1)
    return auth


def _target(a: Agent, slot: Any, need: Rights) -> Agent:
    cap = a.cspace.lookup(slot, ObjKind.AGENT, need)
    return agent_of(cap.obj.payload)


def sys_agent_spawn(k: Kernel, a: Agent, auth_slot: Any, entry: Any, opts: Any = None) -> int:
    """Create an agent; returns an async handle whose result is ``(aid, control_slot, endpoint_slot)``."""
    auth = _spawning(k, a, auth_slot)
    plan = lifecycle.SpawnPlan(a, auth, opts or {})
    op = k.new_async(a)
    made: list[tuple[int, int, int]] = []

    def done(err: Any) -> None:  # an out-of-process agent has started (or failed to)
        k.complete_async(op, None if err else made[0], err)

    try:
        child, ctl, ep = lifecycle.spawn(k, a, auth, entry, plan, done=done)
    except BaseException:
        k.drop_async(op.handle)
        raise
    made.append((child.aid, ctl, ep))
    if plan.executor == "inproc":
        done(None)
    return op.handle


def sys_agent_supervisor_register(k: Kernel, a: Agent, auth_slot: Any) -> None:
    _authority(a, auth_slot, Rights.SUPERVISOR)
    a.supervisor = True
    k.publish("agent.supervisor.registered", a.aid, agent=a.aid)


def sys_agent_register(k: Kernel, a: Agent, dir_slot: Any, name: Any, ep_slot: Any) -> None:
    """Publish a send-only endpoint under ``name`` in the directory."""
    a.cspace.lookup(dir_slot, ObjKind.DIRECTORY, Rights.WRITE)
    name = as_str(name, "name", limits.AGENT_NAME_MAX)
    if not name:
        raise InvalidArgument("name must not be empty")
    ep = a.cspace.lookup(ep_slot, ObjKind.ENDPOINT, Rights.WRITE)
    old = k.directory.get(name)
    if old is not None and old.valid:
        raise AlreadyExists(f"{name!r} is registered")
    cap = k.cdt.derive(ep, k.kspace, Rights.WRITE)
    if old is not None:
        k._dir_names.pop(old, None)
    k.directory[name] = cap
    k._dir_names[cap] = name
    k.publish("agent.directory.registered", a.aid, agent=a.aid, name=name)


def sys_agent_lookup(k: Kernel, a: Agent, dir_slot: Any, name: Any) -> int:
    """A new slot holding a send capability to the endpoint registered as ``name``."""
    a.cspace.lookup(dir_slot, ObjKind.DIRECTORY, Rights.READ)
    cap = k.lookup_named(as_str(name, "name", limits.AGENT_NAME_MAX))
    return k.cdt.derive(cap, a.cspace, Rights.WRITE).slot


def sys_agent_kill(k: Kernel, a: Agent, slot: Any, tree: Any = False) -> None:
    t = _target(a, slot, Rights.KILL_AGENT)
    lifecycle.kill(k, a, t, as_bool(tree, "tree"))


def sys_agent_control(k: Kernel, a: Agent, auth_slot: Any, aid: Any) -> tuple[int, int]:
    """Operator access: control and send capabilities for any agent (needs ADMIN)."""
    auth = _authority(a, auth_slot, Rights.ADMIN)
    t = k.agents.get_live(as_int(aid, "aid", 1))
    if t is k.init:
        raise PermissionDenied("init is not controllable")
    obj = k.agent_object(t)
    ctl_cap = k.cdt.root(a.cspace, obj, lifecycle.PARENT_CONTROL & auth.rights)
    t.controls = (*t.controls, ctl_cap)
    ep = k.cdt.derive(k.cap_of(t, 1), a.cspace, Rights.WRITE | Rights.GRANT, badge=a.aid)
    k.publish("agent.control.taken", a.aid, agent=t.aid, by=a.aid)
    return ctl_cap.slot, ep.slot


def sys_agent_self(k: Kernel, a: Agent) -> int:
    return a.aid


def sys_agent_info(k: Kernel, a: Agent, slot: Any = 0) -> dict[str, Any]:
    t = _target(a, slot, Rights.READ)
    return {
        "aid": t.aid,
        "name": t.name,
        "parent": t.parent,
        "state": t.status.value,
        "kind": t.kind,
        "children": sorted(t.children),
        "mailbox": len(t.mailbox) if t.mailbox is not None else 0,
        "syscalls": t.syscalls,
        "supervisor": t.supervisor,
        "fault": t.fault,
        "spec": t.spec,
    }


def _memory_used(t: Agent) -> int:
    """Bytes of memory charged to the agent's authority (its regions, buffers, and its
    children's, which are charged up the chain); 0 when it holds none."""
    if t.cspace is None:
        return 0
    try:
        auth = t.cspace.get(SLOT_AUTHORITY)
    except AIOSError:
        return 0
    used = auth.used if auth.obj.kind is ObjKind.AUTHORITY else None
    return int(used[Resource.MEMORY]) if used is not None else 0


def sys_agent_list(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY) -> list[dict[str, Any]]:
    """Children of the caller; everyone with ADMIN on the authority."""
    auth = _authority(a, auth_slot, Rights.NONE)
    everyone = bool(auth.rights & Rights.ADMIN)
    rows = []
    for t in k.agents:
        if everyone or t.parent == a.aid:
            row = {"aid": t.aid, "name": t.name, "parent": t.parent, "state": t.status.value, "kind": t.kind,
                   "mailbox": len(t.mailbox) if t.mailbox is not None else 0, "syscalls": t.syscalls,
                   "memory": _memory_used(t)}
            if t.fault:
                row["fault"] = t.fault  # why it stopped, with the file and line of its code
            prot = k.executors.protections(t.aid) if t.executor is not None else None
            if prot is not None:
                row["protections"] = prot.summary()
            rows.append(row)
    return rows


def sys_wait_child(k: Kernel, a: Agent, aid: Any = 0, timeout: Any = None) -> Any:
    """Reap a zombie child (``aid`` 0: any); blocks until one exits."""
    aid = as_int(aid, "aid", 0)
    if aid and aid not in a.children:
        raise NoSuchAgent(f"agent {aid} is not a child of {a.aid}")
    if not a.children:
        raise NoSuchAgent("no children to wait for")
    for cid in sorted(a.children) if aid == 0 else [aid]:
        c = k.find(cid)
        if c is not None and not c.alive:
            return (cid, k.reap(c))
    if timeout == 0:
        raise WouldBlock("no child has exited")
    return k.park(a, None, timeout, data=("child", aid))


def sys_exit(k: Kernel, a: Agent, status: Any = None) -> Any:
    k.exit(a, copy_plain(status, "status", limits.SPEC_MAX_BYTES))
    return BLOCK


def sys_agent_clone(k: Kernel, a: Agent, auth_slot: Any, opts: Any = None) -> tuple[int, int, int]:
    auth = _spawning(k, a, auth_slot)
    child, ctl, ep = lifecycle.clone(k, a, auth, opts or {})
    return child.aid, ctl, ep


def sys_agent_merge(k: Kernel, a: Agent, survivor_slot: Any, other_slot: Any, merger: Any = None) -> None:
    survivor = _target(a, survivor_slot, Rights.NONE)
    if survivor is not a:
        _target(a, survivor_slot, Rights.WRITE | Rights.SUPERVISOR)
    other = _target(a, other_slot, Rights.KILL_AGENT)
    lifecycle.merge(k, a, survivor, other, merger)


def sys_agent_split(
    k: Kernel, a: Agent, auth_slot: Any, splitter: Any, router: Any = None, opts: Any = None
) -> tuple[int, int, int]:
    auth = _spawning(k, a, auth_slot)
    child, ctl, ep = lifecycle.split(k, a, auth, splitter, router, opts or {})
    return child.aid, ctl, ep


def sys_agent_upgrade(k: Kernel, a: Agent, slot: Any, entry: Any) -> None:
    t = _target(a, slot, Rights.NONE)
    if t is not a:
        _target(a, slot, Rights.SUPERVISOR)
    lifecycle.upgrade(k, a, t, entry)


def sys_agent_specialize(
    k: Kernel, a: Agent, auth_slot: Any, spec: Any, opts: Any = None
) -> tuple[int, int, int]:
    auth = _spawning(k, a, auth_slot)
    as_dict(spec, "spec")
    child, ctl, ep = lifecycle.specialize(k, a, auth, spec, opts or {})
    return child.aid, ctl, ep


def sys_agent_suspend(k: Kernel, a: Agent, slot: Any) -> Any:
    t = _target(a, slot, Rights.NONE)
    if t is not a:
        _target(a, slot, Rights.SUPERVISOR)
    lifecycle.suspend(k, t)
    return BLOCK if t is a else None


def sys_agent_resume(k: Kernel, a: Agent, slot: Any) -> None:
    t = _target(a, slot, Rights.SUPERVISOR)
    if t is a:
        raise PermissionDenied("an agent cannot resume itself")
    if not t.alive:
        raise AgentGone(f"agent {t.aid} is {t.status.value}")
    lifecycle.resume(k, t)


def sys_agent_set_state(k: Kernel, a: Agent, state: Any) -> None:
    """Replace the declared state (remote executors; in-process agents share ``ctx.state``)."""
    new = copy_plain(as_dict(state, "state"), "state", 1 << 24)
    a.state.clear()
    a.state.update(new)
