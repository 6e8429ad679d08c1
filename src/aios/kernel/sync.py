"""Kernel synchronisation objects: mutexes with priority inheritance, semaphores,
condition variables.

Design
------
These are kernel objects reached through syscalls; this module is their pure
core.  It never parks or wakes anything itself: every call answers what the
syscall handler must do.  ``lock`` returns False when the caller must block
(the kernel parks the agent and calls ``Scheduler.block``); ``unlock`` returns
the key of the agent that now owns the mutex and must be woken.  Ownership is
handed off directly to the top waiter, so a woken waiter never races for the
lock again and a stream of newcomers cannot starve it.

Priority inheritance follows Linux's ``rt-mutex-design.rst``.  Waiters of a
mutex are ordered by their effective priority (``Scheduler.effective_prio``:
deadline class by absolute deadline beats fair class, fair by weight; ties
FIFO).  An owner runs at the strongest of its own priority and the top waiter
of every mutex it holds (``Scheduler.set_pi``).  When an owner's effective
priority changes and it is itself blocked on a mutex, it is requeued there and
the walk continues with that mutex's owner: boosting is transitive along the
chain.  A walk stops at the first owner whose priority does not change.  On
unlock (or when a waiter times out or dies) the same walk deboosts.

Before a task blocks, the chain from the mutex's owner is walked: meeting the
caller again means the wait would close a cycle (``Deadlock``, nothing
changed); a chain longer than ``MAX_LOCK_DEPTH`` (1024, Linux's
``max_lock_depth``) is refused with ``Deadlock`` too.

Semaphores and condition variables have no owner, so they do not boost (as in
Linux); their waiters are still served strongest priority first.  A signalled
condition-variable waiter is moved straight onto the mutex's wait queue if the
mutex is held (futex requeue-PI), so a broadcast wakes at most one agent.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aios.abi.errors import (
    Busy,
    Deadlock,
    IllegalTransition,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    WouldBlock,
)
from aios.kernel.sched.core import Prio, SchedEntity, Scheduler

MAX_LOCK_DEPTH: Final = 1024
SEM_VALUE_MAX: Final = (1 << 31) - 1
UNSCHEDULED_PRIO: Final[Prio] = (1, -1024)  # a waiter without an entity: the default fair weight

_Waiter = tuple[Prio, int, int]  # (priority, arrival, key)


class Kind(StrEnum):
    MUTEX = "mutex"
    SEMAPHORE = "semaphore"
    COND = "cond"


@dataclass(slots=True)
class _Mutex:
    owner: int | None = None
    waiters: list[_Waiter] = field(default_factory=list)


@dataclass(slots=True)
class _Semaphore:
    value: int
    limit: int
    waiters: list[_Waiter] = field(default_factory=list)


@dataclass(slots=True)
class _Cond:
    waiters: list[_Waiter] = field(default_factory=list)
    mutex_of: dict[int, int] = field(default_factory=dict)  # waiter key -> its mutex


@dataclass(slots=True)
class _Task:
    key: int
    held: set[int] = field(default_factory=set)
    waiting_on: int | None = None  # object id (mutex, semaphore or cond)
    waiter: _Waiter | None = None


class SyncTable:
    """All mutexes, semaphores and condition variables of one kernel."""

    def __init__(self, sched: Scheduler, entity_of: Callable[[int], SchedEntity | None]) -> None:
        self._sched = sched
        self._entity_of = entity_of
        self._objs: dict[int, _Mutex | _Semaphore | _Cond] = {}
        self._tasks: dict[int, _Task] = {}
        self._ids = itertools.count(1)
        self._arrival = itertools.count()

    # -- objects ------------------------------------------------------------------

    def mutex_create(self) -> int:
        oid = next(self._ids)
        self._objs[oid] = _Mutex()
        return oid

    def sem_create(self, value: int = 0, limit: int = SEM_VALUE_MAX) -> int:
        if not isinstance(value, int) or not isinstance(limit, int):
            raise InvalidArgument("semaphore value and limit must be ints")
        if not 0 <= value <= limit <= SEM_VALUE_MAX or limit < 1:
            raise InvalidArgument(f"need 0 <= value <= limit <= {SEM_VALUE_MAX}, limit >= 1")
        oid = next(self._ids)
        self._objs[oid] = _Semaphore(value, limit)
        return oid

    def cond_create(self) -> int:
        oid = next(self._ids)
        self._objs[oid] = _Cond()
        return oid

    def kind(self, oid: int) -> Kind:
        obj = self._get(oid)
        if isinstance(obj, _Mutex):
            return Kind.MUTEX
        return Kind.SEMAPHORE if isinstance(obj, _Semaphore) else Kind.COND

    def destroy(self, oid: int) -> None:
        """Delete an object; ``Busy`` if a mutex is held or anyone waits on it."""
        obj = self._get(oid)
        if obj.waiters or (isinstance(obj, _Mutex) and obj.owner is not None):
            raise Busy("object is in use", oid=oid)
        del self._objs[oid]

    def owner(self, mid: int) -> int | None:
        return self._mutex(mid).owner

    def waiters(self, oid: int) -> list[int]:
        """Keys waiting on ``oid``, strongest first."""
        return [w[2] for w in self._get(oid).waiters]

    def waiting_on(self, key: int) -> int | None:
        t = self._tasks.get(key)
        return t.waiting_on if t is not None else None

    def held(self, key: int) -> frozenset[int]:
        t = self._tasks.get(key)
        return frozenset(t.held) if t is not None else frozenset()

    def value(self, sid: int) -> int:
        return self._sem(sid).value

    # -- lookups ------------------------------------------------------------------

    def _get(self, oid: int) -> _Mutex | _Semaphore | _Cond:
        obj = self._objs.get(oid)
        if obj is None:
            raise NoSuchObject(f"no sync object {oid}", oid=oid)
        return obj

    def _mutex(self, oid: int) -> _Mutex:
        obj = self._get(oid)
        if not isinstance(obj, _Mutex):
            raise InvalidArgument(f"object {oid} is not a mutex", oid=oid)
        return obj

    def _sem(self, oid: int) -> _Semaphore:
        obj = self._get(oid)
        if not isinstance(obj, _Semaphore):
            raise InvalidArgument(f"object {oid} is not a semaphore", oid=oid)
        return obj

    def _cond(self, oid: int) -> _Cond:
        obj = self._get(oid)
        if not isinstance(obj, _Cond):
            raise InvalidArgument(f"object {oid} is not a condition variable", oid=oid)
        return obj

    def _task(self, key: int) -> _Task:
        t = self._tasks.get(key)
        if t is None:
            t = self._tasks[key] = _Task(key)
        return t

    def _free_task(self, t: _Task) -> None:
        if not t.held and t.waiting_on is None:
            self._tasks.pop(t.key, None)

    def _prio(self, key: int) -> Prio:
        ent = self._entity_of(key)
        # out-of-process agents have no entity here (the host schedules them)
        return UNSCHEDULED_PRIO if ent is None else self._sched.effective_prio(ent)

    def _enqueue(self, queue: list[_Waiter], t: _Task, oid: int) -> None:
        w = (self._prio(t.key), next(self._arrival), t.key)
        bisect.insort(queue, w)
        t.waiting_on = oid
        t.waiter = w

    @staticmethod
    def _dequeue(queue: list[_Waiter], t: _Task) -> None:
        assert t.waiter is not None
        i = bisect.bisect_left(queue, t.waiter)
        del queue[i]
        t.waiting_on = None
        t.waiter = None

    # -- priority inheritance --------------------------------------------------------

    def _check_chain(self, owner: int | None, key: int) -> None:
        """Refuse a wait by ``key`` behind ``owner`` that would close a cycle."""
        depth = 0
        k = owner
        while k is not None:
            if k == key:
                raise Deadlock("the wait would close a cycle of mutex waiters", key=key)
            depth += 1
            if depth > MAX_LOCK_DEPTH:
                raise Deadlock(f"lock chain longer than {MAX_LOCK_DEPTH}", key=key)
            t = self._tasks.get(k)
            if t is None or t.waiting_on is None:
                return
            obj = self._objs[t.waiting_on]
            if not isinstance(obj, _Mutex):
                return
            k = obj.owner

    def _donor(self, t: _Task) -> Prio | None:
        best: Prio | None = None
        for mid in t.held:
            m = self._objs[mid]
            assert isinstance(m, _Mutex)
            if m.waiters and (best is None or m.waiters[0][0] < best):
                best = m.waiters[0][0]
        return best

    def _propagate(self, key: int | None) -> None:
        """Recompute ``key``'s boost and walk the chain while priorities change."""
        for _ in range(MAX_LOCK_DEPTH + 1):
            if key is None:
                return
            t = self._tasks.get(key)
            ent = self._entity_of(key)
            if ent is None:  # not ours to boost: an out-of-process agent
                old = new = UNSCHEDULED_PRIO
            else:
                old = self._sched.effective_prio(ent)
                self._sched.set_pi(ent, self._donor(t) if t is not None else None)
                new = self._sched.effective_prio(ent)
            if t is None or t.waiting_on is None:
                return
            oid = t.waiting_on
            obj = self._objs[oid]
            if new != old:  # requeue at the new priority wherever it waits
                self._dequeue(obj.waiters, t)
                self._enqueue(obj.waiters, t, oid)
            if new == old or not isinstance(obj, _Mutex):
                return
            key = obj.owner

    # -- mutexes ------------------------------------------------------------------

    def lock(self, mid: int, key: int) -> bool:
        """Take mutex ``mid`` for ``key``; False = ``key`` must now block."""
        m = self._mutex(mid)
        t = self._task(key)
        if t.waiting_on is not None:
            raise IllegalTransition("agent is already blocked", key=key)
        if m.owner is None:
            m.owner = key
            t.held.add(mid)
            return True
        if m.owner == key:
            raise Deadlock("mutex already held by the caller", oid=mid)
        try:
            self._check_chain(m.owner, key)
        except Deadlock:
            self._free_task(t)
            raise
        self._enqueue(m.waiters, t, mid)
        self._propagate(m.owner)
        return False

    def trylock(self, mid: int, key: int) -> None:
        """The nowait form: take the mutex or raise ``WouldBlock``."""
        m = self._mutex(mid)
        if m.owner is not None:
            if m.owner == key:
                raise Deadlock("mutex already held by the caller", oid=mid)
            raise WouldBlock("mutex is held", oid=mid)
        self.lock(mid, key)

    def unlock(self, mid: int, key: int) -> int | None:
        """Release ``mid``; returns the key of the new owner, which must be woken."""
        m = self._mutex(mid)
        if m.owner != key:
            raise PermissionDenied("mutex is not held by the caller", oid=mid)
        return self._handoff(mid, m, key)

    def _handoff(self, mid: int, m: _Mutex, key: int) -> int | None:
        t = self._tasks[key]
        t.held.discard(mid)
        nxt: int | None = None
        if m.waiters:
            nxt = m.waiters[0][2]
            nt = self._tasks[nxt]
            self._dequeue(m.waiters, nt)
            nt.held.add(mid)
            m.owner = nxt
        else:
            m.owner = None
        self._propagate(key)  # deboost the old owner
        if nxt is not None:
            self._propagate(nxt)  # the new owner inherits the remaining waiters
        self._free_task(t)
        return nxt

    # -- semaphores -----------------------------------------------------------------

    def sem_down(self, sid: int, key: int) -> bool:
        """P(): take one unit; False = ``key`` must now block."""
        s = self._sem(sid)
        t = self._task(key)
        if t.waiting_on is not None:
            raise IllegalTransition("agent is already blocked", key=key)
        if s.value > 0:
            s.value -= 1
            self._free_task(t)
            return True
        self._enqueue(s.waiters, t, sid)
        return False

    def sem_trydown(self, sid: int, key: int) -> None:
        if self._sem(sid).value == 0:
            raise WouldBlock("semaphore is zero", oid=sid)
        self.sem_down(sid, key)

    def sem_up(self, sid: int) -> int | None:
        """V(): give one unit, straight to the strongest waiter (returned, to wake)."""
        s = self._sem(sid)
        if s.waiters:
            k = s.waiters[0][2]
            t = self._tasks[k]
            self._dequeue(s.waiters, t)
            self._free_task(t)
            return k
        if s.value >= s.limit:
            raise InvalidArgument("semaphore is at its limit", oid=sid)
        s.value += 1
        return None

    # -- condition variables ------------------------------------------------------------

    def cond_wait(self, cid: int, mid: int, key: int) -> int | None:
        """Atomically release ``mid`` and wait on ``cid``.  The caller always blocks;
        returns the key to wake as the mutex's new owner.  When signalled, the waiter
        owns ``mid`` again before it runs."""
        c = self._cond(cid)
        m = self._mutex(mid)
        if m.owner != key:
            raise PermissionDenied("cond_wait needs the mutex held", oid=mid)
        t = self._tasks[key]
        if t.waiting_on is not None:
            raise IllegalTransition("agent is already blocked", key=key)
        woken = self._handoff(mid, m, key)
        t = self._task(key)
        self._enqueue(c.waiters, t, cid)
        c.mutex_of[key] = mid
        return woken

    def cond_signal(self, cid: int) -> int | None:
        """Wake the strongest waiter: returns its key if it got the mutex, or None
        (nobody waits, or it was moved onto the held mutex's queue)."""
        c = self._cond(cid)
        if not c.waiters:
            return None
        return self._requeue(c, c.waiters[0][2])

    def cond_broadcast(self, cid: int) -> list[int]:
        """Wake every waiter; returns the keys that got their mutex (to wake)."""
        c = self._cond(cid)
        woken: list[int] = []
        for k in [w[2] for w in c.waiters]:
            r = self._requeue(c, k)
            if r is not None:
                woken.append(r)
        return woken

    def _requeue(self, c: _Cond, key: int) -> int | None:
        mid = c.mutex_of[key]
        m = self._mutex(mid)
        t = self._tasks[key]
        if m.owner is not None:
            self._check_chain(m.owner, key)
        self._dequeue(c.waiters, t)
        del c.mutex_of[key]
        if m.owner is None:
            m.owner = key
            t.held.add(mid)
            self._propagate(key)
            return key
        self._enqueue(m.waiters, t, mid)
        self._propagate(m.owner)
        return None

    # -- timeouts and death ---------------------------------------------------------------

    def cancel(self, key: int) -> int | None:
        """``key``'s wait ended without the object (timeout, signal, kill): it leaves
        the wait queue and any boost it lent is withdrawn.  Returns the object id."""
        t = self._tasks.get(key)
        if t is None or t.waiting_on is None:
            return None
        oid = t.waiting_on
        obj = self._objs[oid]
        self._dequeue(obj.waiters, t)
        if isinstance(obj, _Cond):
            del obj.mutex_of[key]
        elif isinstance(obj, _Mutex):
            self._propagate(obj.owner)
        self._free_task(t)
        return oid

    def release_all(self, key: int) -> list[int]:
        """``key`` is gone: cancel its wait and hand off every mutex it held (like
        a robust futex).  Returns the keys of the new owners, to wake."""
        self.cancel(key)
        t = self._tasks.get(key)
        woken: list[int] = []
        if t is None:
            return woken
        for mid in sorted(t.held):
            m = self._objs[mid]
            assert isinstance(m, _Mutex)
            nxt = self._handoff(mid, m, key)
            if nxt is not None:
                woken.append(nxt)
        self._tasks.pop(key, None)
        return woken

