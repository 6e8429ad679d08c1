"""The fair class: EEVDF weights, shares, slices, lag and wake-up preemption, on a virtual clock."""

from __future__ import annotations

import random

import pytest
from schedtest import make

from aios.abi.errors import InvalidArgument
from aios.bench._schedsim import run_fair
from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler
from aios.kernel.sched.fair import (
    HINTS,
    SCHED_PRIO_TO_WEIGHT,
    SLICE_MAX_NS,
    SLICE_MIN_NS,
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

