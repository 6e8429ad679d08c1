"""Journal records: what the kernel writes down so that a crash forgets nothing acknowledged.

Every change to durable kernel state is one record, a frozen slotted
dataclass with a stable numeric ``KIND``.  A record describes an *effect* the
kernel has already decided on (this capability was installed in that slot,
that one was revoked, this durable message was queued), never a request, so
replaying records needs no policy, no quota check and no agent code: it is
a fold over plain data (:mod:`aios.kmod.journal.replay`).

Encoding is msgpack of the field values in declaration order, preceded by
``KIND`` (:func:`pack`); a *frame* is such records back to back, and
:func:`pack`, :func:`unpack_frame`, :func:`encode` and :func:`decode` are the
only functions that know the format.  Sequences decode as lists, except fields listed
in a class's ``TUPLES``, which decode as tuples.  Ids are the kernel's:
agent ids (``aid``), object ids (``oid``), and two the kernel module will
keep on its objects for the journal's sake: capability ids (``cid``, one per
``Capability``, never reused) and charge ids (``chid``).

Numbers 1-19 are agents, 20-39 objects, capabilities and quotas, 40-49 the
name directory, 50-59 durable mailboxes, 60-79 durable streams and consumers,
80-89 supervision, units and boots.  A number is never reused for another
meaning; a new field goes at the end with a default.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final

import msgpack

from aios.abi.errors import IntegrityError

# the kernel's ObjKind and Resource numbers (aios.kernel.capabilities); kept equal by a test
OBJ_AUTHORITY: Final = 1
OBJ_AGENT: Final = 2
OBJ_ENDPOINT: Final = 3
OBJ_MEMORY: Final = 4
OBJ_TOPIC: Final = 6
OBJ_DIRECTORY: Final = 9
OBJ_MEMNS: Final = 11
RES_MEMORY: Final = 0
RES_AGENTS: Final = 1
RES_IPC_RATE: Final = 2
RES_CPU_WEIGHT: Final = 3
N_RESOURCES: Final = 4


class Record:
    """Base of every record type (for typing; the subclasses are dataclasses)."""

    __slots__ = ()
    KIND: ClassVar[int] = 0
    TUPLES: ClassVar[frozenset[str]] = frozenset()


# -- agents --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentSpawned(Record):
    """An agent exists.  ``entry`` is a named entry (``pkg.mod:fn`` or ``image:...``), or ""
    for an anonymous in-process coroutine, which cannot be restarted after a crash."""

    KIND: ClassVar[int] = 1
    aid: int
    parent: int
    name: str
    entry: str
    executor: str
    opts: dict[str, Any]
    state: dict[str, Any]
    unit: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class AgentExited(Record):
    KIND: ClassVar[int] = 2
    aid: int
    status: Any
    fault: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class AgentReaped(Record):
    """The agent's record is gone (its checkpoints go with it)."""

    KIND: ClassVar[int] = 3
    aid: int


@dataclass(frozen=True, slots=True)
class Checkpointed(Record):
    """Agent ``aid`` saved checkpoint ``n`` (the state is in the checkpoints table); ``n`` 0:
    its checkpoints were dropped."""

    KIND: ClassVar[int] = 4
    aid: int
    n: int


# -- objects, capabilities, quotas -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectCreated(Record):
    """A kernel object; ``ref`` names what it stands for (an agent id for AGENT and ENDPOINT,
    a namespace name for MEMNS, ...).  It lives while some valid capability names it."""

    KIND: ClassVar[int] = 20
    oid: int
    kind: int
    ref: Any


