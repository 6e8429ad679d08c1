"""Agents meant to run outside the kernel process (isolated or worker executors).

Entry points are named ``aios.demos.remote_agents:<name>``; the executors import
them in the agent's own process.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from aios.abi.errors import AIOSError
from aios.sdk import Context


async def echo(ctx: Context) -> None:
    """Replies to every call with its payload, prefixed with this process's pid."""
    while True:
        msg = await ctx.recv()
        if msg.payload == b"quit":
            return
        if msg.call:
            await ctx.reply(msg, b"%d:" % os.getpid() + msg.payload)


async def null_loop(ctx: Context) -> int:
    """Makes ``n`` null syscalls (spec ``n``) and reports how many succeeded."""
    n = int(ctx.spec.get("n", 1000))
    ok = 0
    for _ in range(n):
        await ctx.info()
        ok += 1
    return ok


async def prober(ctx: Context) -> dict[str, Any]:
    """Tries what an untrusted agent should not be able to do; reports each outcome."""
    out: dict[str, Any] = {"pid": os.getpid()}
    try:
        with open("/etc/shadow", "rb") as f:
            f.read(1)
        out["read_outside"] = "allowed"
    except OSError as e:
        out["read_outside"] = f"denied: {e.strerror}"
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", 9))
        finally:
            s.close()
        out["net"] = "allowed"
    except OSError as e:
        out["net"] = f"denied: {e.strerror or e}"
    try:
        await ctx.send(99, b"x")
        out["forged_slot"] = "allowed"
    except AIOSError as e:
        out["forged_slot"] = f"denied: {e.name}"
    return out


async def null_timing(ctx: Context) -> dict[str, float]:
    """Times ``n`` null syscalls (AgentSelf) one by one, then ``n`` pipelined in windows."""
    import time

    from aios.abi.sysno import Sys
    from aios.sandbox.channel import current_client
    from aios.sdk import syscalls as sc

    n = int(ctx.spec.get("n", 5000))
    for _ in range(500):
        await sc.agent_self()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await sc.agent_self()
        lat.append(time.perf_counter_ns() - t0)
    lat.sort()
    out = {"p50": float(lat[n // 2]), "p99": float(lat[n * 99 // 100]), "pipelined": 0.0}
    client = current_client()
    if client is not None:
        window, total = 256, 50_000
        calls = [(int(Sys.AGENT_SELF), ())] * window
        t0 = time.perf_counter_ns()
        for _ in range(total // window):
            client.call_many(calls)
        out["pipelined"] = (total // window) * window / ((time.perf_counter_ns() - t0) / 1e9)
    return out


async def batcher(ctx: Context) -> int:
    """Batched sends and receives through the wire (arrays arrive as tuples there)."""
    await ctx.send_many(ctx.slots.mailbox, [b"m%d" % i for i in range(300)])
    got = 0
    while got < 300:
        got += len(await ctx.recv_many(128))
    return got


async def hold_mutex(ctx: Context) -> None:
    """Locks the mutex granted in slot ``spec["mutex"]`` and keeps it until told to quit."""
    from aios.sdk import syscalls as sc

    await sc.mutex_lock(int(ctx.spec["mutex"]))
    await ctx.send(ctx.slots.parent, b"locked")
    await ctx.recv()


async def timeouts(ctx: Context) -> dict[str, str]:
    """Every blocking syscall with a short timeout, on an otherwise idle kernel.

    Each entry is ``"ok"`` or the error's name; a kernel whose timers do not wake
    its loop never answers some of them (the caller's wait then times out instead).
    """
    from aios.sdk import syscalls as sc

    t = float(ctx.spec.get("timeout", 0.2))
    out: dict[str, str] = {}

    async def attempt(name: str, call: Any) -> None:
        try:
            await call
            out[name] = "ok"
        except AIOSError as e:
            out[name] = e.name

    await attempt("sleep", sc.sleep(t))
    await attempt("ipc_recv", sc.ipc_recv(ctx.slots.mailbox, t))
    await attempt("ipc_recv_batch", sc.ipc_recv_batch(ctx.slots.mailbox, 8, t))
    await attempt("ipc_call", sc.ipc_call(ctx.slots.mailbox, b"to myself, never answered", t))
    await ctx.recv_nowait()  # that call's message, still queued
    sid = await ctx.subscribe("app.timeouts.never")
    await attempt("event_recv", sc.event_recv(sid, t))
    sem = await sc.sem_create(0)
    await attempt("sem_down", sc.sem_down(sem, t))
    mutex, cond = await sc.mutex_create(), await sc.cond_create()
    await sc.mutex_lock(mutex)
    await attempt("cond_wait", sc.cond_wait(cond, mutex, t))
    holder = await ctx.spawn("aios.demos.remote_agents:hold_mutex", caps=[mutex], spec={"mutex": 6})
    await ctx.recv(timeout=60)  # "locked"
    await attempt("mutex_lock", sc.mutex_lock(mutex, t))
    await attempt("wait_child", sc.wait_child(holder.aid, t))
    await ctx.send(holder.ep, b"quit")
    await ctx.wait(holder.aid, timeout=60)
    return out
