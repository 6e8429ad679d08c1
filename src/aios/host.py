"""Hosting a kernel in this process: boot it, start agents, run to completion.

This is the bootloader's side of the system, used by ``aios run``, ``aios
demo``, the benchmarks and the user tests.  Agents never import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aios.boot import BootConfig, boot
from aios.kernel.agents import Agent
from aios.kernel.clock import Clock, MonotonicClock
from aios.kernel.kernel import Kernel
from aios.kernel.lifecycle import SpawnPlan, spawn
from aios.sdk.agent import load_entry
from aios.sdk.context import entry_for


def start_kernel(*, clock: Clock | None = None, arena_bytes: int | None = None, **kw: Any) -> Kernel:
    """Boot a kernel in this process (``kw``: further :class:`BootConfig` fields, e.g. ``home``)."""
    cfg = BootConfig(clock=clock or MonotonicClock(), loader=load_entry, **kw)
    if arena_bytes is not None:
        cfg.arena_bytes = arena_bytes
    return boot(cfg)


def spawn_root(k: Kernel, target: Any, **opts: Any) -> Agent:
    """Start ``target`` as a child of init, with init's authority narrowed by ``opts``."""
    plan = SpawnPlan(k.init, k.root_authority, opts)
    a, _ctl, _ep = spawn(k, k.init, k.root_authority, entry_for(target), plan)
    return a


def results(k: Kernel, agents: list[Agent]) -> dict[int, dict[str, Any]]:
    return {
        a.aid: {"name": a.name, "state": a.status.value, "exit": a.exit_status, "fault": a.fault}
        for a in agents
    }


async def run_async(k: Kernel, *targets: Any, **opts: Any) -> dict[int, dict[str, Any]]:
    agents = [spawn_root(k, t, **opts) for t in targets]
    try:
        await k.run(until_idle=True)
    finally:
        await k.executors.close()  # processes and channels belong to this event loop
    return results(k, agents)


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def run(*targets: Any, clock: Clock | None = None, arena_bytes: int | None = 1 << 28, **opts: Any) -> dict[int, dict[str, Any]]:
    """Boot a kernel, run ``targets`` as root agents until idle, shut down, return their results."""
    k = start_kernel(clock=clock, arena_bytes=arena_bytes)
    try:
        return run_sync(run_async(k, *targets, **opts))  # type: ignore[no-any-return]
    finally:
        k.close()