@dataclass(frozen=True, slots=True)
class CapInstalled(Record):
    """A capability in ``holder``'s slot ``slot``; ``parent`` 0 for a root.  ``limits`` is the
    quota of an authority capability (memory, agents, ipc_rate, cpu_weight), else None."""

    KIND: ClassVar[int] = 21
    TUPLES: ClassVar[frozenset[str]] = frozenset({"limits"})
    cid: int
    holder: int
    slot: int
    oid: int
    rights: int
    badge: int
    parent: int
    limits: tuple[int | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class CapRevoked(Record):
    """Every descendant of ``cid`` is invalid (the capability itself stays)."""

    KIND: ClassVar[int] = 22
    cid: int


@dataclass(frozen=True, slots=True)
class CapDeleted(Record):
    """``cid`` left its slot: its children and charges go to its parent; a root's subtree
    is revoked."""

    KIND: ClassVar[int] = 23
    cid: int


@dataclass(frozen=True, slots=True)
class Charged(Record):
    """``amount`` of resource ``res`` held for ``what``, paid by authority ``cid``."""

    KIND: ClassVar[int] = 24
    chid: int
    cid: int
    res: int
    amount: int
    what: Any


@dataclass(frozen=True, slots=True)
class Uncharged(Record):
    KIND: ClassVar[int] = 25
    chid: int


# -- the name directory ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NameRegistered(Record):
    """``name`` in the directory names capability ``cid`` (held by the kernel)."""

    KIND: ClassVar[int] = 40
    name: str
    cid: int


@dataclass(frozen=True, slots=True)
class NameRemoved(Record):
    KIND: ClassVar[int] = 41
    name: str


# -- durable mailboxes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MailboxPut(Record):
    """A message sent with ``durable=True`` is queued on endpoint ``oid``; acknowledged to the
    sender only once this record is committed."""

    KIND: ClassVar[int] = 50
    oid: int
    seq: int
    sender: int
    badge: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MailboxTake(Record):
    """The receiver took message ``seq`` from endpoint ``oid``."""

    KIND: ClassVar[int] = 51
    oid: int
    seq: int


# -- durable streams and consumers (aios.kmod.journal.durable) -----------------------------------------
@dataclass(frozen=True, slots=True)
class StreamCreated(Record):
    KIND: ClassVar[int] = 60
    stream: str
    subjects: str
    max_msgs: int
    dedup_window_ns: int


@dataclass(frozen=True, slots=True)
class StreamAppended(Record):
    KIND: ClassVar[int] = 61
    stream: str
    seq: int
    subject: str
    msg_id: str
    key: str
    payload: bytes
    time_ns: int


@dataclass(frozen=True, slots=True)
class ConsumerCreated(Record):
    KIND: ClassVar[int] = 62
    TUPLES: ClassVar[frozenset[str]] = frozenset({"backoff_ns"})
    stream: str
    consumer: str
    owner: int
    filter: str
    ack_wait_ns: int
    backoff_ns: tuple[int, ...]
    max_deliver: int
    max_ack_pending: int
    start_seq: int


@dataclass(frozen=True, slots=True)
class ConsumerDeleted(Record):
    KIND: ClassVar[int] = 63
    stream: str
    consumer: str


@dataclass(frozen=True, slots=True)
class Delivered(Record):
    """Message ``seq`` went to ``consumer`` for the ``count``-th time."""

    KIND: ClassVar[int] = 64
    stream: str
    consumer: str
    seq: int
    count: int


@dataclass(frozen=True, slots=True)
class Acked(Record):
    KIND: ClassVar[int] = 65
    stream: str
    consumer: str
    seq: int


@dataclass(frozen=True, slots=True)
class Nakked(Record):
    KIND: ClassVar[int] = 66
    stream: str
    consumer: str
    seq: int
    error: str


@dataclass(frozen=True, slots=True)
class Termed(Record):
    KIND: ClassVar[int] = 67
    stream: str
    consumer: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLettered(Record):
    """``seq`` went to the consumer's dead-letter queue; the record carries the message."""

    KIND: ClassVar[int] = 68
    stream: str
    consumer: str
    seq: int
    deliveries: int
    error: str
    subject: str
    msg_id: str
    key: str
    payload: bytes
    time_ns: int


@dataclass(frozen=True, slots=True)
class StreamSnapshot(Record):
    """Compaction: the stream's sequence counter and the dedup ids of messages already gone."""

    KIND: ClassVar[int] = 69
    stream: str
    last_seq: int
    dedup: list[tuple[str, int, int]]  # (msg_id, seq, time_ns)


@dataclass(frozen=True, slots=True)
class ConsumerSnapshot(Record):
    """Compaction: a consumer's ack floor, finished sequences above it, pending deliveries
    ``(seq, count, last error)`` and counters."""

    KIND: ClassVar[int] = 70
    stream: str
    consumer: str
    floor: int
    finished: list[int]
    pending: list[tuple[int, int, str]]
    counters: tuple[int, int, int, int]  # delivered, redelivered, acked, termed


# -- supervision, units, boots -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SupervisionSet(Record):
    """The supervisor's record of an agent under a restart policy, keyed by its stable id."""

    KIND: ClassVar[int] = 80
    stable: int
    current: int
    parent: int
    auth_cid: int
    entry: str
    opts: dict[str, Any]
    policy: str
    domain: str
    restarts: int
    state: str


@dataclass(frozen=True, slots=True)
class SupervisionRemoved(Record):
    KIND: ClassVar[int] = 81
    stable: int


@dataclass(frozen=True, slots=True)
class UnitSet(Record):
    """initd's view of a unit: enabled, and its last state and result."""

    KIND: ClassVar[int] = 82
    name: str
    enabled: bool
    state: str
    sub: str
    result: str
    restarts: int


@dataclass(frozen=True, slots=True)
class Booted(Record):
    """A kernel started on this journal (after replaying it)."""

    KIND: ClassVar[int] = 83
    boot: int
    time_ns: int
    recovered_seq: int
    high_aid: int = 0  # the highest agent id ever given: ids are never reused, across boots too


RECORD_TYPES: Final[tuple[type[Record], ...]] = (
    AgentSpawned, AgentExited, AgentReaped, Checkpointed, ObjectCreated, CapInstalled, CapRevoked, CapDeleted,
    Charged, Uncharged, NameRegistered, NameRemoved, MailboxPut, MailboxTake, StreamCreated,
    StreamAppended, ConsumerCreated, ConsumerDeleted, Delivered, Acked, Nakked, Termed,
    DeadLettered, StreamSnapshot, ConsumerSnapshot, SupervisionSet, SupervisionRemoved, UnitSet, Booted,
)  # fmt: skip
BY_KIND: Final[dict[int, type[Record]]] = {t.KIND: t for t in RECORD_TYPES}
_KIND_BYTE: Final[dict[type[Record], bytes]] = {t: msgpack.packb(t.KIND) for t in RECORD_TYPES}
_TUPLE_AT: Final[dict[type[Record], tuple[int, ...]]] = {
    t: tuple(i for i, f in enumerate(fields(t)) if f.name in t.TUPLES)  # type: ignore[arg-type]
    for t in RECORD_TYPES
}
_FIELDS: Final[dict[type[Record], tuple[str, ...]]] = {
    t: tuple(f.name for f in fields(t)) for t in RECORD_TYPES  # type: ignore[arg-type]
}


def _getter(names: tuple[str, ...]) -> Callable[[Record], Any]:
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        one = names[0]
        return lambda rec: (getattr(rec, one),)
    return operator.attrgetter(*names)


_GETTERS: Final[dict[type[Record], Callable[[Record], Any]]] = {
    t: _getter(names) for t, names in _FIELDS.items()
}
_packer = msgpack.Packer(use_bin_type=True)


def encode(rec: Record) -> tuple[int, bytes]:
    """``(kind, body)``: the record's kind and the msgpack array of its field values."""
    t = type(rec)
    get = _GETTERS.get(t)
    if get is None:
        raise TypeError(f"{t.__name__} is not a journal record type")
    body: bytes = _packer.pack(get(rec))
    return t.KIND, body


def pack(rec: Record) -> bytes:
    """The record as it sits in a frame: its kind (a msgpack int), then its body."""
    t = type(rec)
    get = _GETTERS.get(t)
    if get is None:
        raise TypeError(f"{t.__name__} is not a journal record type")
    body: bytes = _packer.pack(get(rec))
    return _KIND_BYTE[t] + body


def _build(t: type[Record], values: Any) -> Record:
    if type(values) is not list:
        raise TypeError("a record body is an array")
    for i in _TUPLE_AT[t]:
        if i < len(values) and type(values[i]) is list:
            values[i] = tuple(values[i])
    return t(*values)


def decode(kind: int, body: bytes) -> Record:
    """The record stored as ``(kind, body)``; anything malformed is an IntegrityError."""
    t = BY_KIND.get(kind)
    if t is None:
        raise IntegrityError(f"unknown journal record kind {kind}")
    try:
        return _build(t, msgpack.unpackb(body, raw=False, strict_map_key=False))
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise IntegrityError(f"malformed {t.__name__} record: {e}") from None


def unpack_frame(frame: bytes) -> Iterator[Record]:
    """The records of a frame (concatenated :func:`pack` outputs), in order."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(frame), 1 << 20))
    u.feed(frame)
    it = iter(u)
    by_kind = BY_KIND
    try:
        for kind in it:
            t = by_kind.get(kind) if type(kind) is int else None
            if t is None:
                raise IntegrityError(f"unknown journal record kind {kind!r}")
            values = next(it, None)
            if values is None:
                raise IntegrityError(f"a {t.__name__} record is cut short")
            try:
                yield _build(t, values)
            except (TypeError, ValueError) as e:
                raise IntegrityError(f"malformed {t.__name__} record: {e}") from None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise IntegrityError(f"unreadable journal frame: {e}") from None
