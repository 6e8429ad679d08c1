"""Attack programs for the hostile-agent suite (``tests/usertests/test_hostile.py``).

Each is an ordinary SDK agent meant to run in the isolated executor; it tries
one thing an untrusted agent must not be able to do and returns what the OS
or the kernel answered.  They live in the package so that the sandboxed
child process can import them.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from typing import Any

from aios.errors import AIOSError
from aios.sdk import Context


def _attempt(fn: Any) -> str:
    try:
        r = fn()
        return f"allowed:{r!r}"[:120]
    except BaseException as exc:
        return f"denied:{type(exc).__name__}:{getattr(exc, 'errno', '')}"


async def read_outside(ctx: Context) -> str:
    return _attempt(lambda: open("/etc/shadow", "rb").read(1))


async def write_code(ctx: Context) -> str:
    import aios

    target = os.path.join(os.path.dirname(aios.__file__), "injected.py")
    return _attempt(lambda: open(target, "w").write("x"))


async def network(ctx: Context) -> list[str]:
    def tcp() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(("127.0.0.1", 22))

    def udp() -> None:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 53))

    return [_attempt(tcp), _attempt(udp)]


async def fork_bomb(ctx: Context) -> dict[str, Any]:
    pids, err = [], ""
    for _ in range(500):
        try:
            pid = os.fork()
        except OSError as exc:
            err = f"denied:{exc.errno}"
            break
        if pid == 0:
            import time

            time.sleep(5)
            os._exit(0)
        pids.append(pid)
    return {"forked": len(pids), "stopped_by": err}


async def hog_memory(ctx: Context) -> str:
    blocks = []
    try:
        for _ in range(4096):
            blocks.append(bytearray(1 << 20))
    except MemoryError:
        n = len(blocks)
        blocks.clear()
        return f"denied:MemoryError after {n} MiB"
    return f"allowed:{len(blocks)} MiB"


async def spin(ctx: Context) -> None:
    await ctx.send(ctx.slots.parent, b"spinning")
    while True:  # never traps: only the host can stop it
        pass


async def attack_kernel(ctx: Context) -> dict[str, Any]:
    pid = int(ctx.spec["kernel_pid"])
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    return {
        "ptrace": f"{r}:{ctypes.get_errno()}",
        "signal": _attempt(lambda: os.kill(pid, 0)),
        "read_mem": _attempt(lambda: open(f"/proc/{pid}/mem", "rb").read(1)),
    }


async def forged_slot(ctx: Context) -> str:
    try:
        await ctx.send(4000, b"x")
        return "allowed"
    except AIOSError as e:
        return f"denied:{e.name}"


async def malformed_frames(ctx: Context) -> str:
    """Write garbage on the agent's own trap socket."""
    from aios.sandbox.channel import current_client

    client = current_client()
    assert client is not None
    client.sock.sendall(struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1")
    await ctx.info()  # never answered: the kernel stopped us
    return "still served"


async def steady(ctx: Context) -> dict[str, Any]:
    """The well-behaved agent: null syscalls, timed, while the others attack."""
    import time

    lat: list[int] = []
    for _ in range(int(ctx.spec.get("n", 3000))):
        t0 = time.perf_counter_ns()
        await ctx.now_ns()
        lat.append(time.perf_counter_ns() - t0)
    lat.sort()
    return {"calls": len(lat), "p50_ns": lat[len(lat) // 2], "p99_ns": lat[len(lat) * 99 // 100]}


async def scan_slots(ctx: Context) -> int:
    """Probes capability slots it was never given, as fast as it can."""
    refused = 0
    for slot in range(6, 3000):
        try:
            await ctx.send(slot, b"x")
        except AIOSError:
            refused += 1
    return refused
