"""The agents of the shipped service units: health checks of the kernel-module services.

memoryd, semantic-ipcd, identityd and the agent supervisor are kernel modules, installed by
the boot steps; their units' agents are what initd supervises.  Each checks that its service
answers its syscalls (the service's handler ran: it returned, or refused the probe's bad
argument with its own error; a missing module is ``NoSuchSyscall`` or ``NoSuchObject``), makes
the ready call (``READY=1``) once it does, and pets the watchdog (``WATCHDOG=1``) three times
per ``WatchdogSec`` for as long as it keeps answering.  A service that stops answering makes
its agent exit 1, and the unit's ``Restart=`` decides.  Stopping a unit stops its checks, not
the module in the kernel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aios.abi.errors import AIOSError, NoSuchObject, NoSuchSyscall
from aios.abi.sysno import Sys
from aios.abi.trap import trap
from aios.sdk import Context
from aios.sdk import syscalls as sc

Probe = Callable[[], Awaitable[Any]]


async def _answers(probe: Probe) -> bool:
    try:
        await probe()
    except (NoSuchSyscall, NoSuchObject):
        return False
    except AIOSError:
        return True  # the service's handler refused the probe's argument: it is there
    return True


async def _serve(ctx: Context, probe: Probe) -> int:
    if not await _answers(probe):
        return 1
    await sc.unit_notify("READY=1")
    wd = ctx.spec.get("watchdog_s") or 30.0
    while True:
        await ctx.sleep(float(wd) / 3)
        if not await _answers(probe):
            return 1
        await sc.unit_notify("WATCHDOG=1")


async def identityd(ctx: Context) -> int:
    return await _serve(ctx, lambda: sc.agent_identity(0))


async def memoryd(ctx: Context) -> int:
    return await _serve(ctx, lambda: trap(int(Sys.MEMD_DELETE), -1, ""))


async def semantic_ipcd(ctx: Context) -> int:
    return await _serve(ctx, lambda: sc.semantic_open(-1))


async def agentsupervisor(ctx: Context) -> int:
    await sc.agent_supervisor_register(ctx.slots.authority)
    return await _serve(ctx, sc.kernel_stats)
