"""Agents meant to run outside the kernel process (isolated or worker executors).

Entry points are named ``aios.demos.remote_agents:<name>``; the executors import
them in the agent's own process.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from aios.errors import AIOSError
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
