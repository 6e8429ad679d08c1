"""Mutexes with priority inheritance, semaphores, condition variables."""

from __future__ import annotations

import pytest

from aios.abi.errors import (
    Busy,
    Deadlock,
    IllegalTransition,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    WouldBlock,
)
from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler
from aios.kernel.sync import MAX_LOCK_DEPTH, SyncTable

MS = 1_000_000
US = 1_000
TICK = 50 * US


class World:
    """Scheduler + sync table + agents that run tiny programs, like the kernel loop."""

    def __init__(self, pi: bool = True) -> None:
        self.clock = VirtualClock()
        self.sched = Scheduler(self.clock)
        self.ents: dict[int, SchedEntity] = {}
        self.sync = SyncTable(self.sched, self.ents.__getitem__)
        if not pi:  # control experiment: a table whose boosts are ignored
            self.sched.set_pi = lambda ent, donor: None  # type: ignore[method-assign]
        self.progs: dict[int, list[tuple[str, int]]] = {}
        self.log: list[tuple[int, int, str, int]] = []  # (t, key, op, arg)
        self.cur: SchedEntity | None = None

    def agent(self, key: int, weight: int = 1024) -> SchedEntity:
        e = self.sched.new_entity(key, None, weight=weight)
        self.ents[key] = e
        return e

    def start(self, key: int, prog: list[tuple[str, int]]) -> None:
        self.progs[key] = list(prog)
        self.sched.wake(self.ents[key])

    def run(self, until_ns: int) -> None:
        cur = self.cur
        while self.clock.now_ns() < until_ns:
            self.cur = cur
            if cur is None:
                cur = self.sched.pick()
                if cur is None:
                    self.cur = None
                    return
            prog = self.progs[cur.key]
            if not prog:
                self.sched.block(cur)
                cur = None
                continue
            op, arg = prog[0]
            now = self.clock.now_ns()
            if op == "run":
                step = min(TICK, arg)
                self.clock.advance(step)
                prog[0] = ("run", arg - step)
                if arg - step == 0:
                    prog.pop(0)
                if self.sched.charge(cur, step):
                    self.sched.put_prev(cur)
                    cur = None
                continue
            prog.pop(0)
            if op == "lock":
                self.log.append((now, cur.key, "lock", arg))
                if not self.sync.lock(arg, cur.key):
                    self.log.append((now, cur.key, "blocked", arg))
                    self.sched.block(cur)
                    cur = None
                    continue
                self.log.append((now, cur.key, "acquired", arg))
            elif op == "unlock":
                woken = self.sync.unlock(arg, cur.key)
                self.log.append((now, cur.key, "unlock", arg))
                if woken is not None:
                    self.log.append((now, woken, "acquired", arg))
                    self.sched.wake(self.ents[woken])
            if self.sched.charge(cur, 0):  # the syscall was a trap: preemption point
                self.sched.put_prev(cur)
                cur = None

        self.cur = cur

    def when(self, key: int, op: str) -> int:
        return next(t for t, k, o, _ in self.log if k == key and o == op)


def _inversion(pi: bool, medium_deadline: bool) -> tuple[int, int]:
    w = World(pi=pi)
    _low, med, high = w.agent(1), w.agent(2, weight=88761), w.agent(3)
    w.sched.set_deadline(high, runtime_ns=20 * MS, deadline_ns=100 * MS, period_ns=100 * MS)
    if medium_deadline:
        w.sched.set_deadline(med, runtime_ns=50 * MS, deadline_ns=200 * MS, period_ns=200 * MS)
    m = w.sync.mutex_create()
    cs = 5 * MS
    w.start(1, [("lock", m), ("run", cs), ("unlock", m), ("run", 100 * MS)])
    w.run(1 * MS)  # low is inside its critical section
    assert w.sync.owner(m) == 1
    w.start(2, [("run", 1000 * MS)])  # the CPU hog
    w.start(3, [("lock", m), ("run", 1 * MS), ("unlock", m)])
    w.run(2000 * MS)
    blocked = w.when(3, "acquired") - w.when(3, "blocked")
    return blocked, cs


@pytest.mark.parametrize("medium_deadline", [False, True])
def test_high_blocks_at_most_lows_critical_section(medium_deadline: bool) -> None:
    blocked, cs = _inversion(pi=True, medium_deadline=medium_deadline)
    assert 0 < blocked <= cs


@pytest.mark.parametrize("medium_deadline", [False, True])
def test_without_inheritance_the_medium_agent_inverts(medium_deadline: bool) -> None:
    blocked, cs = _inversion(pi=False, medium_deadline=medium_deadline)
    assert blocked > 2 * cs


def test_three_lock_chain_boosted_end_to_end_then_deboosted() -> None:
    w = World()
    s, y = w.sched, w.sync
    t1, t2, t3 = w.agent(1, 15), w.agent(2, 335), w.agent(3, 1024)
    top = w.agent(4)
    s.set_deadline(top, runtime_ns=MS, deadline_ns=10 * MS, period_ns=10 * MS)
    for e in (t1, t2, t3, top):
        s.wake(e)
    a, b, c = y.mutex_create(), y.mutex_create(), y.mutex_create()
    assert y.lock(a, 1)
    assert y.lock(b, 2)
    assert y.lock(c, 3)
    assert not y.lock(a, 2)  # t2 waits on t1
    assert not y.lock(b, 3)  # t3 waits on t2
    # fair chain: weight inherited end to end
    assert s.effective_prio(t1) == (1, -1024) == s.effective_prio(t2)
    assert not y.lock(c, 4)  # the deadline task waits on t3
    want = s.effective_prio(top)
    assert want[0] == 0
    for e in (t1, t2, t3):
        assert s.effective_prio(e) == want
        assert s.stats(e)["effective_class"] == "deadline"
        assert s.stats(e)["class"] == "fair"
    assert y.unlock(a, 1) == 2  # hand-off to t2
    assert s.effective_prio(t1) == (1, -15)  # deboosted
    assert s.effective_prio(t2) == want  # still boosted through b <- t3 <- c <- top
    assert y.unlock(b, 2) == 3
    assert s.effective_prio(t2) == (1, -335)
    assert y.unlock(c, 3) == 4
    assert s.effective_prio(t3) == (1, -1024)
    for key in (1, 2, 3):
        assert s.stats(w.ents[key])["boosted"] == 0
    assert y.unlock(a, 2) is None and y.unlock(b, 3) is None and y.unlock(c, 4) is None


