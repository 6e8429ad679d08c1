"""DeviceQueue: fair/EDF ordering of device requests, budgets, backpressure."""

from __future__ import annotations

import heapq

import pytest

from aios.errors import Busy, InvalidArgument, NoSuchObject, WouldBlock
from aios.kernel.clock import VirtualClock
from aios.kernel.devqueue import DeviceQueue

MS = 1_000_000
US = 1_000
UNIT_NS = 100 * US  # the simulated device spends 100 us per cost unit


def simulate(
    dq: DeviceQueue,
    clock: VirtualClock,
    demand: dict[int, list[int]],
    until_ns: int,
    backlog: int = 8,
) -> dict[int, int]:
    """A device with ``dq.slots`` slots; each agent keeps ``backlog`` requests
    queued, cycling through its list of costs.  Returns cost served per agent."""
    served = dict.fromkeys(demand, 0)
    nxt = dict.fromkeys(demand, 0)
    running: list[tuple[int, int]] = []  # (finish time, rid)

    def top_up() -> None:
        for key, costs in demand.items():
            while dq.queued(key) < backlog:
                dq.submit(key, costs[nxt[key] % len(costs)])
                nxt[key] += 1

    top_up()
    while clock.now_ns() < until_ns:
        for req in dq.dispatch():
            heapq.heappush(running, (clock.now_ns() + req.cost * UNIT_NS, req.rid))
        times = [until_ns]
        if running:
            times.append(running[0][0])
        wake = dq.next_event_ns()
        if wake is not None:
            times.append(wake)
        clock.jump_to(min(times))
        while running and running[0][0] <= clock.now_ns():
            _, rid = heapq.heappop(running)
            req = dq.complete(rid)
            served[req.key] += req.cost
        top_up()
    return served


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def test_equal_weights_get_equal_service() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=4)
    demand = {k: [1, 3, 2, 5][k % 4 :] + [1, 3, 2, 5][: k % 4] for k in range(10)}
    served = simulate(dq, clock, demand, 20_000 * MS)
    assert jain([float(v) for v in served.values()]) >= 0.99


def test_weighted_shares_within_two_percent() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=3)
    weights = {1: 1024, 2: 820, 3: 335, 4: 3121}
    for k, w in weights.items():
        dq.set_weight(k, w)
    served = simulate(dq, clock, {k: [1, 2, 4] for k in weights}, 20_000 * MS)
    total = sum(served.values())
    for k, w in weights.items():
        want = w / sum(weights.values())
        assert served[k] / total == pytest.approx(want, abs=0.02), (k, served[k] / total, want)


def test_budget_exhausted_agent_waits_for_next_window() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=8, max_queued=100)
    dq.set_budget(1, limit=10, window_ns=100 * MS)
    rids = [dq.submit(1) for _ in range(25)]
    started = dq.dispatch()
    assert len(started) == 8
    for r in started:
        dq.complete(r.rid)
    started = dq.dispatch()
    assert len(started) == 2  # 10 per window
    for r in started:
        dq.complete(r.rid)
    assert dq.dispatch() == []
    assert dq.next_event_ns() == 100 * MS
    assert dq.stats(1)["budget_waits"] == 1
    clock.jump_to(100 * MS - 1)
    assert dq.dispatch() == []
    clock.jump_to(100 * MS)
    got = dq.dispatch()
    assert len(got) == 8 and got[0].rid == rids[10]
    # another agent is not held back by agent 1's budget
    dq.submit(2)
    for r in got:
        dq.complete(r.rid)
    assert [r.key for r in dq.dispatch()].count(2) == 1


def test_backpressure_would_block() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=1, max_queued=2)
    dq.submit(1)
    dq.submit(1)
    assert not dq.has_room(1)
    with pytest.raises(WouldBlock):
        dq.submit(1)
    assert dq.queued(1) == 2
    assert dq.has_room(2)
    dq.dispatch()
    assert dq.has_room(1)


def test_deadline_client_served_first_and_admission() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=2)
    dq.set_deadline(9, runtime=10, deadline_ns=10 * MS, period_ns=10 * MS)
    with pytest.raises(Busy):
        dq.set_deadline(8, runtime=10, deadline_ns=10 * MS, period_ns=10 * MS)  # 2 > 0.95 x 2
    with pytest.raises(InvalidArgument):
        dq.set_deadline(8, runtime=11, deadline_ns=10 * MS, period_ns=10 * MS)  # 11 ms > 10 ms
    dq.set_deadline(8, runtime=9, deadline_ns=10 * MS, period_ns=10 * MS)  # exactly 1.9
    for _ in range(5):
        dq.submit(1)
    dq.submit(9)
    first = dq.dispatch()
    assert first[0].key == 9


def test_actual_cost_is_charged_later() -> None:
    clock = VirtualClock()
    dq = DeviceQueue(clock, slots=1)
    served = {1: 0, 2: 0}
    for _ in range(200):
        for k in (1, 2):
            if dq.queued(k) < 2:
                dq.submit(k, 1)
        (req,) = dq.dispatch()
        actual = 5 if req.key == 1 else 1  # agent 1 under-declares its requests
        dq.complete(req.rid, actual_cost=actual)
        served[req.key] += actual
    assert served[1] / (served[1] + served[2]) == pytest.approx(0.5, abs=0.05)


def test_bad_arguments() -> None:
    clock = VirtualClock()
    with pytest.raises(InvalidArgument):
        DeviceQueue(clock, slots=0)
    dq = DeviceQueue(clock, slots=1)
    with pytest.raises(InvalidArgument):
        dq.submit(1, 0)
    dq.set_budget(1, limit=5, window_ns=MS)
    with pytest.raises(InvalidArgument):
        dq.submit(1, 6)
    with pytest.raises(InvalidArgument):
        dq.set_budget(1, limit=0, window_ns=MS)
    with pytest.raises(NoSuchObject):
        dq.complete(12345)
    with pytest.raises(NoSuchObject):
        dq.stats(77)
    rid = dq.submit(1, 2)
    assert dq.cancel(rid) and not dq.cancel(rid)
    assert dq.dispatch() == []
    assert dq.remove_client(1) == []
