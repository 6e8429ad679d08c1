"""The trap protocol: how a syscall crosses a process boundary.

An agent in the kernel process makes a syscall by yielding ``(sysno, args)``
from its coroutine; the kernel ``send``s the result back in.  An agent in
another process (isolated, worker, a future microVM) does exactly the same
thing, except that a driver in its process turns each yield into a *request
frame* and each *reply frame* back into a ``send`` or a ``throw``.  This
module is that translation, and nothing else: it does no I/O (sans-IO, like
h11), so the kernel-side asyncio endpoint, the blocking agent-side driver,
the zygote's control channel and the tests all share one codec.

Frames.  A frame is a 4-byte big-endian length ``n`` followed by ``n`` bytes
of msgpack.  ``n`` is at most :data:`MAX_FRAME`, which is the IPC payload
limit (64 KiB) plus headroom for the envelope, so that any legal syscall fits
and nothing else does.  The body is a msgpack array of a fixed shape:

* request (agent -> kernel):  ``[seq, sysno, args]``
* reply   (kernel -> agent):  ``[seq, errno, result]``;  ``errno == 0`` means
  success and ``result`` is the value, otherwise ``result`` is the message
* control (either way):       ``[0, op, args]``;  ``seq == 0`` is reserved for
  out-of-band messages (hello, exit report) that are not syscalls.

A *multiplexed* stream (one worker process hosting many agents) prefixes the
agent id: ``[agent, seq, sysno, args]`` / ``[agent, seq, errno, result]``; the
sequence rules below then hold per agent.

Sequence rules.  Requests on a stream (per agent when multiplexed) carry
``seq`` 1, 2, 3, ... with no gap and no repeat: a stream is a single ordered
conversation, so anything else means a confused or hostile peer.  Replies may
come back in any order (the kernel answers blocking calls later), but each
must name a request that is in flight, exactly once.  At most
:data:`MAX_IN_FLIGHT` requests may be outstanding per agent.  Every violation
is a :class:`~aios.abi.errors.ProtocolError`; the decoder that raised it is
poisoned (a stream that lost sync cannot be trusted again) and the owner of
the stream stops the peer.

Batching.  Frames are self-delimiting, so a writer may put many of them in
one ``write`` (:func:`encode_batch`) and a reader may receive half a frame or
thirty: :class:`FrameDecoder` takes whatever bytes arrived and returns every
complete frame.  Pipelining is just sending request ``n+1`` before reply
``n`` arrived.

Types.  Arrays in request arguments decode as tuples (``args`` is a tuple,
hashable, as the dispatcher expects); arrays in results decode as lists.
msgpack extension types are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Final

import msgpack

from aios.abi.errors import ProtocolError
from aios.abi.limits import IPC_MAX_PAYLOAD

HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size
FRAME_HEADROOM: Final = 4096  # envelope: seq, numbers, argument framing
MAX_FRAME: Final = IPC_MAX_PAYLOAD + FRAME_HEADROOM
MAX_IN_FLIGHT: Final = 1024  # outstanding requests per agent
MAX_SEQ: Final = (1 << 63) - 1
CONTROL_SEQ: Final = 0


class Control(int, Enum):
    """Operation codes of control frames (``seq == 0``)."""

    HELLO = 1  # agent -> kernel: (agent_id, pid, protections)
    EXIT = 2  # agent -> kernel: (status, cause, message)
    SECURITY = 3  # agent -> kernel: (kind, detail) advisory report from the runtime
    SPAWN = 4  # kernel -> worker: (agent_id, entry, args)
    KILL = 5  # kernel -> worker: (agent_id,)
    EVICT = 6  # kernel -> worker: (agent_id,) hand an idle agent's record back
    RECORD = 7  # worker -> kernel: (agent_id, record) answer to EVICT


class Kind(Enum):
    """Which direction (shape) a decoder expects."""

    REQUEST = "request"
    REPLY = "reply"


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} not allowed")


def _pack(obj: Any) -> bytes:
    try:
        body: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode frame: {exc}") from None
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return body


def encode_frame(obj: Any) -> bytes:
    """One length-prefixed frame holding ``obj`` (raises ProtocolError if too big)."""
    body = _pack(obj)
    return HEADER.pack(len(body)) + body


def encode_request(seq: int, sysno: int, args: Sequence[Any]) -> bytes:
    return encode_frame((seq, sysno, args))


def encode_reply(seq: int, errno: int, result: Any) -> bytes:
    """A reply; an unencodable result becomes an EPROTO error reply, never a crash."""
    try:
        return encode_frame((seq, errno, result))
    except ProtocolError as exc:
        return encode_frame((seq, ProtocolError.code, f"result not encodable: {exc.message}"))


def encode_control(op: int, args: Sequence[Any]) -> bytes:
    return encode_frame((CONTROL_SEQ, int(op), args))


def encode_mux_request(agent: int, seq: int, sysno: int, args: Sequence[Any]) -> bytes:
    return encode_frame((agent, seq, sysno, args))


def encode_mux_reply(agent: int, seq: int, errno: int, result: Any) -> bytes:
    try:
        return encode_frame((agent, seq, errno, result))
    except ProtocolError as exc:
        return encode_frame(
            (agent, seq, ProtocolError.code, f"result not encodable: {exc.message}")
        )


class Encoder:
    """Frame encoder with its own reusable msgpack packer (one per stream end).

    A reused ``msgpack.Packer`` is about three times faster than ``packb``;
    it is not thread-safe, so each channel or client owns one.
    """

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer(use_bin_type=True).pack

    def frame(self, obj: Any) -> bytes:
        try:
            body: bytes = self._pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode frame: {exc}") from None
        if len(body) > MAX_FRAME:
            raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
        return HEADER.pack(len(body)) + body

    def request(self, seq: int, sysno: int, args: Sequence[Any]) -> bytes:
        return self.frame((seq, sysno, args))

    def reply(self, seq: int, errno: int, result: Any) -> bytes:
        try:
            return self.frame((seq, errno, result))
        except ProtocolError as exc:
            return self.frame((seq, ProtocolError.code, f"result not encodable: {exc.message}"))

    def control(self, op: int, args: Sequence[Any]) -> bytes:
        return self.frame((CONTROL_SEQ, int(op), args))


def encode_batch(frames: Iterable[bytes]) -> bytes:
    """Several encoded frames in one buffer, for a single write."""
    return b"".join(frames)


class RawDecoder:
    """Length-prefix splitting and msgpack decoding, no shape rules.

    ``feed`` returns the decoded bodies of every complete frame.  After a
    :class:`ProtocolError` the decoder is poisoned and refuses further input.
    """

    __slots__ = ("_buf", "_poisoned", "_use_list", "max_frame")

    def __init__(self, *, max_frame: int = MAX_FRAME, use_list: bool = False) -> None:
        self._buf = bytearray()
        self._poisoned: ProtocolError | None = None
        self._use_list = use_list
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _fail(self, message: str) -> ProtocolError:
        err = ProtocolError(message)
        self._poisoned = err
        self._buf.clear()
        return err

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        if self._poisoned is not None:
            raise ProtocolError(f"stream already failed: {self._poisoned.message}")
        buf = self._buf
        if not buf and len(data) > HEADER_SIZE:
            # fast path: exactly one whole frame (the common unbatched case)
            (n,) = HEADER.unpack_from(data, 0)
            if n == len(data) - HEADER_SIZE and 0 < n <= self.max_frame:
                try:
                    return [
                        msgpack.unpackb(
                            memoryview(data)[HEADER_SIZE:],
                            raw=False,
                            use_list=self._use_list,
                            ext_hook=_refuse_ext,
                            strict_map_key=False,
                        )
                    ]
                except Exception as exc:
                    raise self._fail(f"malformed msgpack frame: {type(exc).__name__}") from None
        buf += data
        out: list[Any] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > self.max_frame:
                raise self._fail(f"frame length {n} exceeds the {self.max_frame}-byte limit")
            if n == 0:
                raise self._fail("empty frame")
            if end - pos - HEADER_SIZE < n:
                break
            start = pos + HEADER_SIZE
            try:
                obj = msgpack.unpackb(
                    buf[start : start + n],
                    raw=False,
                    use_list=self._use_list,
                    ext_hook=_refuse_ext,
                    strict_map_key=False,
                )
            except Exception as exc:  # msgpack raises several unrelated types
                raise self._fail(f"malformed msgpack frame: {type(exc).__name__}") from None
            out.append(obj)
            pos = start + n
        if pos:
            del buf[:pos]
        return out


class FrameDecoder:
    """Incremental decoder for one direction of a trap stream, with shape and seq checks.

    ``kind=REQUEST`` (the kernel side reading an agent) yields
    ``(seq, sysno, args)`` (``args`` a tuple); ``kind=REPLY`` (the agent side)
    yields ``(seq, errno, result)``.  With ``mux=True`` each item starts with
    the agent id.  Control frames come out with ``seq == 0``.
    The request side enforces consecutive seqs and the in-flight bound (call
    :meth:`settle` when a reply is sent); the reply side accepts only seqs
    registered with :meth:`expect`.
    """

    __slots__ = ("_expected", "_in_flight", "_next_seq", "_raw", "kind", "max_in_flight", "mux")

    def __init__(
        self,
        kind: Kind,
        *,
        mux: bool = False,
        max_frame: int = MAX_FRAME,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.kind = kind
        self.mux = mux
        self.max_in_flight = max_in_flight
        # requests: arrays decode as tuples at every level; replies: as lists
        self._raw = RawDecoder(max_frame=max_frame, use_list=kind is Kind.REPLY)
        self._next_seq: dict[int, int] = {}
        self._in_flight: dict[int, int] = {}
        self._expected: dict[int, set[int]] = {}

    @property
    def buffered(self) -> int:
        return self._raw.buffered

    def in_flight(self, agent: int = 0) -> int:
        if self.kind is Kind.REQUEST:
            return self._in_flight.get(agent, 0)
        return len(self._expected.get(agent, ()))

    def settle(self, agent: int = 0) -> None:
        """The kernel answered one request of ``agent`` (request side only)."""
        n = self._in_flight.get(agent, 0)
        if n > 0:
            self._in_flight[agent] = n - 1

    def expect(self, seq: int, agent: int = 0) -> None:
        """The agent sent request ``seq`` and now awaits its reply (reply side only)."""
        pending = self._expected.setdefault(agent, set())
        if len(pending) >= self.max_in_flight:
            raise ProtocolError(f"more than {self.max_in_flight} requests in flight")
        pending.add(seq)

    def forget(self, agent: int) -> None:
        """Drop all sequence state of one agent (it left this stream)."""
        self._next_seq.pop(agent, None)
        self._in_flight.pop(agent, None)
        self._expected.pop(agent, None)

    def _fail(self, message: str) -> ProtocolError:
        return self._raw._fail(message)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[Any, ...]]:
        frames = self._raw.feed(data)
        out: list[tuple[Any, ...]] = []
        mux = self.mux
        width = 4 if mux else 3
        request = self.kind is Kind.REQUEST
        shape = tuple if request else list
        for f in frames:
            if type(f) is not shape or len(f) != width:
                raise self._fail(f"frame is not a {width}-element array")
            if mux:
                agent, seq, code, payload = f
                if type(agent) is not int or agent < 0:
                    raise self._fail("agent id must be a non-negative integer")
            else:
                agent = 0
                seq, code, payload = f
            if type(seq) is not int or type(code) is not int:
                raise self._fail("seq and code must be integers")
            if seq == CONTROL_SEQ:
                if not isinstance(payload, (tuple, list)):
                    raise self._fail("control arguments must be an array")
                out.append(tuple(f))
                continue
            if seq < 0 or seq > MAX_SEQ:
                raise self._fail(f"seq {seq} out of range")
            if request:
                if type(payload) is not tuple:
                    raise self._fail("syscall arguments must be an array")
                want = self._next_seq.get(agent, 1)
                if seq != want:
                    kind = "duplicate" if seq < want else "out-of-order"
                    raise self._fail(f"{kind} seq {seq} (expected {want})")
                n = self._in_flight.get(agent, 0)
                if n >= self.max_in_flight:
                    raise self._fail(f"more than {self.max_in_flight} requests in flight")
                self._in_flight[agent] = n + 1
                self._next_seq[agent] = seq + 1
                out.append(f)  # type: ignore[arg-type]  # a tuple: checked by shape above
            else:
                pending = self._expected.get(agent)
                if pending is None or seq not in pending:
                    raise self._fail(f"reply for seq {seq} which is not in flight")
                pending.discard(seq)
                if code != 0 and type(payload) is not str:
                    raise self._fail("error reply must carry a message string")
                out.append(tuple(f))
        return out
