"""The deadline class: EDF/CBS admission, throttling and deadlines met, on a virtual clock."""

from __future__ import annotations

from fractions import Fraction

import pytest
from schedtest import make

from aios.abi.errors import Busy, InvalidArgument
from aios.bench._schedsim import DlTask, run_fair, run_mixed
from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler

MS = 1_000_000
US = 1_000
TICK = 50 * US


# -- deadline class ---------------------------------------------------------------


def test_deadline_parameters_validated() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    e = sched.new_entity(1, None)
    for r, d, p in ((1000, 2000, 3000), (3000, 2000, 4000), (2000, 4000, 3000), (0, 1, 1)):
        with pytest.raises(InvalidArgument):
            sched.set_deadline(e, runtime_ns=r, deadline_ns=d, period_ns=p)
    assert sched.stats(e)["class"] == "fair"
    sched.set_deadline(e, runtime_ns=1024, deadline_ns=1024, period_ns=1024 * 2)
    assert sched.stats(e)["class"] == "deadline"


def test_admission_refuses_the_task_that_exceeds_095() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    ents = [sched.new_entity(i, None) for i in range(5)]
    for e in ents[:3]:
        sched.set_deadline(e, runtime_ns=3 * MS, deadline_ns=10 * MS, period_ns=10 * MS)
    sched.set_deadline(ents[3], runtime_ns=MS // 2, deadline_ns=10 * MS, period_ns=10 * MS)
    assert sched.dl_bandwidth() == Fraction(95, 100)
    with pytest.raises(Busy):
        sched.set_deadline(ents[4], runtime_ns=1024, deadline_ns=10 * MS, period_ns=10 * MS)
    assert sched.stats(ents[4])["class"] == "fair"
    assert sched.dl_bandwidth() == Fraction(95, 100)
    with pytest.raises(Busy):  # growing an admitted task past the bound is refused too
        sched.set_deadline(ents[0], runtime_ns=4 * MS, deadline_ns=10 * MS, period_ns=10 * MS)
    sched.set_fair_class(ents[3])  # releases its bandwidth
    sched.set_deadline(ents[4], runtime_ns=MS // 2, deadline_ns=10 * MS, period_ns=10 * MS)
    sched.remove(ents[4])
    assert sched.dl_bandwidth() == Fraction(90, 100)
    two = Scheduler(clock, ncpus=2)
    es = [two.new_entity(i, None) for i in range(3)]
    for e in es[:2]:
        two.set_deadline(e, runtime_ns=9 * MS, deadline_ns=10 * MS, period_ns=10 * MS)
    with pytest.raises(Busy):
        two.set_deadline(es[2], runtime_ns=2 * MS, deadline_ns=10 * MS, period_ns=10 * MS)


def _dl_setup(
    specs: list[tuple[int, int, int, int]], hogs: int
) -> tuple[VirtualClock, Scheduler, list[DlTask], list[SchedEntity]]:
    clock = VirtualClock()
    sched = Scheduler(clock)
    tasks = []
    for i, (runtime, period, deadline, work) in enumerate(specs):
        e = sched.new_entity(i, None)
        sched.set_deadline(e, runtime_ns=runtime, deadline_ns=deadline, period_ns=period)
        tasks.append(DlTask(e, work, period, deadline))
    fair = [sched.new_entity(100 + i, None) for i in range(hogs)]
    for h in fair:
        sched.wake(h)
    return clock, sched, tasks, fair


def test_admitted_tasks_meet_1000_of_1000_deadlines() -> None:
    specs = [(1500 * US, 5 * MS, 5 * MS, 1500 * US),
             (2400 * US, 8 * MS, 8 * MS, 2400 * US),
             (3 * MS, 10 * MS, 10 * MS, 3 * MS)]  # fmt: skip
    clock, sched, tasks, hogs = _dl_setup(specs, hogs=3)
    service = run_mixed(sched, clock, tasks, hogs, 10_000 * MS, 100 * US)
    for t in tasks:
        assert t.met >= 1000
        assert t.missed == 0
    # the fair class still gets the rest (~10 %)
    assert sum(service[h.key] for h in hogs) >= 0.09 * 10_000 * MS


def test_overrunning_task_is_throttled_and_others_meet_theirs() -> None:
    specs = [(1500 * US, 5 * MS, 5 * MS, 1500 * US),
             (2400 * US, 8 * MS, 8 * MS, 2400 * US),
             (2 * MS, 10 * MS, 10 * MS, 2 * MS),
             (1 * MS, 10 * MS, 10 * MS, 8 * MS)]  # the last one asks 1 ms, wants 8 ms
    clock, sched, tasks, hogs = _dl_setup(specs, hogs=1)
    service = run_mixed(sched, clock, tasks, hogs, 10_000 * MS, 100 * US)
    for t in tasks[:3]:
        assert t.met >= 1000 and t.missed == 0
    bad = tasks[3]
    assert bad.ent.throttles >= 900
    assert service[bad.ent.key] <= 0.101 * 10_000 * MS + 8 * MS  # held to its bandwidth


def test_deadline_beats_fair_and_next_event() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    hog = sched.new_entity(1, None)
    rt = sched.new_entity(2, None)
    sched.set_deadline(rt, runtime_ns=MS, deadline_ns=5 * MS, period_ns=10 * MS)
    sched.wake(hog)
    assert sched.pick() is hog
    sched.wake(rt)
    assert sched.charge(hog, 0) is True
    sched.put_prev(hog)
    assert sched.pick() is rt
    clock.advance(MS)
    assert sched.charge(rt, MS) is True  # runtime used up: throttled
    sched.put_prev(rt)
    assert sched.stats(rt)["throttled"] == 1
    assert sched.next_event_ns() == 10 * MS  # next period
    assert sched.pick() is hog
    clock.jump_to(10 * MS)
    assert sched.charge(hog, 0) is True  # replenished: preempts the fair hog
    sched.put_prev(hog)
    assert sched.pick() is rt
    assert rt.dl_abs == 15 * MS and rt.dl_left == MS
    assert sched.next_event_ns() is None


def test_cbs_wake_rule_resets_late_or_overflowing_deadline() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    e = sched.new_entity(1, None)
    sched.set_deadline(e, runtime_ns=2 * MS, deadline_ns=10 * MS, period_ns=10 * MS)
    sched.wake(e)
    assert (e.dl_abs, e.dl_left) == (10 * MS, 2 * MS)
    assert sched.pick() is e
    clock.advance(MS // 2)
    sched.charge(e, MS // 2)
    sched.block(e)
    clock.advance(MS // 2)  # q/(d-t) = 1.5/9 < 2/10: keep
    sched.wake(e)
    assert (e.dl_abs, e.dl_left) == (10 * MS, 1500 * US)
    assert sched.pick() is e
    sched.block(e)
    clock.advance(8 * MS)  # t = 9 ms: 1.5/1 > 0.2: new deadline and full budget
    sched.wake(e)
    assert (e.dl_abs, e.dl_left) == (19 * MS, 2 * MS)


def test_deadline_yield_waits_for_next_period() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    e = sched.new_entity(1, None)
    sched.set_deadline(e, runtime_ns=2 * MS, deadline_ns=10 * MS, period_ns=10 * MS)
    sched.wake(e)
    assert sched.pick() is e
    sched.yield_(e)
    sched.put_prev(e)
    assert sched.pick() is None
    assert sched.next_event_ns() == 10 * MS
    clock.jump_to(10 * MS)
    assert sched.pick() is e


def test_set_fair_class_returns_to_fair_queue() -> None:
    clock, sched, (a, b) = make([1024, 1024])
    sched.set_deadline(b, runtime_ns=MS, deadline_ns=10 * MS, period_ns=10 * MS)
    assert sched.pick() is b
    sched.put_prev(b)
    sched.set_fair_class(b)
    assert sched.dl_bandwidth() == 0
    assert sched.stats(b)["class"] == "fair"
    res = run_fair(sched, clock, [a, b], 100 * MS, TICK)
    assert res.share(0) == pytest.approx(0.5, abs=0.02)
