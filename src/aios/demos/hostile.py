"""Attack programs for the hostile-agent suite (``tests/usertests/test_hostile.py``).

Each is an ordinary SDK agent meant to run in the isolated executor; it tries
one thing an untrusted agent must not be able to do and returns *exactly*
what the OS or the kernel answered: ``{"ok": True, "value": ...}`` or
``{"ok": False, "op": <the call that failed>, "errno": <errno>, "error":
<exception name>}``.  The tests classify that outcome (which mechanism
stopped the attack, with which errno) and, with the mechanism switched off
(:func:`aios.kernel.confinement.weaken_for_tests`), check that the very same
program succeeds.  They live in the package so that the sandboxed child
process can import them.

Targets are chosen so that only the mechanism under test stands in the way:
a world-readable file outside the Landlock allowance, a world-writable
directory, a listener the test opens on the host's loopback, a secret planted
in the daemon's environment, a mailbox the agent holds a send-only
capability to.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from aios.abi.errors import AIOSError
from aios.sdk import Context

Outcome = dict[str, Any]


def _attempt(fn: Callable[[], Any], op: str = "") -> Outcome:
    try:
        return {"ok": True, "value": repr(fn())[:200]}
    except AIOSError as exc:
        return {"ok": False, "op": op, "errno": exc.code, "error": exc.name}
    except OSError as exc:
        return {"ok": False, "op": op, "errno": exc.errno or 0, "error": type(exc).__name__}
    except BaseException as exc:
        return {"ok": False, "op": op, "errno": 0, "error": type(exc).__name__}


# -- the file system (Landlock) -------------------------------------------------------


async def read_outside(ctx: Context) -> Outcome:
    """Read a file every uid may read, outside the agent's Landlock allowance."""
    path = str(ctx.spec["path"])
    return _attempt(lambda: open(path).read(64), "open")


async def write_outside(ctx: Context) -> Outcome:
    """Create a file in a directory outside the allowance (world-writable, or root's)."""
    path = os.path.join(str(ctx.spec["dir"]), f"planted-by-{ctx.aid}")

    def go() -> int:
        with open(path, "w") as f:
            return f.write("x")

    return _attempt(go, "open")


# -- the network (seccomp, Landlock, network namespace) -------------------------------


async def net_tcp(ctx: Context) -> Outcome:
    """Connect to a TCP listener on the host's loopback and send a token."""
    port, token = int(ctx.spec["port"]), str(ctx.spec["token"]).encode()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return {"ok": False, "op": "socket", "errno": exc.errno or 0, "error": type(exc).__name__}
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(token)
    except OSError as exc:
        return {"ok": False, "op": "connect", "errno": exc.errno or 0, "error": type(exc).__name__}
    finally:
        s.close()
    return {"ok": True, "value": "sent"}


async def net_udp(ctx: Context) -> Outcome:
    """Send a datagram to a UDP socket on the host's loopback (Landlock does not cover UDP)."""
    port, token = int(ctx.spec["port"]), str(ctx.spec["token"]).encode()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        return {"ok": False, "op": "socket", "errno": exc.errno or 0, "error": type(exc).__name__}
    try:
        s.sendto(token, ("127.0.0.1", port))
    except OSError as exc:
        return {"ok": False, "op": "sendto", "errno": exc.errno or 0, "error": type(exc).__name__}
    finally:
        s.close()
    return {"ok": True, "value": "sent"}


async def net_attempts(ctx: Context) -> dict[str, Any]:
    """Reach for the network ``spec['n']`` times, wait for the parent's word (it watches
    the behavior monitor's responses), then report the rights left on the authority
    capability in slot ``spec['auth']``."""
    before = (await ctx.inspect(int(ctx.spec["auth"])))["rights"]
    tries = [_attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(), "socket")
             for _ in range(int(ctx.spec.get("n", 8)))]
    await ctx.send(ctx.slots.parent, b"tried")
    await ctx.recv(timeout=60)
    after = (await ctx.inspect(int(ctx.spec["auth"])))["rights"]
    return {"tries": tries, "before": before, "after": after}


# -- system calls (seccomp) ------------------------------------------------------------


async def escape_unshare(ctx: Context) -> Outcome:
    """Make a new user namespace: the first step of most kernel escapes."""
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.unshare(0x10000000)  # CLONE_NEWUSER
    if r == 0:
        return {"ok": True, "value": "unshared"}
    return {"ok": False, "op": "unshare", "errno": ctypes.get_errno(), "error": "OSError"}


# -- resources (cgroup, rlimits) ----------------------------------------------------------


async def fork_bomb(ctx: Context) -> dict[str, Any]:
    n = int(ctx.spec.get("forks", 500))
    pids, errno = [], 0
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as exc:
            errno = exc.errno or 0
            break
        if pid == 0:
            import time

            time.sleep(3)
            os._exit(0)
        pids.append(pid)
    return {"forked": len(pids), "errno": errno}


async def hog_memory(ctx: Context) -> Outcome:
    mb = int(ctx.spec.get("mb", 4096))
    blocks = []
    try:
        for _ in range(mb):
            blocks.append(bytearray(1 << 20))
    except MemoryError:
        n = len(blocks)
        blocks.clear()
        return {"ok": False, "op": "malloc", "errno": 12, "error": "MemoryError", "value": n}
    return {"ok": True, "value": len(blocks)}


