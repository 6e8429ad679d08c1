"""Durable event delivery with NATS JetStream's consumer semantics (sans-IO).

The kernel event bus (``kernel/events.py``) delivers at most once: a slow or
dead subscriber loses events, counted.  Work that must not be lost goes
through a *stream* instead: a durable, ordered log of messages, read by named
*consumers* that acknowledge what they have handled.  The semantics are
JetStream's, the design that has carried the most production traffic of its
kind:

* **publish** appends to the stream with the next sequence number.  A
  message id (``msg_id``) seen within the stream's dedup window is not
  stored again: the publisher gets the first copy's sequence and
  ``duplicate=True`` (JetStream's ``Nats-Msg-Id``).  A stream holding
  ``max_msgs`` unfinished messages refuses with
  :class:`~aios.abi.errors.WouldBlock`: the publisher waits, nothing is dropped.
* **fetch** hands a consumer its next messages (pull consumer).  Each
  delivery carries the stream sequence and the delivery count.  A consumer
  with ``max_ack_pending`` messages delivered and not yet finished gets
  nothing more until it finishes some: delivery *pauses*, nothing is dropped.
  Messages with the same non-empty ``key`` are handed out one at a time in
  stream order: the next one only after the previous one is finished
  (acked, termed or dead-lettered), across redeliveries.
* **ack** finishes a message.  **nak** asks for redelivery, after a delay if
  given (else after the next ``backoff`` step, else at once), and records an
  error text.  **in_progress** restarts the ack-wait clock (the handler is
  alive and busy), so a long handler is not redelivered.  **term** finishes
  a message without success: it is never redelivered.
* **redelivery**: a delivered message not finished within ``ack_wait`` (or the
  delivery's ``backoff`` step, JetStream's ``BackOff``) is delivered again,
  with a count one higher.  After ``max_deliver`` deliveries a message that
  is due again goes to the consumer's **dead-letter queue**, once, with the
  last error, and is finished.

Durability.  Every change is a journal record
(:mod:`aios.kmod.journal.records`, kinds 60-68) that the broker applies to
itself through the same :meth:`Broker.apply` that replay uses, so the state
rebuilt from the journal is, by construction, the state that was running.
The broker queues the records in :attr:`Broker.outbox`; its driver (the kernel
module) appends them to the journal and must hold back the effects until
their commit returns: a publisher is acknowledged, and a fetched delivery is
handed to its consumer, only after the commit that holds its record.  After
a crash, messages that were delivered and not finished are due for
redelivery at once, with their delivery counts intact, so ``max_deliver``
holds across crashes.  A consumer that crashed between doing its work and
acking sees the message again; handlers make that harmless with an
idempotency key (the message id, or stream and sequence), which is the only
source of duplicates.

A message leaves the stream when every consumer of the stream has finished
it (JetStream's interest retention); with no consumer at all it stays.
Subjects are dotted like bus topics; a consumer's filter is a bus pattern
(``*`` one segment, a final ``**`` any number).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject, WouldBlock
from aios.kmod.journal import records as R

SECOND: Final = 1_000_000_000
MAX_NAME: Final = 128
MAX_PAYLOAD: Final = 1 << 20
MAX_ID: Final = 256


def subject_matches(pattern: str, subject: str) -> bool:
    """Bus-pattern matching: ``*`` is one segment, a final ``**`` is any number (>= 0)."""
    pp = pattern.split(".")
    sp = subject.split(".")
    for i, p in enumerate(pp):
        if p == "**":
            return len(sp) >= i
        if i >= len(sp) or (p != "*" and p != sp[i]):
            return False
    return len(pp) == len(sp)


def _check_subject(s: object, what: str, pattern: bool = False) -> str:
    if not isinstance(s, str) or not s or len(s) > 256:
        raise InvalidArgument(f"{what} must be a non-empty str of at most 256 characters")
    for i, part in enumerate(parts := s.split(".")):
        if not part:
            raise InvalidArgument(f"empty segment in {what} {s!r}")
        if "*" in part and not (pattern and (part == "*" or (part == "**" and i == len(parts) - 1))):
            raise InvalidArgument(f"bad wildcard in {what} {s!r}")
    return s


def _check_name(s: object, what: str) -> str:
    if not isinstance(s, str) or not s or len(s) > MAX_NAME or not s.replace("-", "").replace(
        "_", ""
    ).replace(".", "").isalnum():
        raise InvalidArgument(f"{what} must be 1-{MAX_NAME} letters, digits, '-', '_' or '.'")
    return s


@dataclass(frozen=True, slots=True)
class StreamConfig:
    name: str
    subjects: str = "**"
    max_msgs: int = 100_000
    dedup_window_ns: int = 120 * SECOND  # JetStream's default Duplicates window: 2 min


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    name: str
    filter: str = "**"
    ack_wait_ns: int = 30 * SECOND  # JetStream's default AckWait
    backoff_ns: tuple[int, ...] = ()  # per-delivery redelivery delays; overrides ack_wait
    max_deliver: int = 5
    max_ack_pending: int = 1000  # JetStream's default MaxAckPending
    owner: int = 0
    deliver_all: bool = True  # False: only messages published after the consumer exists


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    subject: str
    msg_id: str
    key: str
    payload: bytes
    time_ns: int


@dataclass(frozen=True, slots=True)
class Delivery:
    stream: str
    consumer: str
    seq: int
    count: int  # 1 on the first delivery
    message: Message


@dataclass(frozen=True, slots=True)
class PublishAck:
    stream: str
    seq: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    deliveries: int
    error: str
    message: Message


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    name: str
    pending: int  # delivered, not finished
    waiting: int  # published, not yet delivered
    delivered: int
    redelivered: int
    acked: int
    termed: int
    dead: int
    paused: bool  # at max_ack_pending


@dataclass(slots=True)
class _Pending:
    count: int
    deadline: int  # due for redelivery (or dead-lettering) at this time
    error: str = ""
    queued: bool = False  # in the consumer's ready heap


@dataclass(slots=True)
class _Consumer:
    cfg: ConsumerConfig
    start_seq: int
    next_seq: int  # the first stream sequence not yet considered
    pending: dict[int, _Pending] = field(default_factory=dict)
    ready: list[int] = field(default_factory=list)  # heap of seqs deliverable now
    timers: list[tuple[int, int]] = field(default_factory=list)  # heap of (deadline, seq)
    key_busy: dict[str, int] = field(default_factory=dict)  # key -> its unfinished seq
    key_waiting: dict[str, deque[int]] = field(default_factory=dict)
    floor: int = 0  # every seq <= floor is finished
    finished: set[int] = field(default_factory=set)  # finished seqs above the floor
    dead: list[DeadLetter] = field(default_factory=list)
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    termed: int = 0

    def is_finished(self, seq: int) -> bool:
        return seq <= self.floor or seq in self.finished


@dataclass(slots=True)
class _Stream:
    cfg: StreamConfig
    msgs: dict[int, Message] = field(default_factory=dict)
    last_seq: int = 0
    dedup: dict[str, tuple[int, int]] = field(default_factory=dict)  # msg_id -> (seq, time)
    dedup_order: deque[tuple[int, str]] = field(default_factory=deque)
    consumers: dict[str, _Consumer] = field(default_factory=dict)


class Broker:
    """Streams and their durable consumers.  Every mutator queues its records in ``outbox``."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.streams: dict[str, _Stream] = {}
        self.outbox: list[R.Record] = []

    # -- configuration ---------------------------------------------------------------------------
    def add_stream(self, cfg: StreamConfig) -> None:
        _check_name(cfg.name, "stream name")
        _check_subject(cfg.subjects, "stream subjects", pattern=True)
        if cfg.name in self.streams:
            raise AlreadyExists(f"stream {cfg.name} exists")
        if cfg.max_msgs < 1 or cfg.dedup_window_ns < 0:
            raise InvalidArgument("max_msgs must be >= 1 and the dedup window >= 0")
        self._emit(R.StreamCreated(cfg.name, cfg.subjects, cfg.max_msgs, cfg.dedup_window_ns))

    def add_consumer(self, stream: str, cfg: ConsumerConfig) -> None:
        st = self._stream(stream)
        _check_name(cfg.name, "consumer name")
        _check_subject(cfg.filter, "consumer filter", pattern=True)
        if cfg.name in st.consumers:
            raise AlreadyExists(f"consumer {cfg.name} exists on stream {stream}")
        if cfg.ack_wait_ns <= 0 or cfg.max_deliver < 1 or cfg.max_ack_pending < 1:
            raise InvalidArgument("ack_wait must be > 0, max_deliver and max_ack_pending >= 1")
        if any(b < 0 for b in cfg.backoff_ns) or len(cfg.backoff_ns) > 64:
            raise InvalidArgument("backoff must be at most 64 non-negative delays")
        start = 1 if cfg.deliver_all else st.last_seq + 1
        self._emit(R.ConsumerCreated(stream, cfg.name, cfg.owner, cfg.filter, cfg.ack_wait_ns,
                                     tuple(cfg.backoff_ns), cfg.max_deliver, cfg.max_ack_pending,
                                     start))  # fmt: skip

    def delete_consumer(self, stream: str, name: str) -> None:
        self._consumer(stream, name)
        self._emit(R.ConsumerDeleted(stream, name))

    # -- publishing ------------------------------------------------------------------------------
    def publish(self, stream: str, subject: str, payload: bytes, msg_id: str = "",
                key: str = "") -> PublishAck:  # fmt: skip
        st = self._stream(stream)
        _check_subject(subject, "subject")
        if not subject_matches(st.cfg.subjects, subject):
            raise InvalidArgument(f"subject {subject!r} is not in stream {stream} ({st.cfg.subjects})")
        if not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD:
            raise InvalidArgument(f"payload must be bytes of at most {MAX_PAYLOAD}")
        for v, what in ((msg_id, "msg_id"), (key, "key")):
            if not isinstance(v, str) or len(v) > MAX_ID:
                raise InvalidArgument(f"{what} must be a str of at most {MAX_ID} characters")
        now = self.clock()
        self._expire_dedup(st, now)
        if msg_id and msg_id in st.dedup:
            return PublishAck(stream, st.dedup[msg_id][0], duplicate=True)
        if len(st.msgs) >= st.cfg.max_msgs:
            raise WouldBlock(
                f"stream {stream} holds {len(st.msgs)} unfinished messages (max_msgs): retry later"
            )
        seq = st.last_seq + 1
        self._emit(R.StreamAppended(stream, seq, subject, msg_id, key, payload, now))
        return PublishAck(stream, seq)

    def _expire_dedup(self, st: _Stream, now: int) -> None:
        horizon = now - st.cfg.dedup_window_ns
        q = st.dedup_order
        while q and q[0][0] <= horizon:
            _t, mid = q.popleft()
            got = st.dedup.get(mid)
            if got is not None and got[1] <= horizon:
                del st.dedup[mid]

    # -- consuming ---------------------------------------------------------------------------------
    def fetch(self, stream: str, consumer: str, batch: int = 1) -> list[Delivery]:
        """Up to ``batch`` deliveries; fewer (or none) when paused, key-blocked or empty."""
        st = self._stream(stream)
        c = self._consumer(stream, consumer)
        if type(batch) is not int or not 1 <= batch <= 10_000:
            raise InvalidArgument("batch must be an int in [1, 10000]")
        now = self.clock()
        self._due(st, c, now)
        out: list[Delivery] = []
        while len(out) < batch:
            seq = self._next_ready(st, c)
            if seq is None:
                break
            p = c.pending.get(seq)
            if p is not None and p.count >= c.cfg.max_deliver:
                m = st.msgs[seq]
                error = p.error or f"not acknowledged after {p.count} deliveries"
                self._emit(R.DeadLettered(stream, consumer, seq, p.count, error, m.subject,
                                          m.msg_id, m.key, m.payload, m.time_ns))  # fmt: skip
                continue
            if p is None and len(c.pending) >= c.cfg.max_ack_pending:
                heapq.heappush(c.ready, seq)  # paused: keep it for later
                break
            count = 1 if p is None else p.count + 1
            self._emit(R.Delivered(stream, consumer, seq, count))
            out.append(Delivery(stream, consumer, seq, count, st.msgs[seq]))
        return out

    def sweep(self, stream: str, consumer: str) -> list[DeadLetter]:
        """Dead-letter what is due after its last allowed delivery, without a fetch (the
        kernel calls this at :meth:`next_deadline`)."""
        st = self._stream(stream)
        c = self._consumer(stream, consumer)
        self._due(st, c, self.clock())
        before = len(c.dead)
        for seq, p in sorted(c.pending.items()):
            if p.queued and p.count >= c.cfg.max_deliver:
                m = st.msgs[seq]
                error = p.error or f"not acknowledged after {p.count} deliveries"
                self._emit(R.DeadLettered(stream, consumer, seq, p.count, error, m.subject,
                                          m.msg_id, m.key, m.payload, m.time_ns))  # fmt: skip
        return c.dead[before:]

    def _next_ready(self, st: _Stream, c: _Consumer) -> int | None:
        """The lowest deliverable sequence: a due redelivery, an unblocked key, or a new one."""
        while True:
            new = self._peek_new(st, c)
            if c.ready and (new is None or c.ready[0] < new):
                seq = heapq.heappop(c.ready)
                p = c.pending.get(seq)
                if p is not None:
                    if not p.queued:
                        continue  # stale: in_progress pulled it back
                    p.queued = False
                    return seq
                if seq in st.msgs and not c.is_finished(seq):
                    return seq  # unblocked from its key's wait list
                continue
            if new is None:
                return None
            c.next_seq = new + 1
            key = st.msgs[new].key
            if key and key in c.key_busy:
                c.key_waiting.setdefault(key, deque()).append(new)
                continue
            if len(c.pending) >= c.cfg.max_ack_pending:
                c.next_seq = new  # paused: look at it again next time
                return None
            return new

    def _peek_new(self, st: _Stream, c: _Consumer) -> int | None:
        """The next never-considered sequence this consumer wants (skipping what it filters out)."""
        while c.next_seq <= st.last_seq:
            seq = c.next_seq
            if seq in st.msgs and seq not in c.pending and not c.is_finished(seq):
                return seq
            c.next_seq += 1
        return None

    def _due(self, st: _Stream, c: _Consumer, now: int) -> None:
        """Move pending messages whose deadline has passed to the ready heap."""
        while c.timers and c.timers[0][0] <= now:
            deadline, seq = heapq.heappop(c.timers)
            p = c.pending.get(seq)
            if p is None or p.deadline != deadline or p.queued:
                continue  # finished, re-armed (in_progress, nak) or already queued
            p.queued = True
            heapq.heappush(c.ready, seq)

    def ack(self, stream: str, consumer: str, seq: int) -> bool:
        """Finish ``seq``; False if it was already finished (a second ack is harmless)."""
        c = self._delivered(stream, consumer, seq)
        if c is None:
            return False
        self._emit(R.Acked(stream, consumer, seq))
        return True

    def nak(self, stream: str, consumer: str, seq: int, delay_ns: int | None = None,
            error: str = "") -> bool:  # fmt: skip
        c = self._delivered(stream, consumer, seq)
        if c is None:
            return False
        if delay_ns is not None and (type(delay_ns) is not int or delay_ns < 0):
            raise InvalidArgument("nak delay must be a non-negative int of nanoseconds")
        if not isinstance(error, str):
            raise InvalidArgument("error must be a str")
        self._emit(R.Nakked(stream, consumer, seq, error[:1024]))
        p = c.pending[seq]
        if delay_ns is None:
            delay_ns = self._backoff(c.cfg, p.count) if c.cfg.backoff_ns else 0
        self._arm(c, seq, p, self.clock() + delay_ns)
        return True

    def in_progress(self, stream: str, consumer: str, seq: int) -> bool:
        """The handler is still working: restart the ack-wait clock (no journal record)."""
        c = self._delivered(stream, consumer, seq)
        if c is None:
            return False
        p = c.pending[seq]
        p.queued = False  # even if already due: the handler is alive, do not redeliver
        self._arm(c, seq, p, self.clock() + c.cfg.ack_wait_ns)
        return True

    def term(self, stream: str, consumer: str, seq: int, reason: str = "") -> bool:
        c = self._delivered(stream, consumer, seq)
        if c is None:
            return False
        self._emit(R.Termed(stream, consumer, seq, str(reason)[:1024]))
        return True

    def _delivered(self, stream: str, consumer: str, seq: int) -> _Consumer | None:
        st = self._stream(stream)
        c = self._consumer(stream, consumer)
        if type(seq) is not int or seq < 1 or seq > st.last_seq:
            raise InvalidArgument(f"no message {seq!r} in stream {stream}")
        if seq in c.pending:
            return c
        if c.is_finished(seq) or seq < c.start_seq:
            return None
        raise InvalidArgument(f"message {seq} was not delivered to {consumer}")

    @staticmethod
    def _backoff(cfg: ConsumerConfig, count: int) -> int:
        if not cfg.backoff_ns:
            return cfg.ack_wait_ns
        return cfg.backoff_ns[min(count - 1, len(cfg.backoff_ns) - 1)]

    def _arm(self, c: _Consumer, seq: int, p: _Pending, deadline: int) -> None:
        if p.queued:
            return
        p.deadline = deadline
        heapq.heappush(c.timers, (deadline, seq))

    # -- reading -------------------------------------------------------------------------------------
    def next_deadline(self, stream: str, consumer: str) -> int | None:
        """When the next redelivery falls due (for the kernel's timer), or None."""
        c = self._consumer(stream, consumer)
        while c.timers:
            deadline, seq = c.timers[0]
            p = c.pending.get(seq)
            if p is not None and p.deadline == deadline and not p.queued:
                return deadline
            heapq.heappop(c.timers)
        return None

    def dead_letters(self, stream: str, consumer: str) -> list[DeadLetter]:
        return list(self._consumer(stream, consumer).dead)

    def info(self, stream: str, consumer: str) -> ConsumerInfo:
        st = self._stream(stream)
        c = self._consumer(stream, consumer)
        waiting = sum(1 for s in st.msgs if s not in c.pending and not c.is_finished(s)
                      and s >= c.start_seq)  # fmt: skip
        return ConsumerInfo(consumer, len(c.pending), waiting, c.delivered, c.redelivered,
                            c.acked, c.termed, len(c.dead),
                            len(c.pending) >= c.cfg.max_ack_pending)  # fmt: skip

    def stream_len(self, stream: str) -> int:
        return len(self._stream(stream).msgs)

    def _stream(self, name: str) -> _Stream:
        st = self.streams.get(name)
        if st is None:
            raise NoSuchObject(f"no stream {name!r}")
        return st

    def _consumer(self, stream: str, name: str) -> _Consumer:
        c = self._stream(stream).consumers.get(name)
        if c is None:
            raise NoSuchObject(f"no consumer {name!r} on stream {stream}")
        return c

    # -- records: the only way state changes -----------------------------------------------------------
    def _emit(self, rec: R.Record) -> None:
        self.apply(rec)
        self.outbox.append(rec)

    def take_records(self) -> list[R.Record]:
        out, self.outbox = self.outbox, []
        return out

    def apply(self, rec: R.Record) -> None:
        """Fold one record into the state (live, and in replay)."""
        now = self.clock()
        if isinstance(rec, R.StreamAppended):
            st = self.streams[rec.stream]
            m = Message(rec.seq, rec.subject, rec.msg_id, rec.key, rec.payload, rec.time_ns)
            st.msgs[rec.seq] = m
            st.last_seq = rec.seq
            if rec.msg_id:
                st.dedup[rec.msg_id] = (rec.seq, rec.time_ns)
                st.dedup_order.append((rec.time_ns, rec.msg_id))
            for c in st.consumers.values():
                if not subject_matches(c.cfg.filter, rec.subject):
                    self._finish(st, c, rec.seq)
        elif isinstance(rec, R.Delivered):
            st = self.streams[rec.stream]
            c = st.consumers[rec.consumer]
            p = c.pending.get(rec.seq)
            if p is None:
                p = c.pending[rec.seq] = _Pending(rec.count, 0)
                key = st.msgs[rec.seq].key
                if key:
                    c.key_busy[key] = rec.seq
            else:
                p.count = rec.count
                c.redelivered += 1
            c.delivered += 1
            p.queued = False
            self._arm(c, rec.seq, p, now + self._backoff(c.cfg, rec.count))
        elif isinstance(rec, R.Acked | R.Termed):
            st = self.streams[rec.stream]
            c = st.consumers[rec.consumer]
            if rec.seq in c.pending:
                if isinstance(rec, R.Acked):
                    c.acked += 1
                else:
                    c.termed += 1
                self._finish(st, c, rec.seq)
        elif isinstance(rec, R.Nakked):
            c = self.streams[rec.stream].consumers[rec.consumer]
            p = c.pending.get(rec.seq)
            if p is not None:
                p.error = rec.error
                self._arm(c, rec.seq, p, now)  # replay: due at once; live: re-armed by nak()
        elif isinstance(rec, R.DeadLettered):
            st = self.streams[rec.stream]
            c = st.consumers[rec.consumer]
            m = Message(rec.seq, rec.subject, rec.msg_id, rec.key, rec.payload, rec.time_ns)
            c.dead.append(DeadLetter(rec.seq, rec.deliveries, rec.error, m))
            self._finish(st, c, rec.seq)
        elif isinstance(rec, R.StreamSnapshot):
            st = self.streams[rec.stream]
            st.last_seq = max(st.last_seq, rec.last_seq)
            for mid, seq, t in rec.dedup:
                st.dedup[mid] = (seq, t)
            st.dedup = dict(sorted(st.dedup.items(), key=lambda kv: kv[1][0]))  # publish order
            st.dedup_order = deque(sorted((t, mid) for mid, (_s, t) in st.dedup.items()))
        elif isinstance(rec, R.ConsumerSnapshot):
            st = self.streams[rec.stream]
            c = st.consumers[rec.consumer]
            c.floor, c.finished = rec.floor, set(rec.finished)
            c.delivered, c.redelivered, c.acked, c.termed = rec.counters
            c.pending, c.key_busy, c.key_waiting, c.ready, c.timers = {}, {}, {}, [], []
            for seq, count, error in rec.pending:
                p = c.pending[seq] = _Pending(count, 0, error)
                key = st.msgs[seq].key
                if key:
                    c.key_busy[key] = seq
                self._arm(c, seq, p, now + self._backoff(c.cfg, count))
            c.next_seq = c.floor + 1
            for seq in list(st.msgs):
                self._maybe_drop(st, seq)
        elif isinstance(rec, R.StreamCreated):
            self.streams[rec.stream] = _Stream(
                StreamConfig(rec.stream, rec.subjects, rec.max_msgs, rec.dedup_window_ns))
        elif isinstance(rec, R.ConsumerCreated):
            st = self.streams[rec.stream]
            cfg = ConsumerConfig(rec.consumer, rec.filter, rec.ack_wait_ns, tuple(rec.backoff_ns),
                                 rec.max_deliver, rec.max_ack_pending, rec.owner)  # fmt: skip
            c = _Consumer(cfg, rec.start_seq, rec.start_seq, floor=rec.start_seq - 1)
            st.consumers[rec.consumer] = c
            for seq, m in st.msgs.items():
                if seq >= rec.start_seq and not subject_matches(cfg.filter, m.subject):
                    self._finish(st, c, seq)
        elif isinstance(rec, R.ConsumerDeleted):
            st = self.streams[rec.stream]
            del st.consumers[rec.consumer]
            for seq in list(st.msgs):
                self._maybe_drop(st, seq)
        else:
            raise InvalidArgument(f"{type(rec).__name__} is not a durable-delivery record")

    def _finish(self, st: _Stream, c: _Consumer, seq: int) -> None:
        p = c.pending.pop(seq, None)
        if seq > c.floor:
            c.finished.add(seq)
            while c.floor + 1 in c.finished:
                c.floor += 1
                c.finished.discard(c.floor)
        m = st.msgs.get(seq)
        if p is not None and m is not None and m.key and c.key_busy.get(m.key) == seq:
            del c.key_busy[m.key]
            waiting = c.key_waiting.get(m.key)
            if waiting:
                heapq.heappush(c.ready, waiting.popleft())
                if not waiting:
                    del c.key_waiting[m.key]
        self._maybe_drop(st, seq)

    @staticmethod
    def _maybe_drop(st: _Stream, seq: int) -> None:
        if st.consumers and seq in st.msgs and all(c.is_finished(seq) for c in st.consumers.values()):
            del st.msgs[seq]

    def restored(self) -> None:
        """After replay: every delivered, unfinished message is due for redelivery now (its
        consumer's process did not survive the crash); delivery counts are kept."""
        for st in self.streams.values():
            for c in st.consumers.values():
                for seq, p in c.pending.items():
                    if not p.queued:
                        p.queued = True
                        heapq.heappush(c.ready, seq)

    def records(self) -> list[R.Record]:
        """Records that rebuild the current state from nothing (for compacting the journal)."""
        out: list[R.Record] = []
        now = self.clock()
        for st in self.streams.values():
            cfg = st.cfg
            self._expire_dedup(st, now)
            out.append(R.StreamCreated(cfg.name, cfg.subjects, cfg.max_msgs, cfg.dedup_window_ns))
            for seq, m in st.msgs.items():
                out.append(R.StreamAppended(cfg.name, seq, m.subject, m.msg_id, m.key, m.payload,
                                            m.time_ns))  # fmt: skip
            gone = sorted(((mid, seq, t) for mid, (seq, t) in st.dedup.items() if seq not in st.msgs),
                          key=lambda x: x[1])  # fmt: skip
            out.append(R.StreamSnapshot(cfg.name, st.last_seq, gone))
            for c in st.consumers.values():
                k = c.cfg
                out.append(R.ConsumerCreated(cfg.name, k.name, k.owner, k.filter, k.ack_wait_ns,
                                             k.backoff_ns, k.max_deliver, k.max_ack_pending,
                                             c.start_seq))  # fmt: skip
                out.append(R.ConsumerSnapshot(
                    cfg.name, k.name, c.floor, sorted(c.finished),
                    [(seq, p.count, p.error) for seq, p in sorted(c.pending.items())],
                    (c.delivered, c.redelivered, c.acked, c.termed)))
                for d in c.dead:
                    m = d.message
                    out.append(R.DeadLettered(cfg.name, k.name, d.seq, d.deliveries, d.error,
                                              m.subject, m.msg_id, m.key, m.payload, m.time_ns))
        return out
