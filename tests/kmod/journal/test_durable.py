"""Durable delivery: JetStream's consumer semantics, on a virtual clock, through the journal."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject, WouldBlock
from aios.kmod.journal import records as R
from aios.kmod.journal.durable import Broker, ConsumerConfig, StreamConfig, subject_matches
from aios.kmod.journal.store import Journal

MS = 1_000_000
S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 10 * S

    def __call__(self) -> int:
        return self.t


def broker(**consumer: object) -> tuple[Broker, Clock]:
    clock = Clock()
    b = Broker(clock)
    b.add_stream(StreamConfig("jobs", "jobs.**", max_msgs=consumer.pop("max_msgs", 10_000)))  # type: ignore[arg-type]
    b.add_consumer("jobs", ConsumerConfig("w", **consumer))  # type: ignore[arg-type]
    return b, clock


def test_publish_fetch_ack_and_retention() -> None:
    b, _ = broker()
    ack = b.publish("jobs", "jobs.a", b"one", msg_id="m1")
    assert (ack.seq, ack.duplicate) == (1, False)
    [d] = b.fetch("jobs", "w", 10)
    assert (d.seq, d.count, d.message.payload) == (1, 1, b"one")
    assert b.stream_len("jobs") == 1 and b.info("jobs", "w").pending == 1
    assert b.ack("jobs", "w", 1) is True
    assert b.ack("jobs", "w", 1) is False  # a second ack is harmless
    assert b.stream_len("jobs") == 0 and b.info("jobs", "w").acked == 1


def test_dedup_window_by_message_id() -> None:
    b, clock = broker()
    first = b.publish("jobs", "jobs.a", b"x", msg_id="order-7")
    dup = b.publish("jobs", "jobs.a", b"x again", msg_id="order-7")
    assert dup.duplicate and dup.seq == first.seq and b.stream_len("jobs") == 1
    clock.t += 121 * S  # past the two-minute window
    later = b.publish("jobs", "jobs.a", b"x", msg_id="order-7")
    assert not later.duplicate and later.seq == first.seq + 1


def test_redelivery_after_ack_wait_and_backoff() -> None:
    b, clock = broker(ack_wait_ns=30 * S, max_deliver=10)
    b.publish("jobs", "jobs.a", b"x")
    assert [d.count for d in b.fetch("jobs", "w")] == [1]
    clock.t += 30 * S - 1
    assert b.fetch("jobs", "w") == []
    clock.t += 1
    assert [d.count for d in b.fetch("jobs", "w")] == [2]

    b2, clock2 = broker(backoff_ns=(1 * S, 5 * S, 10 * S), max_deliver=10)
    b2.publish("jobs", "jobs.a", b"x")
    b2.fetch("jobs", "w")
    gaps = []
    for _ in range(4):
        start = clock2.t
        while not (got := b2.fetch("jobs", "w")):
            clock2.t += 100 * MS
        gaps.append((clock2.t - start) // MS)
        assert got[0].count == len(gaps) + 1
    assert gaps == [1000, 5000, 10000, 10000]
    assert b2.next_deadline("jobs", "w") == clock2.t + 10 * S


def test_nak_with_and_without_delay() -> None:
    b, clock = broker(max_deliver=10)
    b.publish("jobs", "jobs.a", b"x")
    b.fetch("jobs", "w")
    assert b.nak("jobs", "w", 1, delay_ns=2 * S, error="db locked")
    clock.t += 2 * S - 1
    assert b.fetch("jobs", "w") == []
    clock.t += 1
    [d] = b.fetch("jobs", "w")
    assert d.count == 2
    b.nak("jobs", "w", 1)
    assert [x.count for x in b.fetch("jobs", "w")] == [3]  # at once


def test_in_progress_prevents_redelivery() -> None:
    b, clock = broker(ack_wait_ns=10 * S)
    b.publish("jobs", "jobs.a", b"long job")
    b.fetch("jobs", "w")
    for _ in range(30):  # five minutes of work, reported every 8 s
        clock.t += 8 * S
        assert b.in_progress("jobs", "w", 1)
        assert b.fetch("jobs", "w") == []
    clock.t += 10 * S
    assert [d.count for d in b.fetch("jobs", "w")] == [2]  # silent for ack_wait: redelivered
    # even a progress report after the deadline, before the redelivery, keeps it
    clock.t += 11 * S
    b.in_progress("jobs", "w", 1)
    assert b.fetch("jobs", "w") == []


def test_term_finishes_without_redelivery_or_dead_letter() -> None:
    b, clock = broker()
    b.publish("jobs", "jobs.a", b"poison")
    b.fetch("jobs", "w")
    assert b.term("jobs", "w", 1, "cannot parse")
    clock.t += 3600 * S
    assert b.fetch("jobs", "w") == [] and b.dead_letters("jobs", "w") == []
    assert b.info("jobs", "w").termed == 1 and b.stream_len("jobs") == 0


def test_dead_letter_exactly_once_after_max_deliveries() -> None:
    b, clock = broker(ack_wait_ns=1 * S, max_deliver=3)
    b.publish("jobs", "jobs.a", b"poison", msg_id="p1")
    b.publish("jobs", "jobs.a", b"fine")
    counts = []
    for _ in range(10):
        for d in b.fetch("jobs", "w", 10):
            if d.message.payload == b"fine":
                b.ack("jobs", "w", d.seq)
            else:
                counts.append(d.count)
                b.nak("jobs", "w", d.seq, delay_ns=1 * S, error=f"boom {d.count}")
        clock.t += 1 * S
        b.sweep("jobs", "w")
    assert counts == [1, 2, 3]
    [dl] = b.dead_letters("jobs", "w")
    assert (dl.seq, dl.deliveries, dl.error, dl.message.msg_id) == (1, 3, "boom 3", "p1")
    assert b.stream_len("jobs") == 0 and b.info("jobs", "w").pending == 0
    dead = [r for r in b.take_records() if isinstance(r, R.DeadLettered)]
    assert len(dead) == 1


def test_per_key_order_holds_across_redeliveries() -> None:
    b, clock = broker(ack_wait_ns=5 * S, max_deliver=100)
    for i, key in enumerate(["k1", "k1", "k2", "k1", "", "k2"]):
        b.publish("jobs", f"jobs.{key or 'none'}", str(i).encode(), key=key)
    got = b.fetch("jobs", "w", 100)
    assert [d.seq for d in got] == [1, 3, 5]  # one in flight per key; unkeyed is free
    b.nak("jobs", "w", 1)  # the k1 head fails: k1's next must still wait
    assert [d.seq for d in b.fetch("jobs", "w", 100)] == [1]
    clock.t += 5 * S  # ack wait expires for everything in flight
    assert [(d.seq, d.count) for d in b.fetch("jobs", "w", 100)] == [(1, 3), (3, 2), (5, 2)]
    b.ack("jobs", "w", 1)
    assert [d.seq for d in b.fetch("jobs", "w", 100)] == [2]
    b.ack("jobs", "w", 2)
    b.ack("jobs", "w", 3)
    assert [d.seq for d in b.fetch("jobs", "w", 100)] == [4, 6]


def test_above_the_unacked_maximum_delivery_pauses_and_nothing_is_dropped() -> None:
    b, _ = broker(max_ack_pending=5, max_msgs=12)
    for i in range(12):
        b.publish("jobs", "jobs.a", bytes([i]))
    with pytest.raises(WouldBlock):
        b.publish("jobs", "jobs.a", b"too many")  # the publisher is held back, not dropped
    first = b.fetch("jobs", "w", 100)
    assert len(first) == 5 and b.info("jobs", "w").paused
    assert b.fetch("jobs", "w", 100) == []
    for d in first[:2]:
        b.ack("jobs", "w", d.seq)
    second = b.fetch("jobs", "w", 100)
    assert len(second) == 2
    b.publish("jobs", "jobs.a", b"now there is room")
    seen = {d.message.payload for d in first + second}
    while b.stream_len("jobs"):
        for d in b.fetch("jobs", "w", 100):
            seen.add(d.message.payload)
        for seq in sorted(b.streams["jobs"].consumers["w"].pending):
            b.ack("jobs", "w", seq)
    assert seen == {bytes([i]) for i in range(12)} | {b"now there is room"}


def test_filters_and_several_consumers() -> None:
    clock = Clock()
    b = Broker(clock)
    b.add_stream(StreamConfig("ev", "agent.**"))
    b.add_consumer("ev", ConsumerConfig("faults", filter="agent.*.fault"))
    b.add_consumer("ev", ConsumerConfig("all"))
    b.publish("ev", "agent.7.fault", b"f")
    b.publish("ev", "agent.7.spawned", b"s")
    assert [d.message.subject for d in b.fetch("ev", "faults", 10)] == ["agent.7.fault"]
    assert [d.seq for d in b.fetch("ev", "all", 10)] == [1, 2]
    b.ack("ev", "all", 2)
    assert b.stream_len("ev") == 1  # seq 2: nobody else wants it; seq 1: "faults" has not acked
    b.ack("ev", "all", 1)
    b.ack("ev", "faults", 1)
    assert b.stream_len("ev") == 0
    assert subject_matches("agent.**", "agent") and not subject_matches("agent.*", "agent.1.x")


def test_bad_input_changes_nothing() -> None:
    b, _ = broker()
    b.publish("jobs", "jobs.a", b"x")
    before = (b.stream_len("jobs"), b.info("jobs", "w"), len(b.outbox))
    for call in (
        lambda: b.publish("jobs", "other.a", b"x"),
        lambda: b.publish("jobs", "jobs.*", b"x"),
        lambda: b.publish("jobs", "jobs.a", "text"),  # type: ignore[arg-type]
        lambda: b.publish("jobs", "jobs.a", b"x" * (2 << 20)),
        lambda: b.ack("jobs", "w", 1),  # not delivered yet
        lambda: b.ack("jobs", "w", 99),
        lambda: b.nak("jobs", "w", "1"),  # type: ignore[arg-type]
        lambda: b.fetch("jobs", "w", 0),
        lambda: b.add_consumer("jobs", ConsumerConfig("bad name!")),
        lambda: b.add_consumer("jobs", ConsumerConfig("x", max_deliver=0)),
        lambda: b.add_stream(StreamConfig("s", "a.**.b")),
    ):
        with pytest.raises(InvalidArgument):
            call()
    with pytest.raises(NoSuchObject):
        b.fetch("nope", "w")
    with pytest.raises(AlreadyExists):
        b.add_consumer("jobs", ConsumerConfig("w"))
    assert (b.stream_len("jobs"), b.info("jobs", "w"), len(b.outbox)) == before


# -- the consumer world: kills, crashes, idempotency -------------------------------------------------


class World:
    """Producers and consumers around a broker; the side effects land in an idempotent sink."""

    def __init__(self, rng: random.Random, path: Path | None = None) -> None:
        self.rng = rng
        self.clock = Clock()
        self.path = path
        self.journal = Journal(path) if path is not None else None
        self.b = Broker(self.clock)
        self.b.add_stream(StreamConfig("jobs", "jobs.**", max_msgs=50))
        self.b.add_consumer("jobs", ConsumerConfig("w", ack_wait_ns=2 * S, max_deliver=50,
                                                   max_ack_pending=8))  # fmt: skip
        self.commit()
        self.sink: dict[str, bytes] = {}  # idempotency key (msg id) -> effect
        self.order: dict[str, list[int]] = defaultdict(list)  # key -> message numbers applied
        self.published: dict[str, tuple[str, int]] = {}  # msg id -> (key, number), acknowledged
        self.duplicates = 0
        self.kills_between = 0

    def commit(self) -> None:
        recs = self.b.take_records()
        if self.journal is not None:
            self.journal.append_many(recs)
            self.journal.commit()

    def crash_kernel(self) -> None:
        """Lose what was not committed and rebuild the broker from the journal."""
        assert self.journal is not None and self.path is not None
        self.b.take_records()
        self.journal.abandon()
        self.journal = Journal(self.path)
        image, _ = self.journal.replay(self.clock)
        self.b = image.broker

    def publish(self, n: int) -> None:
        key = f"k{n % 4}"
        mid = f"msg-{n}"
        while True:
            try:
                self.b.publish("jobs", f"jobs.{key}", str(n).encode(), msg_id=mid, key=key)
                break
            except WouldBlock:
                self.consume_round()
        self.commit()  # the producer's acknowledgement comes after this
        self.published[mid] = (key, n)

    def consume_round(self, crash: bool = False) -> None:
        deliveries = self.b.fetch("jobs", "w", self.rng.randrange(1, 6))
        self.commit()  # handed out only once their Delivered records are durable
        for d in deliveries:
            fate = self.rng.random()
            if fate < 0.1:
                continue  # the consumer died before doing anything
            mid = d.message.msg_id
            if mid in self.sink:
                self.duplicates += 1  # idempotency key: the effect is not applied twice
            else:
                self.sink[mid] = d.message.payload
                self.order[d.message.key].append(int(d.message.payload))
            if fate < 0.25:
                self.kills_between += 1
                continue  # died between doing the work and acking it
            self.b.ack("jobs", "w", d.seq)
            if crash:
                self.kills_between += 1  # this ack will not survive the crash below
        if crash:
            self.crash_kernel()  # after the work, before the acks were journaled
        else:
            self.commit()
        self.clock.t += self.rng.choice([0, 500 * MS, 2 * S])

    def drain(self) -> None:
        for _ in range(10_000):
            if not self.b.stream_len("jobs"):
                return
            self.consume_round()
            self.clock.t += 2 * S
        raise AssertionError("the stream did not drain")

    def check(self) -> None:
        assert set(self.sink) == set(self.published), "a message was lost"
        for key, seen in self.order.items():
            assert seen == sorted(seen), f"key {key} out of order: {seen}"
        assert self.duplicates <= self.kills_between
        assert self.b.dead_letters("jobs", "w") == []


@pytest.mark.parametrize("seed", range(5))
def test_random_consumer_kills_lose_nothing(seed: int) -> None:
    w = World(random.Random(seed))
    for n in range(300):
        w.publish(n)
        if w.rng.random() < 0.5:
            w.consume_round()
    w.drain()
    w.check()
    assert w.kills_between > 0 and w.duplicates > 0  # the kills did happen, and were absorbed


@pytest.mark.parametrize("seed", range(3))
def test_kernel_crashes_lose_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    w = World(random.Random(seed), tmp_path / "j" / "journal.db")
    crashes = 0
    for n in range(200):
        w.publish(n)
        if w.rng.random() < 0.5:
            w.consume_round()
        if w.rng.random() < 0.05:
            w.crash_kernel()
            crashes += 1
        elif w.rng.random() < 0.05:
            w.consume_round(crash=True)
            crashes += 1
    w.drain()
    w.check()
    assert crashes > 0


def test_replay_and_compaction_rebuild_the_broker(tmp_path: Path) -> None:
    w = World(random.Random(9), tmp_path / "j" / "journal.db")
    for n in range(120):
        w.publish(n)
        if n % 3:
            w.consume_round()
    assert w.journal is not None
    image, _ = w.journal.replay(w.clock)
    live = w.b
    assert image.broker.info("jobs", "w") == live.info("jobs", "w")
    assert image.broker.streams["jobs"].msgs == live.streams["jobs"].msgs
    w.journal.compact(image)
    again, _ = w.journal.replay(w.clock)
    assert again.broker.info("jobs", "w") == live.info("jobs", "w")
    assert again.broker.streams["jobs"].dedup == live.streams["jobs"].dedup
