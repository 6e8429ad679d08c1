"""Cross-process syscall cost: an isolated agent's null syscall vs a bare socketpair echo.

``xproc_null_p50_ns``: median round trip of a null syscall made by an agent
in a fully confined isolated process (namespaces, Landlock, seccomp) through
the agent-side driver, the wire codec and the kernel-side asyncio channel
(uvloop when installed), measured inside the agent.
``raw_socketpair_rtt_p50_ns``: the same-run baseline, a bare Python echo of
a small length-prefixed message over a socketpair between two processes
(blocking ``send``/``recv``, no framing library, no event loop).
``xproc_ratio`` is the first over the second (target <= 1.5).
``xproc_pipelined_per_s`` / ``raw_pipelined_per_s``: the same with
``window`` requests in flight.

:func:`measure` is importable so the syscall benchmark can merge these keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import tempfile
import time
from typing import Any

NULL, REPORT, PARK = 0, 1, 2


def _echo_server(sock: socket.socket) -> None:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while True:
            n = sock.recv_into(view)
            if not n:
                return
            sock.sendall(view[:n])
    finally:
        os._exit(0)


def raw_baseline(n: int, warmup: int, window: int, total: int) -> dict[str, float]:
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        _echo_server(b)
    b.close()
    msg = struct.pack(">I", 12) + b"\x93\x01\x00\x90" + b"\x00" * 8  # a frame-sized message
    size = len(msg)
    clock = time.perf_counter_ns
    samples = []
    for i in range(warmup + n):
        t0 = clock()
        a.sendall(msg)
        got = 0
        while got < size:
            got += len(a.recv(65536))
        if i >= warmup:
            samples.append(clock() - t0)
    samples.sort()
    batch = msg * window
    t0 = clock()
    done = 0
    while done < total:
        a.sendall(batch)
        got = 0
        while got < len(batch):
            got += len(a.recv(1 << 20))
        done += window
    pipelined = done / ((clock() - t0) / 1e9)
    a.close()
    os.waitpid(pid, 0)
    return {
        "p50": samples[len(samples) // 2],
        "p99": samples[len(samples) * 99 // 100],
        "pipelined": pipelined,
    }


async def _isolated(n: int, warmup: int, window: int, total: int) -> dict[str, float]:
    from aios.abi.faults import Sink
    from aios.sandbox.isolated import IsolatedExecutor
    from aios.sandbox.process import AgentSpec

    reports: dict[int, tuple[Any, ...]] = {}
    done: dict[int, asyncio.Future[None]] = {}
    ex: IsolatedExecutor

    def trap(aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        if sysno == NULL:
            ex.deliver(aid, seq, 0, None)
        elif sysno == REPORT:
            reports[aid] = args
            ex.deliver(aid, seq, 0, None)
            fut = done.get(aid)
            if fut is not None and not fut.done():
                fut.set_result(None)

    ex = IsolatedExecutor(Sink(trap, lambda r: None, lambda e: None))
    await ex.start()
    root = tempfile.mkdtemp(prefix="aios-bench-")
    os.chmod(root, 0o711)
    loop = asyncio.get_running_loop()
    try:
        done[1] = loop.create_future()
        await ex.spawn(
            AgentSpec(1, "aios.bench._agents:null_loop", (n, warmup), home=os.path.join(root, "a1"))
        )
        await asyncio.wait_for(done[1], 120)
        done[2] = loop.create_future()
        await ex.spawn(
            AgentSpec(
                2, "aios.bench._agents:pipelined", (total, window), home=os.path.join(root, "a2")
            )
        )
        await asyncio.wait_for(done[2], 120)
    finally:
        await ex.close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    p50, p99 = reports[1]
    count, ns = reports[2]
    return {"p50": p50, "p99": p99, "pipelined": count / (ns / 1e9)}


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def measure(
    n: int = 5000, warmup: int = 500, window: int = 256, total: int = 200_000
) -> dict[str, float]:
    """The xproc keys, for ``aios bench xproc`` and for merging into ``aios bench syscall``."""
    raw = raw_baseline(n, warmup, window, total)
    loop = new_loop()
    try:
        iso = loop.run_until_complete(_isolated(n, warmup, window, total))
    finally:
        loop.close()
    return {
        "xproc_null_p50_ns": float(iso["p50"]),
        "xproc_null_p99_ns": float(iso["p99"]),
        "raw_socketpair_rtt_p50_ns": float(raw["p50"]),
        "raw_socketpair_rtt_p99_ns": float(raw["p99"]),
        "xproc_ratio": iso["p50"] / raw["p50"],
        "xproc_pipelined_per_s": iso["pipelined"],
        "raw_pipelined_per_s": raw["pipelined"],
        "xproc_pipelined_ratio": raw["pipelined"] / iso["pipelined"],
    }


def run(argv: list[str]) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="aios bench xproc")
    ap.add_argument("--n", type=int, default=5000, help="null syscalls measured")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--window", type=int, default=256, help="requests in flight when pipelined")
    ap.add_argument("--total", type=int, default=200_000, help="pipelined requests")
    a = ap.parse_args(argv)
    return measure(a.n, a.warmup, a.window, a.total)
