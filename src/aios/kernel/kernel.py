"""The kernel object and the in-process executor.

The kernel owns every table (agents, capability derivation tree, mailboxes,
arena, event bus, scheduler, timers) and is the only code that changes them.
Agents do not call it: they *trap*.  An in-process agent is a coroutine; its
SDK call ``await trap(sysno, *args)`` yields the tuple ``(sysno, args)`` to
whoever is driving the coroutine, which is this kernel (curio's design).
The driver loop in :meth:`Kernel._run_agent`:

1. ``send``s the result of the previous syscall into the coroutine (or
   ``throw``s its error) and receives the next trap;
2. looks the number up in the syscall table (a list: an index, no hashing)
   and calls the handler with the agent and the arguments;
3. keeps going with the same agent while its slice lasts: a syscall that
   completes immediately costs a ``send`` and a call, which is why a null
   syscall takes well under a microsecond;
4. stops when the handler parked the agent (returned ``BLOCK``), the agent
   exited, faulted or was preempted; time between traps is charged to the
   agent's scheduling entity.

A coroutine that awaits a plain asyncio future (a library doing I/O) yields
that future instead of a trap; the kernel parks the agent until the future
completes, then resumes it.  Whatever an agent raises, including
``SystemExit``, ends that agent (a zombie with the exception recorded and an
``agent.fault`` event), never the kernel.

Handlers live in the ``sys_*`` modules; they validate their arguments and
raise errors from :mod:`aios.abi.errors`.  A handler that raises anything else
has hit a kernel bug: the caller gets ``KernelPanic`` and a ``kernel.panic``
event is published, and the kernel goes on serving everyone else.

Blocking follows xv6: a handler parks the caller on a
:class:`~aios.kernel.waits.WaitQueue` with an optional timeout and returns
``BLOCK``; whoever makes the condition true calls :meth:`Kernel.wake`.  The
kernel's clock is injectable, so timeouts run on virtual time in tests.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import itertools
import logging
import operator
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from aios.abi import limits
from aios.abi.errors import (
    AgentFault,
    AgentGone,
    AIOSError,
    Category,
    InvalidArgument,
    KernelPanic,
    NoSuchObject,
    NoSuchSyscall,
    TimedOut,
)
from aios.abi.faults import fault_text
from aios.abi.rights import ObjKind, Rights
from aios.abi.slots import (
    SLOT_AUTHORITY,
    SLOT_DIRECTORY,
    SLOT_EVENTS,
    SLOT_MAILBOX,
    SLOT_PARENT,
    SLOT_SELF,
)
from aios.kernel.accounts import Ledger
from aios.kernel.agents import Agent, AgentState, AgentTable, DeadAgent
from aios.kernel.arena import Arena, PageTable, Pool, Region
from aios.kernel.asyncops import AsyncOp, AsyncOps
from aios.kernel.capabilities import Capability, CapabilityDerivationTree, CapabilitySpace, KObject
from aios.kernel.clock import Clock, MonotonicClock
from aios.kernel.events import EventBus, Subscription
from aios.kernel.quotas import Charge, Quota, Resource
from aios.kernel.registry import ERRNO_SHIFT, SUPERVISOR, Extensions, Registry
from aios.kernel.sched.core import Scheduler
from aios.kernel.sync import SyncTable
from aios.kernel.timers import Timers
from aios.kernel.waits import BLOCK, Wait, WaitQueue

log = logging.getLogger("aios.kernel")

RUNNING = AgentState.RUNNING
BLOCKED = AgentState.BLOCKED
SUSPENDED = AgentState.SUSPENDED
CHARGE_QUANTUM_NS = 50_000  # charge the scheduler at most this often while an agent runs

# well-known slots of every agent's capability space
class LifecycleHooks:
    """Pre-hooks may veto an operation by raising; post-hooks observe it."""

    OPS = ("spawn", "clone", "merge", "split", "upgrade", "specialize", "kill")

    def __init__(self) -> None:
        self.pre: dict[str, list[Callable[..., None]]] = {op: [] for op in self.OPS}
        self.post: dict[str, list[Callable[..., None]]] = {op: [] for op in self.OPS}

    def add_pre(self, op: str, fn: Callable[..., None]) -> None:
        self.pre[op].append(fn)

    def add_post(self, op: str, fn: Callable[..., None]) -> None:
        self.post[op].append(fn)


class Kernel:
    """All kernel state, the syscall dispatcher and the in-process executor."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        arena_bytes: int = limits.ARENA_BYTES,
        scheduler: Any = None,
        loader: Callable[[str], Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.now: Callable[[], int] = self.clock.now_ns
        self.agents = AgentTable()
        self.cdt = CapabilityDerivationTree(self.now, self._release)
        self.ledger = Ledger(self.cdt, self._authority_of)  # kernel buffers charged to agents
        self.arena = Arena(arena_bytes)
        self.bus = EventBus(self.now, on_queue=self._event_queued)
        self.sched: Any = scheduler or Scheduler(self.clock)
        self.sync = SyncTable(self.sched, lambda key: self.agents.get(key).sched)
        self.sync_orphans: set[int] = set()
        self.hooks = LifecycleHooks()
        self.loader = loader
        # what kernel modules register (syscall blocks, executors, hooks) and their state
        self.registry = Registry()
        self.ext = Extensions()
        self.table: list[Callable[..., Any] | None] = self.registry.syscalls.table
        self.timers = Timers()
        # public counters: services building messages and calls take numbers from them
        self.msg_seq = itertools.count(1)  # global arrival order of messages
        self.call_seq = itertools.count(1)  # call ids
        self.calls: dict[int, tuple[Wait, int]] = {}  # call id -> (caller's wait, receiver aid)
        self._serving: dict[int, set[int]] = {}  # receiver aid -> ids of calls it has taken
        self.async_ops = AsyncOps(self.ledger)
        self.external = 0  # agents parked on asyncio futures or threads
        # backpressure (the audit log): agents to hold at the end of their current
        # syscall, and how many are held now (their results wait with them)
        self.throttled: set[int] = set()
        self._holders: dict[int, set[str]] = {}  # throttled agent -> who holds it
        self.holding = 0
        self.current: Agent | None = None
        self.stopping = False
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None  # the thread running run(), while it runs
        self._armed: int | None = None  # the deadline run() sleeps until (None: forever)
        self._sleeping = False  # run() is parked on _wakeup
        self._posted: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._executor: Any = None
        self.stats = {"syscalls": 0, "dispatches": 0, "panics": 0, "faults": 0}
        # optional per-syscall observer (behavioral analysis): fn(agent, sysno, errno)
        self.observer: Callable[[Agent, int, int], None] | None = None
        # guards: policy checks on marked operations, fn(kernel, action, agent, **info); raise to refuse
        self.guards: dict[str, list[Callable[..., None]]] = {}
        self._to_bury: list[Any] = []
        from aios.kernel.executor_host import ExecutorHost

        self.executors = ExecutorHost(self)
        self.home: Any = None  # a pathlib.Path when the kernel keeps state on disk
        self._boot_kernel_space()
        from aios.kernel.syscalls import register

        register(self)  # the kernel's own syscall blocks

    # -- boot ------------------------------------------------------------------

    def _boot_kernel_space(self) -> None:
        """The kernel's own capability space (holder 0) and init (agent 1)."""
        self.kspace = self.cdt.new_space(0)
        self.directory: dict[str, Capability] = {}
        self._dir_names: dict[Capability, str] = {}  # directory capability -> its name
        dir_obj = self.cdt.new_object(ObjKind.DIRECTORY, self.directory)
        topic_obj = self.cdt.new_object(ObjKind.TOPIC, "")
        auth_obj = self.cdt.new_object(ObjKind.AUTHORITY, None)
        root_quota = Quota(
            memory=limits.ROOT_QUOTA_MEMORY,
            agents=limits.ROOT_QUOTA_AGENTS,
            ipc_rate=None,
            cpu_weight=limits.ROOT_QUOTA_CPU_WEIGHT,
        )
        init = self.agents.create(0, "init")
        init.cspace = self.cdt.new_space(init.aid)
        init.pt = PageTable()
        self._install_self_and_mailbox(init)
        self.root_authority = self.cdt.root(init.cspace, auth_obj, Rights(-1 & ((1 << 14) - 1)), quota=root_quota)
        self.cdt.root(init.cspace, dir_obj, Rights.READ | Rights.WRITE | Rights.GRANT)
        self.cdt.root(init.cspace, topic_obj, Rights.READ | Rights.WRITE | Rights.GRANT | Rights.ADMIN)
        init.supervisor = True
        self.agents.transition(init, "start")
        self.agents.transition(init, "dispatch")
        self.agents.transition(init, "block")  # init never runs code; it adopts orphans
        self.init = init

    def _install_self_and_mailbox(self, a: Agent) -> None:
        from aios.kernel.ipc import Mailbox

        aobj = self.cdt.new_object(ObjKind.AGENT, a)
        a.obj = aobj
        self.cdt.root(a.cspace, aobj, Rights.READ)  # slot 0
        a.mailbox = Mailbox(a.aid)
        mobj = self.cdt.new_object(ObjKind.ENDPOINT, a.mailbox, self._mailbox_destroyed)
        self.cdt.root(a.cspace, mobj, Rights.READ | Rights.WRITE | Rights.GRANT)  # slot 1

    # -- objects -------------------------------------------------------------

    def cap_of(self, a: Agent, slot: int) -> Capability:
        cs: CapabilitySpace = a.cspace
        return cs.get(slot)

    def agent_object(self, a: Agent) -> KObject:
        obj: KObject = a.obj
        return obj

    def mailbox_object(self, a: Agent) -> KObject:
        obj: KObject = self.cap_of(a, SLOT_MAILBOX).obj
        return obj

    def _authority_of(self, aid: int) -> Capability | None:
        """The authority capability an agent's kernel buffers are charged to (slot 2)."""
        a = self.agents._agents.get(aid)
        if a is None or a.cspace is None:
            return None
        try:
            cap: Capability = a.cspace.get(SLOT_AUTHORITY)
        except AIOSError:
            return None
        return cap if cap.obj.kind is ObjKind.AUTHORITY else None

    def new_region(self, auth: Capability, nbytes: int) -> KObject:
        from aios.kernel.arena import pages_for

        if type(nbytes) is not int or nbytes <= 0:
            raise InvalidArgument("size must be a positive int")
        if nbytes > limits.AGENT_MEM_ALLOC_MAX:
            raise InvalidArgument(f"size exceeds the {limits.AGENT_MEM_ALLOC_MAX}-byte limit")
        nframes = pages_for(nbytes)
        obj = self.cdt.new_object(ObjKind.MEMORY, None, self._region_destroyed)
        chg = self.cdt.charge(auth, Resource.MEMORY, nframes * limits.PAGE_SIZE, obj)
        try:
            frame = self.arena.frames.alloc(nframes)
        except AIOSError:
            self.cdt.uncharge(chg)
            raise
        obj.payload = (Region(obj.oid, frame, nframes, nbytes), chg)
        return obj

    def _region_destroyed(self, obj: KObject) -> None:
        payload = obj.payload
        if payload is None:
            return
        region, chg = payload
        if isinstance(region, Pool):
            region = region.region
        for pt, vpn in list(region.mappings):
            pt.unmap(vpn)
        self.arena.zero(region.frame, region.nframes)
        self.arena.frames.free(region.frame, region.nframes)
        self.cdt.uncharge(chg)
        obj.payload = None

    def _mailbox_destroyed(self, obj: KObject) -> None:
        mb = obj.payload
        mb.closed = True
        gone = self.gone(mb.owner)
        for w in mb.send_waiters.drain():
            self.wake(w, exc=gone)
        for w in mb.recv_waiters.drain():
            self.wake(w, exc=gone)
        for m in mb.q:  # calls still queued: their callers learn now, not at their timeout
            if m.call:
                entry = self.calls.get(m.call)
                if entry is not None:
                    self.wake(entry[0], exc=gone)
        self.refund_messages(mb.q)
        mb.q.clear()

    def call_received(self, cid: int, receiver: int) -> None:
        """Call ``cid`` reached ``receiver``: it answers it, or its death fails it."""
        entry = self.calls.get(cid)
        if entry is not None:
            if entry[1]:
                self._unserve(cid, entry[1])
            self.calls[cid] = (entry[0], receiver)
            self._serving.setdefault(receiver, set()).add(cid)

    def end_call(self, cid: int) -> tuple[Wait, int] | None:
        """Forget call ``cid`` (answered, timed out, or its caller ended)."""
        entry = self.calls.pop(cid, None)
        if entry is not None and entry[1]:
            self._unserve(cid, entry[1])
        probe = self.registry.ipc_probe
        if probe is not None:
            probe.ended(cid)
        return entry

    def _unserve(self, cid: int, receiver: int) -> None:
        mine = self._serving.get(receiver)
        if mine is not None:
            mine.discard(cid)
            if not mine:
                del self._serving[receiver]

    def gone(self, aid: int) -> AgentGone:
        """The error for using agent ``aid`` once it has ended, carrying its exit record
        (how it ended, its exit value, its fault and, for a fault, the traceback)."""
        a = self.find(aid)
        if a is None or a.alive:
            return AgentGone(f"agent {aid} is gone", agent=aid)
        rec = {"agent": aid, "name": a.name, "how": a.how or "ended", "exit": _plain(a.exit_status),
               "fault": a.fault}
        msg = f"agent {aid} ({a.name}) {rec['how']}"
        if a.fault:
            msg += f": {a.fault}"
        return AgentGone(msg, **rec, traceback=a.trace)

    def refund_messages(self, msgs: Any) -> None:
        """Messages left a mailbox queue: their senders get back what they were charged."""
        if not msgs:
            return
        cost = limits.MSG_COST
        senders = set(map(_SENDER, msgs))
        if len(senders) == 1:  # a batch from one sender: no per-message Python loop
            self.ledger.give(senders.pop(), sum(map(len, map(_PAYLOAD, msgs))) + cost * len(msgs))
            return
        by: dict[int, int] = {}
        for m in msgs:
            s = m.sender
            by[s] = by.get(s, 0) + len(m.payload) + cost
        give = self.ledger.give
        for s, n in by.items():
            give(s, n)

    def _release(self, cap: Capability, charges: list[Charge]) -> None:
        """The CDT invalidated ``cap``: undo what it paid for and its mappings."""
        if cap.holder == 0 and self._dir_names:
            name = self._dir_names.pop(cap, None)  # a registered endpoint whose owner is gone
            if name is not None and self.directory.get(name) is cap:
                del self.directory[name]
        holder = self.agents._agents.get(cap.holder) if cap.holder else None
        if holder is not None and holder.pt is not None and cap.obj.kind in (ObjKind.MEMORY, ObjKind.POOL):
            holder.pt.unmap_cap(cap)
        for chg in charges:
            what = chg.what
            if isinstance(what, KObject) and what.kind in (ObjKind.MEMORY, ObjKind.POOL):
                if not what.destroyed:
                    what.destroyed = True
                    self._region_destroyed(what)
            elif isinstance(what, Agent) and what.alive:
                self.kill(what, reason="authority revoked")

    # -- time and timers -------------------------------------------------------

    def call_at(self, t_ns: int, fn: Callable[..., None], *args: Any) -> list[Any]:
        """Run ``fn(*args)`` on the kernel thread at kernel time ``t_ns``; returns the
        entry :meth:`cancel_timer` takes.  Callable from any thread: if the loop is
        asleep past ``t_ns`` it is woken, so the timer fires on an idle kernel too."""
        timers = self.timers
        entry = timers.entry(t_ns, fn, args)
        tid = self._thread_id
        if tid is not None and tid != threading.get_ident():
            self.post(timers.push, entry)  # the heap is the kernel thread's
            return entry
        timers.push(entry)
        if self._sleeping and (self._armed is None or t_ns < self._armed):
            self.kick()
        return entry

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the kernel thread soon (safe from any thread)."""
        self._posted.append((fn, args))
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.kick)
            except RuntimeError:  # the loop has closed; run() is gone
                pass

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            fn, args = posted.popleft()
            try:
                fn(*args)
            except Exception as e:
                self.stats["panics"] += 1
                log.error("posted kernel call %r failed: %r", fn, e, exc_info=e)
                self.publish("kernel.panic", 0, call=getattr(fn, "__qualname__", repr(fn)), error=repr(e))

    def cancel_timer(self, entry: list[Any] | None) -> None:
        """Cancel a timer: it stays in the heap, inert, and lets go of its arguments
        (a wait, and through it an agent).  Many cancelled entries compact the heap."""
        tid = self._thread_id
        self.timers.cancel(entry, tid is None or tid == threading.get_ident())

    def _timer_failed(self, fn: Callable[..., None], e: Exception) -> None:
        self.stats["panics"] += 1
        log.error("kernel timer %r failed: %r", fn, e, exc_info=e)
        self.publish("kernel.panic", 0, timer=getattr(fn, "__qualname__", repr(fn)), error=repr(e))

    def _fire_timers(self) -> None:
        if self.timers.heap:
            self.timers.fire(self.now(), self._timer_failed)

    def next_timer_ns(self) -> int | None:
        nxt = self.timers.next_ns()
        sched_next = self.sched.next_event_ns()
        if sched_next is not None and (nxt is None or sched_next < nxt):
            nxt = sched_next
        return nxt

    # -- blocking ------------------------------------------------------------

    def park(self, a: Agent, queue: WaitQueue | None, timeout: Any = None, data: Any = None) -> Any:
        """Block ``a`` (which is running) on ``queue``; returns ``BLOCK``."""
        deadline = self.deadline(timeout)
        w = Wait(a, queue, data)
        if queue is not None:
            queue.push(w)
        if deadline is not None:
            w.timer = self.call_at(deadline, self.time_out, w)
        a.wait = w
        self.agents.transition(a, "block")  # the executor loop takes it off the run queue
        return BLOCK

    def deadline(self, timeout: Any) -> int | None:
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise InvalidArgument("timeout must be a number of seconds or None")
        if not 0 <= timeout <= limits.MAX_TIMEOUT_S:
            raise InvalidArgument(f"timeout must be in [0, {limits.MAX_TIMEOUT_S}] seconds")
        return self.now() + int(timeout * 1e9)

    def time_out(self, w: Wait) -> None:
        if w.done:
            return
        self.end_wait(w)
        self.deliver(w.agent, None, TimedOut("timed out"))

    def end_wait(self, w: Wait) -> None:
        w.done = True
        self.cancel_timer(w.timer)
        if w.queue is not None:
            w.queue.remove(w)
        a = w.agent
        if a.wait is w:
            a.wait = None
        d = w.data
        if type(d) is tuple and d:
            if d[0] == "call":
                self.end_call(d[1])
            elif d[0] == "sync":  # timed out or killed while waiting on a sync object
                self.sync.cancel(a.aid)
            elif d[0] == "held":
                self.holding -= 1

    def wake(self, w: Wait, value: Any = None, exc: AIOSError | None = None) -> None:
        if w.done:
            return
        self.end_wait(w)
        self.deliver(w.agent, value, exc)

    def deliver(self, a: Agent, value: Any, exc: BaseException | None = None) -> None:
        """Hand the result of a blocked syscall to its agent and make it runnable."""
        if a.executor is not None:
            if a.status is BLOCKED:
                self.agents.transition(a, "wake")
                self.agents.transition(a, "dispatch")
            a.executor.deliver(a, value, exc)
            self.executors.remote.resume_inbox(a)
            return
        a.pending = value
        a.pending_exc = exc
        if a.status is BLOCKED:
            self.agents.transition(a, "wake")
            self.sched.wake(a.sched)
            self.kick()
        elif a.status is SUSPENDED:
            self.agents.transition(a, "wake")

    def wake_sync(self, key: int | None) -> None:
        """A sync object was handed to agent ``key``: end its wait."""
        if key is None:
            return
        a = self.find(key)
        if a is None or a.wait is None:
            return
        w = a.wait
        w.data = None  # the object was granted; not a cancellation
        self.wake(w, None)

    def make_runnable(self, a: Agent) -> None:
        self.sched.wake(a.sched)
        self.kick()

    def kick(self) -> None:
        w = self._wakeup
        if w is not None and not w.is_set():
            w.set()

    # -- backpressure ---------------------------------------------------------

    def throttle(self, aid: int, by: str = "") -> None:
        """Hold agent ``aid`` at the end of its current (or next) syscall until
        :meth:`unthrottle`; its syscall's result is delivered then.  ``by`` names who holds
        it (the audit log, the journal): the agent goes on when every holder let go."""
        self.throttled.add(aid)
        self._holders.setdefault(aid, set()).add(by)

    def unthrottle(self, aid: int, by: str = "") -> None:
        held = self._holders.get(aid)
        if held is not None:
            held.discard(by)
            if held:
                return
            del self._holders[aid]
        self.throttled.discard(aid)
        a = self.find(aid)
        if a is None:
            return
        w = a.wait
        if w is not None and not w.done and type(w.data) is tuple and w.data and w.data[0] == "held":
            self.wake(w, w.data[1], w.data[2])

    def hold(self, a: Agent, value: Any, exc: BaseException | None) -> None:
        """Park ``a`` (running, its syscall done) with the syscall's result until released."""
        w = Wait(a, None, ("held", value, exc))
        a.wait = w
        self.holding += 1
        self.agents.transition(a, "block")

    # -- events ---------------------------------------------------------------

    def publish(self, topic: str, source: int = 0, **data: Any) -> None:
        self.bus.publish(topic, data, source)

    def _event_queued(self, sub: Subscription) -> None:
        q = sub.waiters
        if q is not None:
            w = q.pop()
            if w is not None:
                ev = sub.pop()
                self.wake(w, ev.to_dict())

    # -- async operations -----------------------------------------------------

    def new_async(self, owner: Agent) -> AsyncOp:
        return self.async_ops.new(owner.aid)

    def drop_async(self, handle: int) -> AsyncOp | None:
        """Forget an async operation (its result was taken, or nobody can take it)."""
        return self.async_ops.drop(handle)

    def complete_async(self, op: AsyncOp, value: Any = None, error: AIOSError | None = None) -> None:
        if op.done:
            return
        op.done = True
        op.value = value
        op.error = error
        for w in op.waiters.drain():
            self.drop_async(op.handle)
            self.wake(w, value, error)

    def run_in_thread(self, a: Agent, fn: Callable[..., Any], *args: Any) -> int:
        """Run ``fn`` off the kernel thread; its result completes an async op."""
        op = self.new_async(a)
        loop = asyncio.get_running_loop()
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(limits.PQC_WORKERS, thread_name_prefix="aios-pqc")
        fut = loop.run_in_executor(self._executor, fn, *args)
        self.external += 1

        def done(f: asyncio.Future[Any]) -> None:
            self.external -= 1
            err = f.exception()
            if err is None:
                self.complete_async(op, f.result())
            elif isinstance(err, AIOSError):
                self.complete_async(op, error=err)
            else:
                self.complete_async(op, error=InvalidArgument(str(err)))
            self.kick()

        fut.add_done_callback(done)
        return op.handle

    # -- the executor ---------------------------------------------------------

    def _run_agent(self, a: Agent) -> None:
        agents = self.agents
        agents.transition(a, "dispatch")
        self.current = a
        coro = a.coro
        send = coro.send
        table = self.table
        ntable = len(table)
        now = self.now
        ent = a.sched
        charge = self.sched.charge
        observer = self.observer
        counts = self.registry.syscall_counts
        throttled = self.throttled
        val = a.pending
        exc = a.pending_exc
        a.pending = None
        a.pending_exc = None
        t_last = now()
        n = 0
        try:
            while True:
                try:
                    trap = send(val) if exc is None else coro.throw(exc)
                except StopIteration as stop:
                    self.exit(a, stop.value)
                    return
                except KeyboardInterrupt:
                    raise
                except BaseException as err:
                    self.fault(a, err)
                    return
                exc = None
                val = None
                n += 1
                if type(trap) is tuple and len(trap) == 2:
                    sysno, args = trap
                    if type(sysno) is not int and isinstance(sysno, int) and not isinstance(sysno, bool):
                        sysno = int(sysno)
                    if type(sysno) is int and 0 <= sysno < ntable and type(args) is tuple:
                        h = table[sysno]
                        if h is None:
                            exc = NoSuchSyscall(f"no syscall {sysno}")
                        else:
                            try:
                                val = h(self, a, *args)
                            except AIOSError as e:
                                exc = e
                                val = None
                                if e.category is Category.CAPABILITY:
                                    self.violation(a, sysno, e)
                            except Exception as e:
                                exc = self.handler_failure(h, a, args, e)
                                val = None
                        if counts is not None:
                            counts[sysno] += 1
                            if exc is not None:
                                count_error(self.registry, sysno, exc)
                    else:
                        exc = (
                            NoSuchSyscall(f"no syscall {sysno!r}")
                            if type(args) is tuple
                            else InvalidArgument("syscall arguments must be a tuple")
                        )
                    if observer is not None:
                        observer(a, sysno, exc.code if exc is not None else 0)
                    if val is BLOCK or a.status is not RUNNING:
                        return
                    if throttled and a.aid in throttled:
                        self.hold(a, val, exc)
                        return
                elif isinstance(trap, asyncio.Future):
                    self._park_on_future(a, trap)
                    return
                else:
                    exc = InvalidArgument("an agent may await only AIOS traps or asyncio futures")
                t = now()
                if t - t_last >= CHARGE_QUANTUM_NS:
                    preempt = charge(ent, t - t_last)
                    t_last = t
                    if preempt:
                        a.pending = val
                        a.pending_exc = exc
                        agents.transition(a, "preempt")
                        return
        finally:
            # reconcile the scheduler with what the agent's state became
            self.current = None
            self.stats["syscalls"] += n
            a.syscalls += n
            self.stats["dispatches"] += 1
            dt = now() - t_last
            if dt > 0:
                charge(ent, dt)
            if self._to_bury:
                for coro in self._to_bury:
                    _bury(coro)
                self._to_bury.clear()
            st = a.status
            if st is AgentState.READY:
                self.sched.put_prev(ent)
            elif st is BLOCKED or st is SUSPENDED:
                self.sched.block(ent)
            elif not a.alive:
                self.sched.remove(ent)

    def guard(self, action: str, a: Agent, **info: Any) -> None:
        """Run the guards registered for ``action`` (policy); any may refuse by raising."""
        for fn in self.guards.get(action, ()):
            fn(self, action, a, **info)

    def add_guard(self, action: str, fn: Callable[..., None]) -> None:
        self.guards.setdefault(action, []).append(fn)

    def violation(self, a: Agent, sysno: int, e: AIOSError) -> None:
        """A capability check failed: that is a security event, not just an error."""
        self.publish("security.violation", a.aid, agent=a.aid, syscall=sysno, error=e.name,
                     message=e.message)

    def handler_failure(self, h: Callable[..., Any], a: Agent, args: tuple[Any, ...], e: Exception) -> AIOSError:
        """A handler raised a non-taxonomy error: bad arity, or a kernel bug."""
        if isinstance(e, TypeError):
            try:
                inspect.signature(h).bind(self, a, *args)
            except TypeError:
                return InvalidArgument(f"{h.__name__}: wrong number of arguments")
        self.stats["panics"] += 1
        log.error("kernel bug in %s called by agent %d: %r", h.__name__, a.aid, e, exc_info=e)
        self.publish("kernel.panic", 0, agent=a.aid, handler=h.__name__, error=repr(e))
        return KernelPanic(f"{h.__name__}: {e!r}")

    def _park_on_future(self, a: Agent, fut: asyncio.Future[Any]) -> None:
        fut._asyncio_future_blocking = False  # we are its awaiting task
        w = Wait(a, None, fut)
        a.wait = w
        self.agents.transition(a, "block")
        self.external += 1

        def done(_f: asyncio.Future[Any]) -> None:
            self.external -= 1
            self.wake(w, None)

        fut.add_done_callback(done)

    def run_batch(self, budget: int = limits.LOOP_BATCH) -> int:
        """Dispatch up to ``budget`` agents; returns how many ran."""
        if self._posted:
            self._run_posted()
        self._fire_timers()
        pick = self.sched.pick
        n = 0
        while n < budget:
            ent = pick()
            if ent is None:
                break
            a = ent.owner
            if a.status is not AgentState.READY:
                self.sched.block(ent)  # stale: it stopped being runnable another way
                continue
            self._run_agent(a)
            n += 1
            if self.timers.heap and self.timers.due(self.now()):
                self._fire_timers()
        return n

    async def run(self, *, until_idle: bool = False) -> None:
        """Drive agents until stopped (or, with ``until_idle``, until nothing can happen)."""
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        try:
            while not self.stopping:
                if self.run_batch():
                    await asyncio.sleep(0)
                    continue
                nxt = self.next_timer_ns()
                outside = self.external + self.executors.busy() + self.holding
                if until_idle and nxt is None and outside == 0 and len(self.sched) == 0:
                    await asyncio.sleep(0)
                    if len(self.sched) == 0 and self.external + self.executors.busy() + self.holding == 0:
                        break
                    continue
                if self.clock.virtual and nxt is not None and outside == 0:
                    await asyncio.sleep(0)
                    if len(self.sched) == 0:
                        self.clock.jump_to(nxt)  # type: ignore[attr-defined]
                    continue
                timeout = None if nxt is None else max(0.0, (nxt - self.now()) / 1e9)
                self._wakeup.clear()
                if len(self.sched) or self._posted:
                    continue
                self._armed = nxt
                self._sleeping = True
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except TimeoutError:
                    pass
                finally:
                    self._sleeping = False
        finally:
            self._wakeup = None
            self._loop = None
            self._thread_id = None

    @property
    def serving_thread(self) -> int | None:
        """The ident of the thread inside :meth:`run` while the kernel serves, else None
        (observers on other threads post their reads to it instead of racing it)."""
        return self._thread_id

    def stop(self) -> None:
        self.stopping = True
        self.kick()

    def close(self) -> None:
        """Kill every agent and release the arena (kernel shutdown)."""
        for a in list(self.agents):
            if a.alive and a is not self.init:
                self.kill(a, reason="shutdown")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.arena.close()
        self.registry.run_shutdown()  # kernel modules, in their order

    # -- exits, faults, kills ----------------------------------------------------

    def exit(self, a: Agent, status: Any) -> None:
        a.exit_status = status
        self.terminate(a, "exited")

    def fault(self, a: Agent, err: BaseException) -> None:
        a.fault = fault_text(err)  # with the file and line of the agent's code
        a.trace = "".join(traceback.format_exception(err))[-limits.TRACE_MAX:]
        self.stats["faults"] += 1
        self.publish("agent.fault", a.aid, agent=a.aid, name=a.name, error=a.fault,
                     code=err.code if isinstance(err, AIOSError) else AgentFault.code)
        self.terminate(a, "faulted")

    def kill(self, a: Agent, reason: str = "killed", tree: bool = False) -> None:
        if not a.alive:
            return
        if tree:
            for cid in list(a.children):
                c = self.agents._agents.get(cid)
                if c is not None and c.alive:
                    self.kill(c, reason, tree=True)
        a.fault = a.fault or reason
        self.terminate(a, "killed")

    def terminate(self, a: Agent, how: str) -> None:
        if not a.alive:
            return
        a.how = how
        self.throttled.discard(a.aid)
        self._holders.pop(a.aid, None)
        if a.wait is not None:
            w = a.wait
            self.end_wait(w)
            if isinstance(w.data, asyncio.Future):
                w.data.cancel()
        for key in self.sync.release_all(a.aid):  # robust mutexes: hand them on
            self.wake_sync(key)
        if a.sched is not None and a is not self.current:
            self.sched.remove(a.sched)
        self.agents.transition(a, "exit")
        # calls it was serving fail; calls it made are dropped
        serving = [e[0] for cid in self._serving.pop(a.aid, ()) if (e := self.calls.get(cid)) is not None]
        if serving:
            gone = self.gone(a.aid)
            for w in serving:
                self.wake(w, exc=AgentGone(f"{gone.message} before replying", **gone.detail))
        for sub in self.bus.subscriptions(a.aid):
            self.bus.unsubscribe(sub.sid)
        for h in self.async_ops.of(a.aid):
            self.drop_async(h)
        if a.executor is not None:
            a.executor.terminate(a)
        coro, a.coro = a.coro, None
        if coro is not None:
            if a is self.current:
                self._to_bury.append(coro)  # it is mid-trap; closed when the executor regains control
            else:
                _bury(coro)
        if a.pt is not None:
            a.pt.clear()
        gone = self.gone(a.aid)
        objs = [a.obj]
        try:
            objs.append(self.mailbox_object(a))
        except AIOSError:
            pass  # it deleted its own mailbox capability
        self.cdt.epitaph = (gone.message, gone.detail, tuple(objs))
        try:
            self.cdt.drop_space(a.aid)
        finally:
            self.cdt.epitaph = None
        self.ledger.close(a.aid)  # what it sent may still be queued elsewhere
        self._adopt_orphans(a)
        reg = self.registry
        for hook in reg.early_exit_hooks:
            hook(a)
        self.publish(
            "agent.lifecycle.exited", a.aid, agent=a.aid, name=a.name, how=how,
            status=_plain(a.exit_status), fault=a.fault,
        )
        for hook in reg.exit_hooks:
            hook(a)
        self._notify_parent(a)

    def _adopt_orphans(self, a: Agent) -> None:
        """Orphans go to the nearest supervising ancestor, else init."""
        if not a.children:
            return
        sup = self.agents._agents.get(a.parent)
        while sup is not None and not (sup.supervisor and sup.alive):
            sup = self.agents._agents.get(sup.parent)
        new_parent = sup if sup is not None else self.init
        for cid in list(a.children):
            c = self.agents._agents.get(cid)
            if c is None:
                continue
            self.agents.reparent(c, new_parent.aid)
            self.publish("agent.lifecycle.reparented", cid, agent=cid, parent=new_parent.aid)
            if c.status is AgentState.ZOMBIE and (new_parent is self.init or c.detached):
                self.reap(c)

    def _notify_parent(self, a: Agent) -> None:
        p = self.agents._agents.get(a.parent)
        if p is None or p is self.init or a.detached or not p.alive:
            self.reap(a)
            return
        w = p.wait
        if w is not None and not w.done and type(w.data) is tuple and w.data[0] == "child":
            want = w.data[1]
            if want in (0, a.aid):
                self.wake(w, (a.aid, self.reap(a)))

    def reap(self, a: Agent) -> dict[str, Any]:
        status = {"agent": a.aid, "exit": a.exit_status, "fault": a.fault}
        if a.status is AgentState.ZOMBIE:
            self.agents.transition(a, "reap")
            self.agents.forget(a)
            if a.auth_charge is not None:  # a zombie counts against the agents quota until reaped
                self.cdt.uncharge(a.auth_charge)
                a.auth_charge = None
            self._release_record(a)
        return status

    def _release_record(self, a: Agent) -> None:
        """The zombie was reaped: let go of everything that still reaches its record.

        Capabilities that name the agent (its parent's control capability, copies
        granted to others) stay where they are, but their object now holds only the
        exit record (:class:`~aios.kernel.agents.DeadAgent`), so the record, its
        capability space, mailbox and coroutine are freed.  Agent ids are never
        reused (the table counts up), so such a capability can never name a
        different agent.  Control capabilities held by init, which runs no code
        and so could never use or delete them, are deleted."""
        obj = a.obj
        if obj is not None:
            obj.payload = DeadAgent(a.aid, a.name, a.how, _plain(a.exit_status), a.fault,
                                    self.executors.usage(a.aid))
        ictl = self.init.cspace
        for cap in list(a.controls):
            if cap.valid and cap.holder == self.init.aid and ictl is not None:
                self.cdt.delete(cap)
        a.controls = ()
        self.executors.forget(a.aid)
        a.cspace = None
        a.pt = None
        a.mailbox = None
        a.sched = None
        a.coro = None
        a.entry = None
        a.executor = None
        a.wait = None
        a.reply_wait = None
        a.state = {}
        a.subs = None

    # -- hosting -----------------------------------------------------------------

    def resolve_entry(self, entry: Any) -> Callable[[dict[str, Any]], Any]:
        if callable(entry):
            return entry  # type: ignore[no-any-return]
        if isinstance(entry, str):
            if self.loader is None:
                raise InvalidArgument("this kernel has no loader for named entry points")
            return self.loader(entry)
        raise InvalidArgument("entry must be a callable or 'module:attribute'")

    def start_coroutine(self, a: Agent, info: dict[str, Any]) -> None:
        start = a.entry if callable(a.entry) else self.resolve_entry(a.entry)
        try:
            coro = start(info)
        except AIOSError:
            raise
        except Exception as e:
            raise InvalidArgument(f"entry point failed to start: {e!r}") from e
        if not inspect.iscoroutine(coro) and not inspect.isgenerator(coro):
            raise InvalidArgument("entry point must return a coroutine")
        a.coro = coro

    def boot_info(self, a: Agent) -> dict[str, Any]:
        return {
            "aid": a.aid,
            "name": a.name,
            "parent": a.parent,
            "state": a.state,
            "spec": a.spec,
            "slots": {
                "self": SLOT_SELF,
                "mailbox": SLOT_MAILBOX,
                "authority": SLOT_AUTHORITY,
                "directory": SLOT_DIRECTORY,
                "events": SLOT_EVENTS,
                "parent": SLOT_PARENT,
            },
        }

    def object_counts(self) -> dict[str, int]:
        """Sizes of every kernel table that grows with agents (the leak check)."""
        spaces = self.cdt._spaces
        return {
            "agents": len(self.agents),
            "agents_live": self.agents.live,
            "cspaces": len(spaces),
            "capabilities": sum(len(cs) for cs in spaces.values()),
            "timers": len(self.timers) - self.timers.cancelled,  # live ones
            "calls": len(self.calls),
            "calls_served": len(self._serving),
            "async_ops": len(self.async_ops),
            "async_owners": len(self.async_ops.by_owner),
            "subscriptions": len(self.bus._subs),
            "directory": len(self.directory),
            "sync_tasks": len(self.sync._tasks),
            "sync_objects": len(self.sync._objs),
            "supervised": len(sup.records) if (sup := self.ext.get(SUPERVISOR)) is not None else 0,
            "remote_live": len(self.executors.live),
            "wasm_fuel": len(self.executors.fuel),
            "throttled": len(self.throttled),
            "held": self.holding,
            "posted": len(self._posted),
            "accounts": len(self.ledger.accounts),
        }

    def find(self, aid: int) -> Agent | None:
        return self.agents._agents.get(aid)

    def lookup_named(self, name: str) -> Capability:
        cap = self.directory.get(name)
        if cap is None or not cap.valid:
            raise NoSuchObject(f"no agent registered as {name!r}")
        return cap


_SENDER = operator.itemgetter(1)  # Message fields, for C-speed sums over a batch
_PAYLOAD = operator.itemgetter(3)


# Coroutines that refused to die (caught GeneratorExit and kept going).  Python
# cannot stop such a frame; keeping a reference means it is never resumed and
# its finalizer does not fire mid-run.  Bounded by the number of such agents.
_UNDEAD: list[Any] = []


def _drop_undead() -> None:
    """At exit: let the inert coroutines go without a traceback for each."""
    import sys

    hook = sys.unraisablehook
    sys.unraisablehook = lambda _u: None
    try:
        _UNDEAD.clear()
    finally:
        sys.unraisablehook = hook


atexit.register(_drop_undead)


def _bury(coro: Any) -> None:
    """Close an agent's coroutine; one that ignores GeneratorExit is kept, inert."""
    try:
        coro.close()
    except RuntimeError:
        _UNDEAD.append(coro)
    except BaseException:
        pass


def count_error(reg: Registry, sysno: int, exc: BaseException) -> None:
    """Count one failed syscall by number and errno (metrics are on)."""
    errors = reg.syscall_errors
    if errors is not None:
        key = getattr(exc, "code", KernelPanic.code) << ERRNO_SHIFT | sysno
        errors[key] = errors.get(key, 0) + 1


def _plain(v: Any) -> Any:
    """A value safe to put in an event (JSON-ish)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v[:256].hex()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v[:64]]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in list(v.items())[:64]}
    return repr(v)[:256]
