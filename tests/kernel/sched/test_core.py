"""The scheduler facade: illegal transitions, statistics and SMP picks."""

from __future__ import annotations

import pytest
from schedtest import make

from aios.abi.errors import IllegalTransition, InvalidArgument

US = 1_000
TICK = 50 * US


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


def test_smp_two_currents() -> None:
    _clock, sched, _ents = make([1024] * 4, ncpus=2)
    a, b = sched.pick(), sched.pick()
    assert a is not None and b is not None and a is not b
    assert len(sched) == 2

