"""Both ends of a trap stream: the kernel-side asyncio endpoint and the agent-side driver.

Kernel side.  :class:`RemoteAgentChannel` is an ``asyncio.Protocol`` (plain
callbacks, no streams, so it runs unchanged on uvloop).  Bytes go through a
:class:`~aios.abi.wire.FrameDecoder`; every request becomes one
``on_trap(seq, sysno, args)`` call, every control frame one
``on_control(op, args)``.  The kernel answers with :meth:`reply`, now or
much later (blocking syscalls).  Replies are *corked*: those produced while
a batch of requests is being handled go out in one ``write`` at the end of
``data_received``; those produced later are coalesced until the next turn of
the loop.  A protocol violation calls ``on_error`` once, closes the
transport and ignores anything further: the executor then stops the agent
and records a security event.  :class:`MuxChannel` is the same for a worker
process, where each frame carries the agent id.

Agent side.  Inside an isolated child there is no event loop: the driver is
a plain loop around the agent's coroutine, and blocking ``send``/``recv`` on
the socket is the fastest round trip Python has (no selector, no callbacks).
:func:`drive` runs ``coro`` to completion: each yielded ``(sysno, args)``
becomes a request, each reply is ``send``-ed in (or, on error, the matching
:mod:`aios.abi.errors` class is ``throw``-n in), and the outcome is returned as
an :class:`Outcome`.  :class:`TrapClient` also offers ``call_many`` for
pipelined requests (many seqs in flight, one write, replies read in bulk).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aios.abi import wire
from aios.abi.errors import (
    AgentFault,
    AIOSError,
    Cancelled,
    InvalidArgument,
    ProtocolError,
    from_code,
)
from aios.abi.faults import fault_text
from aios.abi.wire import FrameDecoder, Kind

TrapHandler = Callable[[int, int, tuple[Any, ...]], None]
MuxTrapHandler = Callable[[int, int, int, tuple[Any, ...]], None]
ControlHandler = Callable[[int, tuple[Any, ...]], None]
MuxControlHandler = Callable[[int, int, tuple[Any, ...]], None]
ErrorHandler = Callable[[ProtocolError], None]
CloseHandler = Callable[[], None]


class _ChannelBase(asyncio.Protocol):
    def __init__(
        self, *, mux: bool, on_error: ErrorHandler | None, on_close: CloseHandler | None
    ) -> None:
        self.decoder = FrameDecoder(Kind.REQUEST, mux=mux)
        self.encoder = wire.Encoder()
        self.transport: asyncio.Transport | None = None
        self._on_error = on_error
        self._on_close = on_close
        self._out: list[bytes] = []
        self._corked = False
        self._flush_scheduled = False
        self.failed: ProtocolError | None = None
        self.closed = False
        self.frames_in = 0
        self.frames_out = 0

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.failed is not None or self.closed:
            return
        self._corked = True
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self._corked = False
            self._fail(exc)
            return
        try:
            self.frames_in += len(frames)
            for f in frames:
                self._dispatch(f)
        finally:
            self._corked = False
            if self._out:
                self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb()

    # -- helpers ------------------------------------------------------------
    def _dispatch(self, frame: tuple[Any, ...]) -> None:
        raise AssertionError("subclass")

    def _fail(self, exc: ProtocolError) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        if self.transport is not None:
            self.transport.abort()
        if self._on_error is not None:
            self._on_error(exc)

    def _queue(self, frame: bytes) -> None:
        if self.closed or self.failed is not None:
            return
        self._out.append(frame)
        if not self._corked and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.closed:
            self.frames_out += len(out)
            self.transport.write(b"".join(out))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush()
            self.transport.close()


class RemoteAgentChannel(_ChannelBase):
    """Kernel-side endpoint of one out-of-process agent."""

    def __init__(
        self,
        on_trap: TrapHandler,
        *,
        on_control: ControlHandler | None = None,
        on_error: ErrorHandler | None = None,
        on_close: CloseHandler | None = None,
    ) -> None:
        super().__init__(mux=False, on_error=on_error, on_close=on_close)
        self._on_trap = on_trap
        self._on_control = on_control

    @classmethod
    async def open(cls, sock: socket.socket, on_trap: TrapHandler, **kw: Any) -> RemoteAgentChannel:
        loop = asyncio.get_running_loop()
        _, proto = await loop.connect_accepted_socket(lambda: cls(on_trap, **kw), sock=sock)
        return proto

    def _dispatch(self, f: tuple[Any, ...]) -> None:
        seq, code, payload = f
        if seq == wire.CONTROL_SEQ:
            if self._on_control is not None:
                self._on_control(code, payload)
        else:
            self._on_trap(seq, code, payload)

    def reply(self, seq: int, errno: int, result: Any) -> None:
        self.decoder.settle()
        self._queue(self.encoder.reply(seq, errno, result))

    def reply_error(self, seq: int, exc: AIOSError) -> None:
        self.reply(seq, exc.code, exc.message)

    def control(self, op: int, args: Sequence[Any]) -> None:
        self._queue(self.encoder.control(op, args))


class MuxChannel(_ChannelBase):
    """Kernel-side endpoint of a worker process hosting many agents."""

    def __init__(
        self,
        on_trap: MuxTrapHandler,
        *,
        on_control: MuxControlHandler | None = None,
        on_error: ErrorHandler | None = None,
        on_close: CloseHandler | None = None,
    ) -> None:
        super().__init__(mux=True, on_error=on_error, on_close=on_close)
        self._on_trap = on_trap
        self._on_control = on_control

    @classmethod
    async def open(cls, sock: socket.socket, on_trap: MuxTrapHandler, **kw: Any) -> MuxChannel:
        loop = asyncio.get_running_loop()
        _, proto = await loop.connect_accepted_socket(lambda: cls(on_trap, **kw), sock=sock)
        return proto

    def _dispatch(self, f: tuple[Any, ...]) -> None:
        agent, seq, code, payload = f
        if seq == wire.CONTROL_SEQ:
            if self._on_control is not None:
                self._on_control(agent, code, payload)
        else:
            self._on_trap(agent, seq, code, payload)

    def reply(self, agent: int, seq: int, errno: int, result: Any) -> None:
        self.decoder.settle(agent)
        self._queue(wire.encode_mux_reply(agent, seq, errno, result))

    def control(self, agent: int, op: int, args: Sequence[Any]) -> None:
        self._queue(wire.encode_frame((agent, wire.CONTROL_SEQ, int(op), args)))

    def forget(self, agent: int) -> None:
        self.decoder.forget(agent)


# -- agent side --------------------------------------------------------------------


class TrapClient:
    """Blocking agent-side end of a trap stream (one agent, one socket)."""

    __slots__ = ("_buf", "_dec", "_enc", "_pending", "_seq", "_view", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self._dec = FrameDecoder(Kind.REPLY)
        self._enc = wire.Encoder()
        # a reused receive buffer: recv(n) would allocate (and for large n, mmap) n bytes per call
        self._buf = bytearray(wire.MAX_FRAME + wire.HEADER_SIZE)
        self._view = memoryview(self._buf)
        self._seq = 0
        self._pending: list[tuple[int, int, Any]] = []

    def _next(self) -> tuple[int, int, Any]:
        while not self._pending:
            n = self.sock.recv_into(self._buf)
            if not n:
                raise Cancelled("kernel closed the trap channel")
            self._pending.extend(self._dec.feed(self._view[:n]))
        return self._pending.pop(0)

    def call(self, sysno: int, args: Sequence[Any]) -> Any:
        """One syscall; returns the result or raises the kernel's error."""
        seq = self._seq + 1
        frame = self._enc.request(seq, sysno, args)  # may raise: then nothing was sent
        self._seq = seq
        self._dec.expect(seq)
        self.sock.sendall(frame)
        rseq, errno, result = self._next()
        if rseq != seq:
            raise ProtocolError(f"reply for seq {rseq} while waiting for {seq}")
        if errno:
            raise from_code(errno, result)
        return result

    def call_many(self, calls: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Pipelined syscalls: all requests in one write; results (or errors) in order."""
        base = self._seq
        req = self._enc.request
        frames = [req(base + i, sysno, args) for i, (sysno, args) in enumerate(calls, 1)]
        for i in range(1, len(calls) + 1):
            self._dec.expect(base + i)
        self._seq = base + len(calls)
        self.sock.sendall(wire.encode_batch(frames))
        out: list[Any] = [None] * len(calls)
        for _ in calls:
            rseq, errno, result = self._next()
            out[rseq - base - 1] = from_code(errno, result) if errno else result
        return out

    def control(self, op: int, args: Sequence[Any]) -> None:
        self.sock.sendall(self._enc.control(op, args))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an agent's coroutine ended.  ``cause``: ok | exception | error | cancelled."""

    status: int
    cause: str
    message: str
    value: Any = None


def drive(coro: Coroutine[Any, Any, Any], client: TrapClient) -> Outcome:
    """Run an agent coroutine to completion against a kernel across ``client``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            trap = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return Outcome(0, "ok", "", stop.value)
        except AIOSError as exc:
            return Outcome(1, "error", fault_text(exc, f"{exc.name}: {exc.message}"))
        except Exception as exc:
            return Outcome(1, "exception", fault_text(exc))
        value, error = None, None
        if type(trap) is not tuple or len(trap) != 2 or type(trap[0]) is not int:
            error = InvalidArgument(
                f"agent yielded {type(trap).__name__}, not a (sysno, args) trap"
            )
            continue
        sysno, args = trap
        try:
            value = client.call(sysno, args)
        except Cancelled:
            coro.close()
            return Outcome(1, "cancelled", "kernel closed the trap channel")
        except ProtocolError as exc:
            # our own encoding failed (unencodable args) or the kernel broke protocol
            error = exc
        except AIOSError as exc:
            error = exc


_current: list[TrapClient | None] = [None]


def current_client() -> TrapClient | None:
    """The trap client of this (out-of-process) agent, for batched calls (``call_many``)."""
    return _current[0]


def run_entry(
    fn: Callable[..., Coroutine[Any, Any, Any]], args: Sequence[Any], client: TrapClient
) -> Outcome:
    """Call the agent function and drive the coroutine it returns."""
    _current[0] = client
    try:
        coro = fn(*args)
    except Exception as exc:
        return Outcome(1, "exception", fault_text(exc))
    if not hasattr(coro, "send"):
        return Outcome(1, "exception", f"entry returned {type(coro).__name__}, not a coroutine")
    try:
        return drive(coro, client)
    except MemoryError:
        return Outcome(1, "exception", "MemoryError")
    except OSError as exc:
        return Outcome(1, "cancelled", f"trap channel broken: {exc}")


def fault_for(outcome: Outcome) -> AgentFault | None:
    if outcome.status == 0:
        return None
    return AgentFault(f"{outcome.cause}: {outcome.message}")