def test_abba_is_deadlock_and_changes_nothing() -> None:
    w = World()
    w.agent(1), w.agent(2)
    y = w.sync
    a, b = y.mutex_create(), y.mutex_create()
    assert y.lock(a, 1) and y.lock(b, 2)
    assert not y.lock(b, 1)
    with pytest.raises(Deadlock):
        y.lock(a, 2)
    assert y.waiters(a) == [] and y.waiting_on(2) is None and y.owner(a) == 1
    with pytest.raises(Deadlock):
        y.lock(b, 2)  # relock by the owner


def test_chain_walk_is_capped() -> None:
    w = World()
    n = MAX_LOCK_DEPTH + 2
    for k in range(n + 1):
        w.agent(k)
    ms = [w.sync.mutex_create() for _ in range(n)]
    for k in range(n):
        assert w.sync.lock(ms[k], k)
    for k in range(1, n - 1):
        assert not w.sync.lock(ms[k - 1], k)  # k waits on k-1: a chain of n-1
    with pytest.raises(Deadlock):
        w.sync.lock(ms[n - 2], n)


def test_unlock_by_non_owner_and_bad_ids() -> None:
    w = World()
    w.agent(1), w.agent(2)
    y = w.sync
    m = y.mutex_create()
    s = y.sem_create(1)
    with pytest.raises(NoSuchObject):
        y.lock(999, 1)
    with pytest.raises(InvalidArgument):
        y.lock(s, 1)
    assert y.lock(m, 1)
    with pytest.raises(PermissionDenied):
        y.unlock(m, 2)
    with pytest.raises(WouldBlock):
        y.trylock(m, 2)
    with pytest.raises(Busy):
        y.destroy(m)
    assert not y.lock(m, 2)
    with pytest.raises(IllegalTransition):
        y.lock(m, 2)
    assert y.unlock(m, 1) == 2
    assert y.unlock(m, 2) is None
    y.destroy(m)
    with pytest.raises(NoSuchObject):
        y.lock(m, 1)


def test_cancel_withdraws_boost() -> None:
    w = World()
    low, _high = w.agent(1, 15), w.agent(2, 88761)
    y = w.sync
    m = y.mutex_create()
    assert y.lock(m, 1)
    assert not y.lock(m, 2)
    assert w.sched.effective_prio(low) == (1, -88761)
    assert y.cancel(2) == m  # timed out
    assert w.sched.effective_prio(low) == (1, -15)
    assert y.waiters(m) == []


def test_release_all_hands_off_held_mutexes() -> None:
    w = World()
    for k in (1, 2, 3):
        w.agent(k)
    y = w.sync
    a, b = y.mutex_create(), y.mutex_create()
    assert y.lock(a, 1) and y.lock(b, 1)
    assert not y.lock(a, 2) and not y.lock(b, 3)
    assert sorted(y.release_all(1)) == [2, 3]
    assert y.owner(a) == 2 and y.owner(b) == 3


def test_semaphore_order_and_limits() -> None:
    w = World()
    w.agent(1, 15), w.agent(2, 88761), w.agent(3, 1024)
    y = w.sync
    s = y.sem_create(1, limit=2)
    assert y.sem_down(s, 1)
    assert not y.sem_down(s, 3)
    assert not y.sem_down(s, 2)
    with pytest.raises(WouldBlock):
        y.sem_trydown(s, 1)
    assert y.sem_up(s) == 2  # strongest waiter first
    assert y.sem_up(s) == 3
    assert y.sem_up(s) is None and y.sem_up(s) is None
    with pytest.raises(InvalidArgument):
        y.sem_up(s)
    assert y.value(s) == 2
    with pytest.raises(InvalidArgument):
        y.sem_create(3, limit=2)


def test_condition_variable_requeues_onto_mutex() -> None:
    w = World()
    for k in (1, 2, 3):
        w.agent(k)
    y = w.sync
    m, c = y.mutex_create(), y.cond_create()
    assert y.lock(m, 1)
    assert y.cond_wait(c, m, 1) is None  # mutex released, nobody to wake
    assert y.lock(m, 2)
    assert y.cond_wait(c, m, 2) is None
    assert y.lock(m, 3)
    with pytest.raises(PermissionDenied):
        y.cond_wait(c, m, 1)
    assert y.cond_broadcast(c) == []  # mutex held by 3: both move to its queue
    assert y.waiters(m) == [1, 2]
    assert y.unlock(m, 3) == 1
    assert y.unlock(m, 1) == 2
    assert y.cond_signal(c) is None
    assert y.unlock(m, 2) is None
    assert y.lock(m, 3)
    assert y.cond_wait(c, m, 3) is None
    assert y.cond_signal(c) == 3 and y.owner(m) == 3  # mutex free: woken owning it
