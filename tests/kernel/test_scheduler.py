"""Scheduler 2.0: EEVDF fair class and EDF/CBS deadline class, on a virtual clock."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from aios.abi.errors import Busy, IllegalTransition, InvalidArgument
from aios.bench._schedsim import DlTask, run_fair, run_mixed
from aios.kernel.clock import VirtualClock
from aios.kernel.eevdf_tree import EevdfTree
from aios.kernel.scheduler import (
    HINTS,
    SCHED_PRIO_TO_WEIGHT,
    SLICE_MAX_NS,
    SLICE_MIN_NS,
    SchedEntity,
    Scheduler,
    clamp_weight,
    nice_of_weight,
    weight_of_nice,
)

MS = 1_000_000
US = 1_000
SLICE = 750 * US
TICK = 50 * US

LINUX_TABLE = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
    110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
]  # fmt: skip


def make(n_weights: list[int], ncpus: int = 1) -> tuple[VirtualClock, Scheduler, list[SchedEntity]]:
    clock = VirtualClock()
    sched = Scheduler(clock, ncpus)
    ents = [sched.new_entity(i, f"agent{i}", weight=w) for i, w in enumerate(n_weights)]
    for e in ents:
        sched.wake(e)
    return clock, sched, ents


# -- weights -----------------------------------------------------------------


def test_weight_table_is_linux_verbatim() -> None:
    assert list(SCHED_PRIO_TO_WEIGHT) == LINUX_TABLE
    assert weight_of_nice(-20) == 88761
    assert weight_of_nice(0) == 1024
    assert weight_of_nice(5) == 335
    assert weight_of_nice(19) == 15
    assert nice_of_weight(820) == 1
    assert nice_of_weight(1000) is None
    for bad in (-21, 20, 1.0, True):
        with pytest.raises(InvalidArgument):
            weight_of_nice(bad)  # type: ignore[arg-type]


def test_one_ms_at_nice_5_adds_about_3_06_ms_of_vruntime() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    e = sched.new_entity(1, None)
    sched.set_fair(e, nice=5)
    sched.wake(e)
    assert sched.pick() is e
    v0 = e.vruntime
    for _ in range(10):  # ten traps of 100 us: the remainder is carried, nothing lost
        clock.advance(100 * US)
        sched.charge(e, 100 * US)
    dv = e.vruntime - v0
    assert dv == 1 * MS * 1024 // 335
    assert dv / MS == pytest.approx(3.0567, abs=1e-3)


def test_clamp_weight_caps_by_quota() -> None:
    assert clamp_weight(4096, 1024) == 1024
    assert clamp_weight(335, 1024) == 335
    with pytest.raises(InvalidArgument):
        clamp_weight(0, 1024)
    with pytest.raises(InvalidArgument):
        clamp_weight(1024, 10**6)


# -- fairness ----------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_fair_service_deviation_bounded(n: int) -> None:
    rnd = random.Random(n)
    weights = [rnd.choice([15, 137, 335, 820, 1024, 3121, 88761]) for _ in range(n)]
    weights[0], weights[-1] = 1024, 335  # always mixed
    clock, sched, ents = make(weights)
    total = 200 * n * SLICE  # >= 100 slices for everyone (and >= 100 of each agent's)
    res = run_fair(sched, clock, ents, total, TICK)
    for e in ents:
        # windows between the agent's own scheduling points: one max slice + one tick
        assert res.pick_range[e.key] <= SLICE + TICK, (e.key, e.weight)
        # every window, whatever its endpoints: EEVDF's bound, -r_max < lag < r_max + q
        assert res.dev_range[e.key] <= 2 * SLICE + TICK, (e.key, e.weight)
        ideal = total * e.weight / sum(weights)
        assert abs(res.service[e.key] - ideal) <= SLICE + TICK


def test_weights_1024_820_335_give_linux_shares() -> None:
    clock, sched, ents = make([1024, 820, 335])
    res = run_fair(sched, clock, ents, 3000 * MS, TICK)
    for e, want in zip(ents, (0.4699, 0.3763, 0.1537), strict=True):
        assert res.share(e.key) == pytest.approx(want, abs=0.0006)


def test_nice_0_vs_nice_5_is_753_247() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    a, b = sched.new_entity(1, None), sched.new_entity(2, None)
    sched.set_fair(b, nice=5)
    sched.wake(a)
    sched.wake(b)
    res = run_fair(sched, clock, [a, b], 2000 * MS, TICK)
    assert res.share(1) == pytest.approx(0.753, abs=0.001)
    assert res.share(2) == pytest.approx(0.247, abs=0.001)


def test_no_run_exceeds_its_slice() -> None:
    clock, sched, ents = make([1024, 88761, 15, 335])
    sched.set_fair(ents[1], hint="latency-critical")
    sched.set_fair(ents[2], hint="batch")
    sched.set_fair(ents[3], slice_ns=2 * MS)
    res = run_fair(sched, clock, ents, 1000 * MS, TICK)
    for e in ents:
        assert 0 < res.max_run[e.key] <= e.slice_ns, e.key
    assert res.max_run[1] == SLICE_MIN_NS


def test_woken_shorter_deadline_preempts_within_one_tick() -> None:
    clock, sched, (_a, _b) = make([1024, 1024])
    c = sched.new_entity(3, None)
    sched.set_fair(c, hint="latency-critical")
    cur = sched.pick()
    assert cur is not None
    clock.advance(TICK)
    assert sched.charge(cur, TICK) is False  # mid-slice, nothing better
    sched.wake(c)  # eligible at V with a 0.1 ms slice: an earlier deadline
    clock.advance(TICK)
    assert sched.charge(cur, TICK) is True  # the very next trap preempts
    sched.put_prev(cur)
    assert sched.pick() is c


def test_batch_wakeup_does_not_preempt() -> None:
    clock, sched, (_a, _b) = make([1024, 1024])
    c = sched.new_entity(3, None)
    sched.set_fair(c, hint="batch")
    cur = sched.pick()
    assert cur is not None
    sched.wake(c)
    clock.advance(TICK)
    assert sched.charge(cur, TICK) is False


def test_sleep_and_wake_keep_lag_within_two_slices() -> None:
    clock, sched, ents = make([1024, 1024, 335])
    rnd = random.Random(7)
    sleeper = ents[2]
    cur: SchedEntity | None = None
    for _ in range(4000):
        if cur is None:
            cur = sched.pick()
            assert cur is not None
        clock.advance(TICK)
        if sched.charge(cur, TICK):
            sched.put_prev(cur)
            cur = None
        if rnd.random() < 0.02:
            if sleeper.state.value == "sleeping":
                clock.advance(rnd.choice([0, 1, 1000]) * MS)  # even a long sleep banks nothing
                sched.wake(sleeper)
                lag = sched.lag_ns(sleeper)
                assert -2 * sleeper.slice_ns <= lag <= 2 * sleeper.slice_ns
            else:
                if cur is sleeper:
                    cur = None
                sched.block(sleeper)
                assert abs(sched.lag_ns(sleeper)) <= 2 * sleeper.slice_ns


def test_sleeper_banks_no_credit() -> None:
    clock, sched, (a, b) = make([1024, 1024])
    sched.block(b)
    res = run_fair(sched, clock, [a], 10_000 * MS, TICK)  # b sleeps for 10 s
    assert res.service[0] == 10_000 * MS
    sched.wake(b)
    res = run_fair(sched, clock, [a, b], 100 * MS, TICK)
    # b gets its share from now on, not 10 s of catch-up
    assert abs(res.service[1] - 50 * MS) <= 2 * SLICE + TICK


def test_reweight_keeps_lag_and_v() -> None:
    clock, sched, ents = make([1024, 1024, 1024])
    run_fair(sched, clock, ents, 37 * MS, TICK)
    e = ents[1]
    lag_before, v_before = sched.lag_ns(e), sched.vavg()
    sched.set_fair(e, nice=-5)
    assert sched.vavg() == v_before
    assert abs(sched.lag_ns(e) - lag_before) <= 3  # integer rounding only


# -- parameters ----------------------------------------------------------------


def test_set_fair_validation_changes_nothing() -> None:
    _clock, sched, (e,) = make([1024])
    before = sched.stats(e)
    for kw in (
        {"weight": 1024, "nice": 0},
        {"weight": 0},
        {"weight": 10**6},
        {"nice": 20},
        {"slice_ns": -1},
        {"hint": "turbo"},
        {"nice": 3, "hint": "warp"},
    ):
        with pytest.raises(InvalidArgument):
            sched.set_fair(e, **kw)  # type: ignore[arg-type]
        assert sched.stats(e) == before


def test_custom_slice_is_clamped_and_hints_map_to_slices() -> None:
    _clock, sched, (e,) = make([1024])
    sched.set_fair(e, slice_ns=1)
    assert e.slice_ns == SLICE_MIN_NS
    sched.set_fair(e, slice_ns=10**12)
    assert e.slice_ns == SLICE_MAX_NS
    sched.set_fair(e, slice_ns=0)
    assert e.slice_ns == SLICE
    for hint, (slice_ns, batch) in HINTS.items():
        sched.set_fair(e, hint=hint)
        assert (e.slice_ns, e.batch) == (slice_ns, batch)


def test_illegal_calls_raise() -> None:
    _clock, sched, (a, b) = make([1024, 1024])
    with pytest.raises(IllegalTransition):
        sched.charge(a, 10)
    with pytest.raises(IllegalTransition):
        sched.put_prev(a)
    cur = sched.pick()
    assert cur is not None
    with pytest.raises(InvalidArgument):
        sched.charge(cur, -1)
    other = b if cur is a else a
    sched.remove(other)
    assert len(sched) == 0
    with pytest.raises(IllegalTransition):
        sched.wake(other)


def test_len_and_stats() -> None:
    clock, sched, _ents = make([1024, 335, 88761])
    assert len(sched) == 3
    cur = sched.pick()
    assert cur is not None and len(sched) == 2
    clock.advance(TICK)
    sched.charge(cur, TICK)
    st = sched.stats(cur)
    for k in ("class", "weight", "vruntime", "lag_ns", "runtime_ns", "waits", "throttles"):
        assert k in st
    assert st["class"] == "fair" and st["runtime_ns"] == TICK and st["state"] == "running"
    sched.block(cur)
    assert len(sched) == 2
    assert sched.pick() is not None


# -- the tree: O(log n) structure checked against brute force ----------------------


def _check_tree(t: EevdfTree) -> int:
    def walk(n: SchedEntity | None, lo: tuple[int, int] | None) -> tuple[int, int, int]:
        if n is None:
            return 0, 1 << 200, 0
        hl, ml, cl = walk(n._l, lo)
        hr, mr, cr = walk(n._r, (n.deadline, n.key))
        assert abs(hl - hr) <= 1
        assert n._h == max(hl, hr) + 1
        assert n._minv == min(n.vruntime, ml, mr)
        for c in (n._l, n._r):
            if c is not None:
                assert c._p is n
        if n._l is not None:
            assert (n._l.deadline, n._l.key) < (n.deadline, n.key)
        if n._r is not None:
            assert (n._r.deadline, n._r.key) > (n.deadline, n.key)
        return n._h, min(n.vruntime, ml, mr), cl + cr + 1

    return walk(t.root, None)[2]


def test_tree_pick_matches_brute_force() -> None:
    rnd = random.Random(3)
    tree = EevdfTree()
    live: list[SchedEntity] = []
    for step in range(3000):
        if live and rnd.random() < 0.45:
            e = live.pop(rnd.randrange(len(live)))
            tree.remove(e)
        else:
            e = SchedEntity(step, None, 1024)
            e.vruntime = rnd.randrange(1000)
            e.deadline = e.vruntime + rnd.randrange(1, 500)
            tree.insert(e)
            live.append(e)
        if step % 97 == 0:
            assert _check_tree(tree) == len(live) == tree.n
        if live:
            w = rnd.randrange(1, 5000)
            s = rnd.randrange(0, 1000 * w)
            elig = [x for x in live if x.vruntime * w <= s]
            want = min(elig, key=lambda x: (x.deadline, x.key)) if elig else None
            assert tree.pick(s, w) is want
            lm = tree.leftmost_vruntime()
            assert lm is not None and lm.vruntime == min(x.vruntime for x in live)


def test_smp_two_currents() -> None:
    _clock, sched, _ents = make([1024] * 4, ncpus=2)
    a, b = sched.pick(), sched.pick()
    assert a is not None and b is not None and a is not b
    assert len(sched) == 2


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
