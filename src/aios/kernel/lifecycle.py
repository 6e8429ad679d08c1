"""Agent lifecycle operations (whitepaper 4.2, subsystem #13).

Seven operations, each with pre-hooks that can veto (by raising, typically
:class:`~aios.abi.errors.Vetoed` or :class:`~aios.abi.errors.PolicyDenied`), the
operation, an ``agent.lifecycle.*`` event and post-hooks.  Every operation
computes everything that can fail *before* it changes anything, so a veto,
a quota refusal or a failing agent-supplied function leaves no trace.

What each does to the four things an agent has:

=========== ====================== ===================== ============================== ==============================
operation   declared state         mailbox               capabilities                   memory
=========== ====================== ===================== ============================== ==============================
spawn       given (or empty)       new, empty            well-known slots + the caps    none (allocates its own)
                                                         the spawner passes, narrowed
clone       deep copy              new, empty            attenuated copies (children    shared through the copied
                                                         in the CDT, minus GRANT,       MEMORY caps, not copied
                                                         SUPERVISOR and ADMIN)
merge       ``merger(a, b)`` or    both, interleaved in  b's caps that a's parent could  b's regions follow its caps
            b's keys under a's     arrival order         hold move to a; others dropped
split       ``splitter(state)``    ``router(msg)`` picks like clone                      like clone
            partitions it          the new agent's
upgrade     kept                   kept                  kept                           kept
specialize  copy (or given)        new, empty            like clone, further masked by  like clone
                                                         ``rights_mask``; ``spec`` set
kill        gone                   closed: blocked       deleted (children in the CDT   unmapped; regions freed with
                                   senders get EPIPE     are adopted by their parents)  their last capability
=========== ====================== ===================== ============================== ==============================

Upgrade swaps code *between two messages*: it is recorded, and at the
target's next receive on its own mailbox the kernel closes the old coroutine
and starts the new entry point with the same id, mailbox, capabilities and
state; the message that receive would have returned is the new code's first.

Kill reaps children by policy: with ``tree=True`` the whole subtree dies;
otherwise children are orphaned and adopted by the nearest ancestor that
registered as a supervisor (``AgentSupervisorRegister``), else by init,
which reaps zombies at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import (
    AgentFault,
    AgentGone,
    AIOSError,
    IllegalTransition,
    InvalidArgument,
    PermissionDenied,
)
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights, rights_from_names
from aios.kernel import confinement
from aios.kernel.agents import Agent, AgentState
from aios.kernel.arena import PageTable
from aios.kernel.args import as_bool, as_int, as_opts, as_str, copy_plain
from aios.kernel.capabilities import Capability
from aios.kernel.confinement import Confinement
from aios.kernel.ipc import merge_in_arrival_order
from aios.kernel.quotas import Quota, Resource
from aios.kernel.registry import IMAGES, SUPERVISOR

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

SPAWN_OPTS = frozenset(
    {"name", "quota", "rights", "caps", "state", "spec", "detached", "events", "directory", "weight",
     "executor", "restart", "domain"}
)
EXECUTORS = ("inproc", "isolated", "worker", "wasm")
DEFAULT_CHILD_RIGHTS = Rights.SPAWN_AGENT | Rights.ALLOC_MEMORY | Rights.KILL_AGENT
ATTENUATE = Rights.GRANT | Rights.SUPERVISOR | Rights.ADMIN  # what clone/split copies lose
PARENT_CONTROL = Rights.READ | Rights.WRITE | Rights.KILL_AGENT | Rights.SUPERVISOR | Rights.GRANT


class SpawnPlan:
    """Validated spawn options, computed before anything is created."""

    __slots__ = (
        "caps",
        "code_paths",
        "detached",
        "dir_rights",
        "domain",
        "events_rights",
        "executor",
        "limits",
        "name",
        "opts",
        "quota",
        "restart",
        "rights",
        "spec",
        "state",
        "weight",
    )

    def __init__(self, parent: Agent, auth: Capability, opts: dict[str, Any]) -> None:
        opts = as_opts(opts, SPAWN_OPTS)
        self.name = as_str(opts.get("name", ""), "name", limits.AGENT_NAME_MAX)
        self.quota = Quota.from_dict(opts.get("quota"))
        if self.quota == Quota():
            self.quota = Quota(
                memory=limits.DEFAULT_CHILD_MEMORY,
                agents=limits.DEFAULT_CHILD_AGENTS,
            )
        want = opts.get("rights")
        self.rights = DEFAULT_CHILD_RIGHTS if want is None else rights_from_names(want)
        self.rights &= auth.rights
        self.state: dict[str, Any] = copy_plain(opts.get("state") or {}, "state", limits.SPEC_MAX_BYTES)
        self.spec: dict[str, Any] = copy_plain(opts.get("spec") or {}, "spec", limits.SPEC_MAX_BYTES)
        if type(self.state) is not dict or type(self.spec) is not dict:
            raise InvalidArgument("state and spec must be dicts")
        self.detached = as_bool(opts.get("detached", False), "detached")
        self.code_paths: tuple[str, ...] = ()
        self.limits: dict[str, int] = {}  # process limits from an image manifest (isolated executor)
        self.restart = opts.get("restart", "no")
        if self.restart not in ("no", "on-failure", "always"):
            raise InvalidArgument("restart must be 'no', 'on-failure' or 'always'")
        self.domain = as_str(opts.get("domain", "root"), "domain", 64)
        self.opts = {k: v for k, v in opts.items() if k not in ("restart", "domain")}
        # None: not asked for; spawn then uses the strictest executor of the bounds
        # (aios.kernel.confinement) and stores the outcome here
        self.executor: str | None = opts.get("executor")
        if self.executor is not None and self.executor not in EXECUTORS:
            raise InvalidArgument(f"executor must be one of {EXECUTORS}")
        self.events_rights = rights_from_names(opts.get("events", ["READ", "WRITE"]))
        self.dir_rights = rights_from_names(opts.get("directory", ["READ"]))
        w = opts.get("weight")
        self.weight = 1024 if w is None else as_int(w, "weight", 1, limits.ROOT_QUOTA_CPU_WEIGHT)
        ceiling = auth.limits[Resource.CPU_WEIGHT] if auth.limits is not None else None
        if ceiling is not None:
            self.weight = min(self.weight, ceiling)
        self.caps: list[tuple[Capability, Rights]] = []
        raw = opts.get("caps") or []
        if type(raw) not in (list, tuple) or len(raw) > 256:
            raise InvalidArgument("caps must be a list of [slot, rights] pairs")
        for item in raw:
            if type(item) is int:
                cap = parent.cspace.get(item)
                self.caps.append((cap, cap.rights))
            elif type(item) in (list, tuple) and len(item) == 2:
                cap = parent.cspace.get(item[0])
                self.caps.append((cap, rights_from_names(item[1]) & cap.rights))
            else:
                raise InvalidArgument("caps must be a list of slots or [slot, rights] pairs")


def run_hooks(k: Kernel, which: str, op: str, **info: Any) -> None:
    hooks = k.hooks.pre[op] if which == "pre" else k.hooks.post[op]
    for fn in hooks:
        fn(k, op, **info)


def spawn(
    k: Kernel,
    parent: Agent,
    auth: Capability,
    entry: Any,
    plan: SpawnPlan,
    *,
    op: str = "spawn",
    inherit: list[tuple[Capability, Rights]] | None = None,
    source: Confinement | None = None,
    entry_vetted: bool = False,
    done: Callable[[AIOSError | None], None] | None = None,
    aid: int | None = None,
) -> tuple[Agent, int, int]:
    """Create, wire and start an agent; returns ``(agent, control slot, endpoint slot)``
    in the parent's capability space.  Nothing is left behind if any step fails.

    Every operation that makes an agent comes through here, so this is where
    its confinement is decided (:func:`aios.kernel.confinement.derive`): at
    least as strict as ``parent`` (the creator) and ``source`` (the agent it is
    copied from or replaces).  ``entry_vetted``: the entry is the source's own,
    accepted when the source was made (clone, split, restarts).

    For the out-of-process executors the record is made here and the process
    (or Wasm store) is started asynchronously and ``done`` learns the outcome
    (it is not called for in-process agents, which are running on return).  ``aid``: the
    id the agent had before a crash (the kernel journal restores agents with their ids)."""
    original_entry = entry
    sup = k.ext[SUPERVISOR] if plan.restart != "no" else None  # NoSuchObject before anything is made
    if type(entry) is str and entry.startswith("image:"):
        entry, original_entry = load_image(k, parent, entry[len("image:"):], plan)
        entry_vetted = True  # a verified image's own entry
    if (type(entry) is str and not entry_vetted and _names_a_file(entry)
            and not confinement.may_name_paths(k, parent)):
        raise PermissionDenied(_NO_PATHS)  # a '/path/file.py:attr' entry is a file the kernel would load
    conf = _confine(k, op, parent, auth, plan, source)
    remote = plan.executor != "inproc"
    if remote:
        if type(entry) is not str:
            raise InvalidArgument(f"a {plan.executor} agent needs a 'module:attribute' (or .wat/.wasm) entry")
        if plan.executor == "wasm" and not entry_vetted and not confinement.may_name_paths(k, parent):
            raise PermissionDenied(_NO_PATHS)  # a Wasm entry is a file the kernel would read
        start: Any = entry
    else:
        start = k.resolve_entry(entry)
    run_hooks(k, "pre", op, parent=parent.aid, name=plan.name, entry=_entry_name(entry),
              rights=int(plan.rights), spec=plan.spec)
    chg = k.cdt.charge(auth, Resource.AGENTS, 1)
    a: Agent | None = None
    try:
        a = k.agents.create(parent.aid, plan.name, aid)
        a.entry = start
        a.confinement = conf
        a.state = plan.state
        a.spec = plan.spec
        a.detached = plan.detached
        a.cspace = k.cdt.new_space(a.aid)
        a.pt = PageTable()
        k._install_self_and_mailbox(a)  # slots 0 and 1
        k.cdt.derive(auth, a.cspace, plan.rights, quota=plan.quota)  # slot 2
        _derive_well_known(k, parent, a, plan)  # slots 3, 4, 5
        for cap, rights in (inherit or []) + plan.caps:
            if cap.valid:
                k.cdt.derive(cap, a.cspace, rights)
        a.auth_charge = chg
        chg.what = a
        if not remote:
            a.sched = k.sched.new_entity(a.aid, a, weight=plan.weight)
            k.start_coroutine(a, k.boot_info(a))
        ctl = k.cdt.root(parent.cspace, k.agent_object(a), PARENT_CONTROL)
        ep = k.cdt.derive(k.cap_of(a, 1), parent.cspace, Rights.WRITE | Rights.GRANT, badge=parent.aid)
        a.controls = (ctl,)
    except BaseException:
        if a is not None:
            _undo_create(k, a)
        k.cdt.uncharge(chg)
        raise
    if not remote:
        k.agents.transition(a, "start")
        k.make_runnable(a)
    if sup is not None:
        sup.register(a, parent, auth, original_entry, plan.opts, plan.restart, plan.domain)
    k.publish(f"agent.lifecycle.{_PAST[op]}", a.aid, agent=a.aid, parent=parent.aid, name=a.name,
              entry=_entry_name(entry), executor=conf.executor)
    run_hooks(k, "post", op, parent=parent.aid, agent=a.aid,
              entry=original_entry if type(original_entry) is str else "",
              opts={**plan.opts, "restart": plan.restart, "domain": plan.domain})
    if remote and plan.executor != confinement.CONSOLE:
        k.executors.start(a, done or _ignore)  # asynchronous: ``done`` is called later
    return a, ctl.slot, ep.slot


_NO_PATHS = ("a sandboxed agent cannot have the kernel read a path for it: name the code by "
             "'image:sha256:<digest>' or 'image:name:<name>' in the verified image store")


def _names_a_file(entry: str) -> bool:
    """``'/path/file.py:attribute'`` (the SDK loader's file form)."""
    path = entry.rpartition(":")[0]
    return path.startswith("/") and path.endswith(".py")


def _ignore(_err: AIOSError | None) -> None:
    pass


def _confine(k: Kernel, op: str, parent: Agent, auth: Capability, plan: SpawnPlan,
             source: Confinement | None) -> Confinement:
    """Decide the new agent's confinement and narrow ``plan`` to it (raises PermissionDenied)."""
    lim = auth.limits
    mem = _min_limit(plan.quota.memory, lim[Resource.MEMORY] if lim is not None else None)
    weight = _min_limit(plan.quota.cpu_weight, lim[Resource.CPU_WEIGHT] if lim is not None else None)
    conf = confinement.derive(
        k, op, creator=parent, source=source, executor=plan.executor, rights=plan.rights,
        memory=mem, cpu_weight=weight, processes=plan.limits.get("processes", 0),
        cpu_seconds=plan.limits.get("cpu_seconds", 0), images=plan.code_paths,
        operator=plan.executor == confinement.CONSOLE,
    )
    if not conf.operator:
        plan.executor = conf.executor
        plan.rights = conf.rights
        plan.quota = replace(plan.quota, memory=conf.memory, cpu_weight=conf.cpu_weight)
        plan.weight = min(plan.weight, conf.cpu_weight)
    return conf


def _min_limit(want: int | None, have: int | None) -> int | None:
    """What ``derive`` gives an authority: the smaller, ``None`` meaning "as the parent"."""
    if want is None:
        return have
    return want if have is None else min(want, have)


def load_image(k: Kernel, caller: Agent, ref: str, plan: SpawnPlan) -> tuple[str, str]:
    """Verify a signed image (agentsupervisor) and narrow the plan to its manifest.

    ``ref`` is ``sha256:<digest>`` or ``name:<name>[@<version>]`` (an image in the
    verified store) or, for callers that may have the kernel read paths for them
    (the operator, unconfined agents: :func:`confinement.may_name_paths`), a path.
    Returns the entry to start and the reference to restart from (by digest)."""
    store = k.ext[IMAGES]  # the signed-images kernel module
    if not store.is_store_ref(ref) and not confinement.may_name_paths(k, caller):
        raise PermissionDenied(_NO_PATHS)  # before the path is looked at: no oracle
    if k.home is None:
        raise InvalidArgument("images need a kernel with a home (trust store and image cache)")
    verified, root = store.resolve(ref, k.home)
    m = verified.manifest
    plan.rights &= rights_from_names([c for c in m.capabilities if c in Rights.__members__]) | (
        plan.rights & (Rights.SPAWN_AGENT | Rights.ALLOC_MEMORY))
    plan.executor = m.executor  # asked for by the image: refused if weaker than the bounds
    plan.quota = Quota(memory=min(m.resources.memory_bytes, plan.quota.memory or m.resources.memory_bytes),
                       agents=plan.quota.agents, ipc_rate=plan.quota.ipc_rate,
                       cpu_weight=m.resources.cpu_weight)
    plan.name = plan.name or m.name
    plan.spec = {**plan.spec, "image": {"name": m.name, "version": m.version, "digest": verified.digest,
                                        "publisher": verified.publisher}}
    plan.code_paths = (str(root),)
    plan.limits = {"cpu_seconds": m.resources.cpu_seconds, "processes": m.resources.processes}
    again = f"image:sha256:{verified.digest}"
    if m.executor == "wasm":
        return str(root / m.entry), again
    if m.executor == "inproc":
        import sys

        if str(root) not in sys.path:
            sys.path.append(str(root))
    return m.entry, again


_PAST = {
    "spawn": "spawned",
    "clone": "cloned",
    "split": "split",
    "specialize": "specialized",
}


def _derive_well_known(k: Kernel, parent: Agent, a: Agent, plan: SpawnPlan) -> None:
    cs = parent.cspace
    for slot, rights, badge in (
        (3, plan.dir_rights, None),
        (4, plan.events_rights, None),
        (5, Rights.WRITE, a.aid),
    ):
        try:
            src = cs.get(slot if slot != 5 else 1)
        except AIOSError:
            continue
        want_kind = {3: ObjKind.DIRECTORY, 4: ObjKind.TOPIC, 5: ObjKind.ENDPOINT}[slot]
        if src.obj.kind is not want_kind:
            continue
        k.cdt.derive(src, a.cspace, rights, badge=badge, slot=slot)


def _undo_create(k: Kernel, a: Agent) -> None:
    if a.coro is not None:
        a.coro.close()
        a.coro = None
    k.cdt.drop_space(a.aid)
    if a.status is not AgentState.ZOMBIE:
        k.agents.transition(a, "exit")
    k.agents.transition(a, "reap")
    k.agents.forget(a)


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    mod = getattr(entry, "__module__", "?")
    name = getattr(entry, "__qualname__", type(entry).__name__)
    return f"{mod}:{name}"


def _derived_name(name: str, suffix: str) -> str:
    """``name.suffix``, once: a clone of a clone is still ``name.clone`` (a chain of
    generations must not outgrow the name limit)."""
    base = name.removesuffix("." + suffix)
    return base[: limits.AGENT_NAME_MAX - len(suffix) - 1] + "." + suffix


def attenuated(a: Agent, mask: Rights) -> list[tuple[Capability, Rights]]:
    """Copies of ``a``'s own capabilities (beyond the well-known slots), narrowed."""
    out = []
    for cap in a.cspace.caps():
        if cap.slot >= 6 and cap.valid and cap.obj.kind is not ObjKind.AUTHORITY:
            out.append((cap, Rights(cap.rights & ~mask)))
    return out


def clone(k: Kernel, a: Agent, auth: Capability, opts: dict[str, Any]) -> tuple[Agent, int, int]:
    opts = dict(as_opts(opts, SPAWN_OPTS))
    opts.setdefault("state", a.state)
    opts.setdefault("spec", a.spec)
    opts.setdefault("name", _derived_name(a.name, "clone"))
    plan = SpawnPlan(a, auth, opts)
    return spawn(k, a, auth, a.entry, plan, op="clone", inherit=attenuated(a, ATTENUATE),
                 source=confinement.of(k, a), entry_vetted=True)


def specialize(
    k: Kernel, a: Agent, auth: Capability, spec: Any, opts: dict[str, Any]
) -> tuple[Agent, int, int]:
    allowed = SPAWN_OPTS | {"rights_mask", "entry"}
    opts = dict(as_opts(opts, allowed))
    mask = rights_from_names(opts.pop("rights_mask", 0))
    named = opts.pop("entry", None)
    entry = named or a.entry
    opts["spec"] = spec
    opts.setdefault("state", a.state)
    opts.setdefault("name", _derived_name(a.name, "special"))
    plan = SpawnPlan(a, auth, opts)
    plan.rights &= ~mask
    plan.caps = [(c, Rights(r & ~mask)) for c, r in plan.caps]
    return spawn(k, a, auth, entry, plan, op="specialize", inherit=attenuated(a, ATTENUATE | mask),
                 source=confinement.of(k, a), entry_vetted=not named)


def split(
    k: Kernel, a: Agent, auth: Capability, splitter: Any, router: Any, opts: dict[str, Any]
) -> tuple[Agent, int, int]:
    """Partition ``a``'s state (``splitter``) and mailbox (``router``) into ``a`` and a new agent."""
    keep_state, give_state = _partition_state(a.state, splitter)
    mb = a.mailbox
    keep: deque[Message] = deque()
    give: list[Message] = []
    for msg in mb.q:
        (give if _route(router, msg) else keep).append(msg)
    opts = dict(as_opts(opts, SPAWN_OPTS))
    opts["state"] = give_state
    opts.setdefault("spec", a.spec)
    opts.setdefault("name", _derived_name(a.name, "split"))
    plan = SpawnPlan(a, auth, opts)
    b, ctl, ep = spawn(k, a, auth, a.entry, plan, op="split", inherit=attenuated(a, ATTENUATE),
                       source=confinement.of(k, a), entry_vetted=True)
    # commit: nothing below can fail
    a.state.clear()
    a.state.update(keep_state)
    mb.q = keep
    b.mailbox.q.extend(give)
    return b, ctl, ep


def _partition_state(state: dict[str, Any], splitter: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if isinstance(splitter, dict):
        keys = splitter.get("keys")
        if not isinstance(keys, (list, tuple)) or not all(type(x) is str for x in keys):
            raise InvalidArgument("splitter spec must be {'keys': [str, ...]}")
        give = {x: state[x] for x in keys if x in state}
        keep = {x: v for x, v in state.items() if x not in give}
    elif callable(splitter):
        try:
            res = splitter(copy_plain(state, "state", 1 << 24))
        except Exception as e:
            raise AgentFault(f"splitter raised {e!r}") from None
        if type(res) is not tuple or len(res) != 2 or type(res[0]) is not dict or type(res[1]) is not dict:
            raise InvalidArgument("splitter must return (dict, dict)")
        keep, give = res
    else:
        raise InvalidArgument("splitter must be a callable or {'keys': [...]}")
    return (
        copy_plain(keep, "state", 1 << 24),
        copy_plain(give, "state", limits.SPEC_MAX_BYTES),
    )


def _route(router: Any, msg: Message) -> bool:
    if router is None:
        return False
    if isinstance(router, dict):
        badges = router.get("badges")
        senders = router.get("senders")
        return (isinstance(badges, (list, tuple)) and msg.badge in badges) or (
            isinstance(senders, (list, tuple)) and msg.sender in senders
        )
    if callable(router):
        try:
            return bool(router(msg))
        except Exception as e:
            raise AgentFault(f"router raised {e!r}") from None
    raise InvalidArgument("router must be a callable, {'badges': [...]} or {'senders': [...]}")


def merge(k: Kernel, caller: Agent, survivor: Agent, other: Agent, merger: Any) -> None:
    """Fold ``other`` into ``survivor``: state, mailbox, permitted capabilities, children."""
    if survivor is other:
        raise InvalidArgument("cannot merge an agent with itself")
    if not survivor.alive or not other.alive:
        raise AgentGone("both agents must be alive to merge")
    if other is caller:
        raise InvalidArgument("the caller cannot merge itself away; merge the other way round")
    if other is k.init or survivor is k.init:
        raise PermissionDenied("init cannot be merged")
    up = k.find(survivor.parent)
    while up is not None and up is not k.init:
        if up is other:  # its children (an ancestor of the survivor) would become the survivor's: a cycle
            raise InvalidArgument(f"agent {other.aid} is an ancestor of {survivor.aid}: merge it the other way round")
        up = k.find(up.parent)
    if merger is None:
        new_state = {**other.state, **survivor.state}
    elif callable(merger):
        try:
            new_state = merger(dict(survivor.state), dict(other.state))
        except Exception as e:
            raise AgentFault(f"merger raised {e!r}") from None
        if type(new_state) is not dict:
            raise InvalidArgument("merger must return a dict")
    else:
        raise InvalidArgument("merger must be a callable or None")
    new_state = copy_plain(new_state, "state", 1 << 24)
    run_hooks(k, "pre", "merge", survivor=survivor.aid, other=other.aid)
    movable = [c for c in other.cspace.caps() if c.slot >= 6 and _parent_may_hold(k, survivor, c)]
    # commit
    survivor.state.clear()
    survivor.state.update(new_state)
    survivor.mailbox.q = merge_in_arrival_order(survivor.mailbox, other.mailbox)
    moved = 0
    for cap in movable:
        try:
            k.cdt.derive(cap, survivor.cspace, cap.rights)
            moved += 1
        except AIOSError:
            continue
    for cid in list(other.children):
        child = k.find(cid)
        if child is not None:
            k.agents.reparent(child, survivor.aid)
    dropped = sum(1 for c in other.cspace.caps() if c.slot >= 6) - moved
    other.exit_status = {"merged_into": survivor.aid}
    k.kill(other, reason=f"merged into {survivor.aid}")
    k.publish("agent.lifecycle.merged", survivor.aid, agent=survivor.aid, other=other.aid,
              caps_moved=moved, caps_dropped=dropped)
    run_hooks(k, "post", "merge", survivor=survivor.aid, other=other.aid)


def _parent_may_hold(k: Kernel, survivor: Agent, cap: Capability) -> bool:
    """A capability may move to ``survivor`` if its parent holds it or an ancestor of it."""
    parent = survivor.parent
    c: Capability | None = cap
    while c is not None:
        if c.holder == parent or c.holder == survivor.aid:
            return True
        c = c.parent
    return False


def upgrade(k: Kernel, caller: Agent, target: Agent, entry: Any) -> None:
    if not target.alive:
        raise AgentGone(f"agent {target.aid} is not alive")
    if target.executor is not None:
        raise InvalidArgument("live upgrade is for in-process agents; restart remote ones from a new image")
    confinement.check_upgrade(k, caller, target)  # before the entry is even resolved
    start = k.resolve_entry(entry)
    run_hooks(k, "pre", "upgrade", agent=target.aid, entry=_entry_name(entry))
    target.upgrade_to = start
    k.publish("agent.lifecycle.upgrade_pending", target.aid, agent=target.aid, entry=_entry_name(entry))
    w = target.wait
    if target.status is AgentState.BLOCKED and w is not None and w.queue is target.mailbox.recv_waiters:
        # it is already between two messages, parked in receive: swap now
        k.end_wait(w)
        apply_upgrade(k, target)


def apply_upgrade(k: Kernel, a: Agent) -> None:
    """Called by the receive path between two messages: swap the coroutine."""
    start = a.upgrade_to
    a.upgrade_to = None
    old = a.coro
    a.entry = start
    k.start_coroutine(a, k.boot_info(a))
    if old is not None:
        try:
            old.close()
        except BaseException:
            pass
    a.pending = None
    a.pending_exc = None
    if a.status is AgentState.BLOCKED:
        k.agents.transition(a, "wake")
        k.make_runnable(a)
    else:
        k.agents.transition(a, "preempt")  # the new code starts on its next dispatch
    k.publish("agent.lifecycle.upgraded", a.aid, agent=a.aid, entry=_entry_name(start))
    run_hooks(k, "post", "upgrade", agent=a.aid)


def kill(k: Kernel, caller: Agent, target: Agent, tree: bool) -> None:
    if target is k.init:
        raise PermissionDenied("init cannot be killed")
    if not target.alive:
        raise AgentGone(f"agent {target.aid} is already {target.status.value}")
    run_hooks(k, "pre", "kill", agent=target.aid, by=caller.aid, tree=tree)
    sup = k.ext.get(SUPERVISOR)
    if sup is not None:
        sup.stop(target)  # asked for: not a failure, no restart
    k.publish("agent.lifecycle.killed", target.aid, agent=target.aid, by=caller.aid, tree=tree)
    k.kill(target, reason=f"killed by {caller.aid}", tree=tree)
    run_hooks(k, "post", "kill", agent=target.aid, by=caller.aid)


def suspend(k: Kernel, target: Agent) -> None:
    if target is k.init:
        raise PermissionDenied("init cannot be suspended")
    if target.executor is not None:
        raise InvalidArgument("suspend is for in-process agents; an out-of-process agent is killed or restarted")
    st = target.status
    if st not in (AgentState.READY, AgentState.RUNNING, AgentState.BLOCKED):
        raise IllegalTransition(f"agent {target.aid} is {st.value}")
    k.agents.transition(target, "suspend")
    if st is AgentState.READY and target is not k.current:
        k.sched.block(target.sched)
    k.publish("agent.lifecycle.suspended", target.aid, agent=target.aid)


def resume(k: Kernel, target: Agent) -> None:
    if target.status is not AgentState.SUSPENDED:
        raise IllegalTransition(f"agent {target.aid} is {target.status.value}, not suspended")
    if target.wait is not None and not target.wait.done:
        k.agents.transition(target, "resume_blocked")
    else:
        k.agents.transition(target, "resume")
        k.make_runnable(target)
    k.publish("agent.lifecycle.resumed", target.aid, agent=target.aid)


Hook = Callable[..., None]
