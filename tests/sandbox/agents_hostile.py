"""Agent programs for the isolated-executor tests (imported inside sandboxed children).

Each agent is an ``async def`` that reaches the kernel only through ``trap``;
hostile ones try one attack each and report what the OS answered through a
syscall (sysno 21, echo) so the test can check the denial.
"""

from __future__ import annotations

import os
import socket
import types
from typing import Any

# ruff: noqa: SIM115  (one-shot opens are the attacks themselves)

GETPID, ECHO, USE_SLOT = 20, 21, 22


@types.coroutine
def trap(sysno: int, *args: Any) -> Any:
    return (yield (sysno, args))


def _attempt(fn: Any) -> str:
    try:
        r = fn()
        return f"ok:{r!r}"[:200]
    except BaseException as exc:
        return f"denied:{type(exc).__name__}:{getattr(exc, 'errno', '')}"


async def hello() -> int:
    me = await trap(GETPID)
    await trap(ECHO, "hello", me)
    return me


async def well_behaved(n: int) -> None:
    for i in range(n):
        got = await trap(ECHO, i)
        assert got == [i], got


async def serve_forever() -> None:
    i = 0
    while True:
        await trap(ECHO, i)
        i += 1


async def idle() -> None:
    await trap(GETPID)
    await trap(25)  # the stand-in kernel never answers 25: park forever


async def read_outside(path: str) -> None:
    await trap(ECHO, _attempt(lambda: open(path).read(10)))


async def write_code_dir(path: str) -> None:
    await trap(ECHO, _attempt(lambda: open(os.path.join(path, "evil.py"), "w").write("x")))


async def write_home(path: str) -> None:
    def go() -> str:
        with open(os.path.join(path, "note.txt"), "w") as f:
            f.write("mine")
        return open(os.path.join(path, "note.txt")).read()

    await trap(ECHO, _attempt(go))


async def open_sockets() -> None:
    tcp = _attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("1.1.1.1", 80))
    )
    udp = _attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("1.1.1.1", 53))
    )
    await trap(ECHO, tcp, udp)


async def fork_bomb() -> None:
    pids, err = [], ""
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as exc:
            err = f"denied:{type(exc).__name__}:{exc.errno}"
            break
        if pid == 0:
            import time

            time.sleep(30)
            os._exit(0)
        pids.append(pid)
    await trap(ECHO, len(pids), err)


async def allocate(mb: int) -> None:
    blocks = []
    try:
        for _ in range(mb):
            blocks.append(bytearray(1 << 20))
        res = f"ok:{len(blocks)}"
    except MemoryError:
        res = "denied:MemoryError"
        blocks.clear()
    await trap(ECHO, res)
    raise MemoryError("quota")


async def spin() -> None:
    await trap(ECHO, "spinning")
    while True:
        pass


async def ptrace_pid(pid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    await trap(ECHO, r, ctypes.get_errno())


async def signal_pid(pid: int) -> None:
    await trap(ECHO, _attempt(lambda: os.kill(pid, 15)))


async def read_mem(pid: int) -> None:
    await trap(ECHO, _attempt(lambda: open(f"/proc/{pid}/mem", "rb").read(1)))


async def process_vm_read(pid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(8)

    class IOVec(ctypes.Structure):
        _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))

    local = IOVec(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = IOVec(0x400000, 8)
    r = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    await trap(ECHO, r, ctypes.get_errno())


async def use_slot(slot: int) -> None:
    from aios.abi.errors import InvalidCapability

    try:
        await trap(USE_SLOT, slot)
        await trap(ECHO, "ok")
    except InvalidCapability as exc:
        await trap(ECHO, f"denied:{exc.name}")


async def raw_frames(kind: str) -> None:
    """Write garbage on the trap socket itself (fd found by probing)."""
    import struct

    fd = None
    for cand in range(3, 64):
        try:
            s = socket.socket(fileno=os.dup(cand))
        except OSError:
            continue
        if s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM:
            fd = s
            break
        s.close()
    assert fd is not None
    if kind == "malformed":
        fd.sendall(struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1")
    elif kind == "oversized":
        fd.sendall(struct.pack(">I", 1 << 30))
    elif kind == "out-of-order":
        import msgpack

        body = msgpack.packb([99, 20, []])
        fd.sendall(struct.pack(">I", len(body)) + body)
    await trap(GETPID)  # never answered: the kernel cut us off


async def escape_syscalls() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for name, call in (
        ("unshare", lambda: libc.unshare(0x10000000)),
        ("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        ("bpf", lambda: libc.syscall(321, 0, 0, 0)),
        ("keyctl", lambda: libc.syscall(250, 0, 0, 0)),
    ):
        r = call()
        out.append([name, r, ctypes.get_errno()])
    await trap(ECHO, out)


async def crash() -> None:
    await trap(GETPID)
    raise RuntimeError("boom")


async def import_stdlib(name: str) -> None:
    import importlib

    def go() -> str:
        mod = importlib.import_module(name)
        return mod.__name__

    await trap(ECHO, _attempt(go))


async def read_env(name: str) -> None:
    await trap(ECHO, os.environ.get(name, ""))
