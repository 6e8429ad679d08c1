"""Group scheduling: an agent's clones share one fair share.

Simulations of the pure scheduler on a virtual clock.  Each would fail with
:meth:`Scheduler.join_group` doing nothing (a flat run queue): a bystander's
share against 300 runnable clones would be 1/301, and it would wait behind
about half of them after waking.
"""

from __future__ import annotations

import pytest

from aios.abi.errors import IllegalTransition
from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler

US = 1_000
TICK = 100 * US


def family(sched: Scheduler, n: int, first_key: int = 100) -> list[SchedEntity]:
    """A founder woken, then ``n`` clones made while it runs (as AGENT_CLONE does)."""
    founder = sched.new_entity(first_key, "founder")
    sched.wake(founder)
    members = [founder]
    cur = sched.pick()
    assert cur is founder, "make the family on an idle queue"
    for i in range(n):
        c = sched.new_entity(first_key + 1 + i, f"clone{i}")
        sched.join_group(c, cur)
        sched.wake(c)
        members.append(c)
    sched.put_prev(cur)
    return members


def run(clock: VirtualClock, sched: Scheduler, picks: int) -> dict[int, int]:
    """Run ``picks`` dispatches of TICK each, everyone always runnable; ns per key."""
    got: dict[int, int] = {}
    for _ in range(picks):
        e = sched.pick()
        assert e is not None
        clock.advance(TICK)
        sched.charge(e, TICK)
        sched.put_prev(e)
        got[e.key] = got.get(e.key, 0) + TICK
    return got


def test_a_fork_bomb_family_gets_one_share() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    bystander = sched.new_entity(1, "bystander")
    members = family(sched, 300)
    sched.wake(bystander)
    assert len(sched) == 302  # every runnable agent counted, the group's node not
    got = run(clock, sched, 4000)
    share = got.get(1, 0) / sum(got.values())
    assert 0.45 <= share <= 0.55, share  # one share each: the bystander and the family
    assert sched.stats(members[5])["group"] == sched.stats(members[0])["group"]


def test_a_bystander_waking_waits_behind_the_group_not_its_members() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    bystander = sched.new_entity(1, "bystander")
    family(sched, 300)
    run(clock, sched, 500)
    worst = 0
    for _ in range(50):
        sched.wake(bystander)
        ahead = 0
        while (e := sched.pick()) is not bystander:
            assert e is not None
            ahead += 1
            clock.advance(TICK)
            sched.charge(e, TICK)
            sched.put_prev(e)
        worst = max(worst, ahead)
        clock.advance(TICK // 10)
        sched.charge(bystander, TICK // 10)
        sched.block(bystander)
        run(clock, sched, 20)  # it sleeps while the family runs
    assert worst <= 4, worst


def test_fresh_clones_gain_nothing_from_their_zero_lag() -> None:
    """A member runs, exits and is replaced by a fresh clone, over and over: the
    family's lag is the group's, so the replacements do not jump the queue."""
    clock = VirtualClock()
    sched = Scheduler(clock)
    bystander = sched.new_entity(1, "bystander")
    members = family(sched, 20)
    sched.wake(bystander)
    key = 1000
    fam_ns = by_ns = 0
    for _ in range(3000):
        e = sched.pick()
        assert e is not None
        clock.advance(TICK)
        sched.charge(e, TICK)
        if e is bystander:
            by_ns += TICK
            sched.put_prev(e)
            continue
        fam_ns += TICK
        key += 1
        c = sched.new_entity(key, "clone")
        sched.join_group(c, e)
        sched.remove(e)  # it exits; its fresh clone takes its place
        sched.wake(c)
        members.remove(e)
        members.append(c)
    assert 0.45 <= by_ns / (by_ns + fam_ns) <= 0.55


def test_a_group_leaves_the_root_queue_when_its_last_member_sleeps() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    members = family(sched, 2)
    assert len(sched) == 3
    for m in members:
        sched.block(m)
    assert len(sched) == 0 and sched.pick() is None and sched.vavg() is None
    sched.wake(members[1])
    assert sched.pick() is members[1]
    clock.advance(TICK)
    sched.charge(members[1], TICK)
    sched.remove(members[1])
    assert sched.pick() is None and sched.vavg() is None
    with pytest.raises(IllegalTransition):
        sched.join_group(members[0], members[1])  # not a new entity: it is already grouped


def test_a_boosted_or_deadline_parent_makes_no_group() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    p = sched.new_entity(1, "p")
    sched.set_deadline(p, runtime_ns=1_000_000, deadline_ns=10_000_000, period_ns=10_000_000)
    c = sched.new_entity(2, "c")
    sched.join_group(c, p)
    assert "group" not in sched.stats(c)
