"""Event bus: patterns, filters, priorities, overflow policies."""

from __future__ import annotations

import pytest

from aios.abi.errors import InvalidArgument
from aios.kernel.events import EventBus, matches


@pytest.mark.parametrize(
    ("pattern", "topic", "ok"),
    [
        ("agent.lifecycle.spawned", "agent.lifecycle.spawned", True),
        ("agent.*.spawned", "agent.lifecycle.spawned", True),
        ("agent.*", "agent.lifecycle.spawned", False),
        ("agent.**", "agent.lifecycle.spawned", True),
        ("**", "security.violation", True),
        ("security.violation", "security", False),
        ("agent.lifecycle", "agent.lifecycle.spawned", False),
    ],
)
def test_matching(pattern: str, topic: str, ok: bool) -> None:
    assert matches(pattern, topic) is ok


def test_priority_order_and_filters() -> None:
    bus = EventBus(lambda: 0)
    order: list[str] = []
    bus.subscribe("a.**", priority=1, callback=lambda e: order.append("low"))
    bus.subscribe("a.b", priority=9, callback=lambda e: order.append("high"))
    bus.subscribe("a.b", filter={"x": 1}, callback=lambda e: order.append("filtered"))
    bus.publish("a.b", {"x": 2})
    assert order == ["high", "low"]
    bus.publish("a.b", {"x": 1})
    assert order[2:] == ["high", "filtered", "low"] or order[2:] == ["high", "low", "filtered"]


def test_overflow_drop_oldest_counts() -> None:
    bus = EventBus(lambda: 0)
    s = bus.subscribe("t", depth=2)
    for i in range(5):
        bus.publish("t", {"i": i})
    assert [e.data["i"] for e in s.queue] == [3, 4]
    assert s.dropped == 3


def test_overflow_drop_newest_keeps_prefix() -> None:
    bus = EventBus(lambda: 0)
    s = bus.subscribe("t", depth=2, overflow="drop_newest")
    for i in range(5):
        bus.publish("t", {"i": i})
    assert [e.data["i"] for e in s.queue] == [0, 1]
    assert s.dropped == 3


def test_wants_and_cache_invalidation() -> None:
    bus = EventBus(lambda: 0)
    assert not bus.wants("ipc.sent")
    s = bus.subscribe("ipc.*")
    assert bus.wants("ipc.sent")
    bus.unsubscribe(s.sid)
    assert not bus.wants("ipc.sent")


@pytest.mark.parametrize("bad", ["", "a..b", "a.b*", "**.a", 5, "x" * 300])
def test_bad_patterns(bad: object) -> None:
    bus = EventBus(lambda: 0)
    with pytest.raises(InvalidArgument):
        bus.subscribe(bad)  # type: ignore[arg-type]


def test_sequence_numbers_are_monotonic() -> None:
    bus = EventBus(lambda: 0)
    s = bus.subscribe("**")
    for t in ("a", "b", "c"):
        bus.publish(t)
    seqs = [e.seq for e in s.queue]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_history_backfills_a_new_subscription_by_pattern_filter_and_age() -> None:
    from aios.kernel.events import EventHistory

    now = [0]
    bus = EventBus(lambda: now[0])
    hist = EventHistory(bus, depth=4)
    for i in range(6):  # the ring keeps the last 4
        now[0] = i * 1_000_000_000
        bus.publish("a.b" if i % 2 else "c.d", {"i": i})
    assert [e.data["i"] for e in hist.recent(None, None)] == [2, 3, 4, 5]
    assert [e.data["i"] for e in hist.recent(2.5, None)] == [3, 4, 5]  # now = 5 s: 2.5 s back
    assert [e.data["i"] for e in hist.recent(None, 1)] == [5]
    sub = bus.subscribe("a.**", owner=7, filter={"i": 5})
    assert bus.backfill(sub, hist.recent(None, None)) == 1 and [e.data["i"] for e in sub.queue] == [5]
    bus.publish("a.b", {"i": 5})  # live events follow the back-filled ones
    assert [e.seq for e in sub.queue] == [6, 7]


def test_subscribing_with_history_on_a_kernel_without_one_changes_nothing(kernel) -> None:  # type: ignore[no-untyped-def]
    from aios.abi.errors import NoSuchObject
    from aios.kernel.sys_event import sys_event_subscribe

    before = len(kernel.bus.subscriptions())
    with pytest.raises(NoSuchObject, match="no event history"):
        sys_event_subscribe(kernel, kernel.init, 4, "**", {"since_s": 60})
    with pytest.raises(InvalidArgument):
        sys_event_subscribe(kernel, kernel.init, 4, "**", {"backlog": -1})
    assert len(kernel.bus.subscriptions()) == before
