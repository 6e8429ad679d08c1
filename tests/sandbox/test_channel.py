from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import types
from typing import Any

import pytest

from aios.abi import wire
from aios.abi.errors import InvalidCapability, NoSuchSyscall, ProtocolError
from aios.sandbox.channel import RemoteAgentChannel, TrapClient, drive


@types.coroutine
def trap(sysno: int, *args: Any) -> Any:
    return (yield (sysno, args))


async def agent() -> list[Any]:
    out = [await trap(1, "a"), await trap(1, "b")]
    try:
        await trap(99)
    except NoSuchSyscall as exc:
        out.append(exc.name)
    try:
        await trap(1, object())  # cannot be encoded: raised in the agent, nothing sent
    except ProtocolError:
        out.append("eproto")
    out.append(await trap(1, "c"))
    return out


def test_drive_agent_over_channel() -> None:
    async def main() -> Any:
        a, b = socket.socketpair()
        seen: list[tuple[int, int, tuple[Any, ...]]] = []
        ch: RemoteAgentChannel

        def on_trap(seq: int, sysno: int, args: tuple[Any, ...]) -> None:
            seen.append((seq, sysno, args))
            if sysno == 1:
                ch.reply(seq, 0, args[0].upper())
            else:
                ch.reply_error(seq, NoSuchSyscall("nope"))

        ch = await RemoteAgentChannel.open(a, on_trap)
        outcome = await asyncio.to_thread(drive, agent(), TrapClient(b))
        ch.close()
        b.close()
        return outcome, seen

    outcome, seen = asyncio.run(main())
    assert outcome.cause == "ok" and outcome.value == ["A", "B", "ENOSYS", "eproto", "C"]
    assert [s[0] for s in seen] == [1, 2, 3, 4]


def test_pipelined_calls_answered_out_of_order() -> None:
    async def main() -> list[Any]:
        a, b = socket.socketpair()
        held: list[int] = []
        ch: RemoteAgentChannel

        def on_trap(seq: int, sysno: int, args: tuple[Any, ...]) -> None:
            held.append(seq)
            if len(held) == 100:  # answer all, newest first, later
                loop.call_soon(
                    lambda: [
                        ch.reply(s, 0 if s % 7 else InvalidCapability.code, s if s % 7 else "no")
                        for s in reversed(held)
                    ]
                )

        loop = asyncio.get_running_loop()
        ch = await RemoteAgentChannel.open(a, on_trap)
        client = TrapClient(b)
        res = await asyncio.to_thread(client.call_many, [(5, (i,)) for i in range(100)])
        assert ch.decoder.in_flight() == 0
        ch.close()
        b.close()
        return res

    res = asyncio.run(main())
    assert [r for r in res if not isinstance(r, Exception)] == [s for s in range(1, 101) if s % 7]
    assert all(isinstance(res[s - 1], InvalidCapability) for s in range(7, 101, 7))


@pytest.mark.parametrize(
    "garbage",
    [struct.pack(">I", 10**9), struct.pack(">I", 2) + b"\xc1\xc1", wire.encode_request(5, 1, ())],
)
def test_protocol_error_reported_once_and_stream_closed(garbage: bytes) -> None:
    async def main() -> list[ProtocolError]:
        a, b = socket.socketpair()
        errors: list[ProtocolError] = []
        traps: list[int] = []
        ch = await RemoteAgentChannel.open(
            a, lambda s, n, x: traps.append(s), on_error=errors.append
        )
        b.sendall(garbage + wire.encode_request(1, 1, ()))
        for _ in range(100):
            await asyncio.sleep(0.005)
            if errors:
                break
        with contextlib.suppress(OSError):
            b.sendall(b"more")  # ignored (or refused by the closed socket)
        b.setblocking(False)
        eof = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(b, 1), 30)
        assert eof == b""  # the channel closed its end after the bad frame
        assert traps == []
        assert ch.failed is not None
        b.close()
        return errors

    errors = asyncio.run(main())
    assert len(errors) == 1


def test_control_frames_reach_on_control() -> None:
    async def main() -> list[Any]:
        a, b = socket.socketpair()
        got: list[Any] = []
        await RemoteAgentChannel.open(
            a, lambda *x: None, on_control=lambda op, args: got.append((op, args))
        )
        TrapClient(b).control(wire.Control.HELLO, (7, 123, []))
        for _ in range(100):
            await asyncio.sleep(0.005)
            if got:
                break
        b.close()
        return got

    assert asyncio.run(main()) == [(int(wire.Control.HELLO), (7, 123, ()))]