async def spin(ctx: Context) -> None:
    await ctx.send(ctx.slots.parent, b"spinning")
    while True:  # never traps: only the host can stop it
        pass


# -- other processes (uid, Landlock scopes, seccomp) ------------------------------------------


async def signal_pid(ctx: Context) -> Outcome:
    """Probe (signal 0) the kernel's process: permission to signal it is the attack."""
    pid = int(ctx.spec["pid"])
    return _attempt(lambda: os.kill(pid, 0), "kill")


async def attack_kernel(ctx: Context) -> dict[str, Any]:
    pid = int(ctx.spec["kernel_pid"])
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    ptrace = {"ok": r == 0, "op": "ptrace", "errno": 0 if r == 0 else ctypes.get_errno()}
    if r == 0:
        libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH: never leave the kernel stopped
    return {
        "ptrace": ptrace,
        "signal": _attempt(lambda: os.kill(pid, 0), "kill"),
        "read_mem": _attempt(lambda: open(f"/proc/{pid}/mem", "rb").read(1), "open"),
    }


# -- secrets (environment scrubbing) ------------------------------------------------------------


async def read_environment(ctx: Context) -> dict[str, Any]:
    """What of the daemon's environment reached this agent's ``os.environ``."""
    names = sorted(os.environ)
    planted = str(ctx.spec.get("secret_value", ""))
    return {"names": names, "secret_seen": bool(planted) and planted in os.environ.values()}


# -- capabilities (the kernel's rights check) --------------------------------------------------


async def forged_slot(ctx: Context) -> Outcome:
    return await _async_attempt(ctx.send(4000, b"x"), "send")


async def read_parent_mailbox(ctx: Context) -> Outcome:
    """Receive from the parent's mailbox through slot 5, a send-only capability."""
    return await _async_attempt(ctx.recv_nowait(ep=ctx.slots.parent), "recv")


async def _async_attempt(aw: Any, op: str) -> Outcome:
    try:
        v = await aw
    except AIOSError as exc:
        return {"ok": False, "op": op, "errno": exc.code, "error": exc.name}
    payload = getattr(v, "payload", v)
    return {"ok": True, "value": payload.decode(errors="replace") if isinstance(payload, bytes) else repr(v)}


# -- lifecycle operations (confinement) -----------------------------------------------------------


def where_am_i(ctx: Context) -> dict[str, Any]:
    """Where this code runs: its pid (the kernel's?), executor, environment, network."""
    kernel_pid = int(ctx.spec.get("kernel_pid", 0))
    return {
        "pid": os.getpid(),
        "in_kernel": os.getpid() == kernel_pid,
        "inet": _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(), "socket"),
        "env_secret": bool(ctx.spec.get("secret_value"))
        and str(ctx.spec["secret_value"]) in os.environ.values(),
    }


async def escape_by_lifecycle(ctx: Context) -> dict[str, Any]:
    """Make a copy of itself with a lifecycle operation (``spec['how']``) and report
    where the copy runs.  The copy recognises itself by its name."""
    if ctx.name.endswith(".copy"):
        return where_am_i(ctx)
    how = str(ctx.spec["how"])
    name = f"{ctx.name}.copy"
    try:
        if how == "clone":
            child = await ctx.clone(name=name)
        elif how == "clone_inproc":
            child = await ctx.clone(name=name, executor="inproc")
        elif how == "specialize":
            child = await ctx.specialize(dict(ctx.spec), name=name)
        elif how == "specialize_worker":
            child = await ctx.specialize(dict(ctx.spec), name=name, executor="worker")
        elif how == "split":
            child = await ctx.split({"keys": []}, name=name)
        elif how == "spawn":
            child = await ctx.spawn("aios.demos.hostile:escape_by_lifecycle", name=name, spec=dict(ctx.spec))
        elif how == "spawn_inproc":
            child = await ctx.spawn("aios.demos.hostile:escape_by_lifecycle", name=name, spec=dict(ctx.spec),
                                    executor="inproc")
        else:
            raise ValueError(how)
    except AIOSError as exc:
        return {"refused": exc.name, "message": exc.message, "self": where_am_i(ctx)}
    _, st = await ctx.wait(child.aid, timeout=60)
    return {"copy": st["exit"], "fault": st["fault"], "self": where_am_i(ctx)}


async def upgrade_victim(ctx: Context) -> Outcome:
    """Swap the code of an in-process agent it holds a control capability to."""
    return await _async_attempt(ctx.upgrade(int(ctx.spec["victim"]), "aios.demos.hostile:upgraded"),
                                "upgrade")


async def upgraded(ctx: Context) -> dict[str, Any]:
    """The code an attacker would run in the kernel's process."""
    return where_am_i(ctx)


async def image_by_path(ctx: Context) -> Outcome:
    """Ask the kernel to load an image from a host path."""
    return await _async_attempt(ctx.spawn("image:" + str(ctx.spec["path"])), "spawn")


# -- the trap protocol, and the well-behaved ---------------------------------------------------------


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
