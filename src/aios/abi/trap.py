"""The only way into the kernel (curio's ``traps.py``).

A trap is a ``yield`` of ``(sysno, args)`` out of the agent's coroutine.
Whoever drives the coroutine answers it: the kernel itself for in-process
agents, a driver loop that forwards frames for agents in other processes.
The SDK builds every syscall on :func:`trap`; nothing else in an agent's
world may talk to the kernel.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import Any


@types.coroutine
def trap(sysno: int, *args: Any) -> Generator[tuple[int, tuple[Any, ...]], Any, Any]:
    """Execute syscall ``sysno``; returns its result or raises its error."""
    return (yield (sysno, args))
