"""Running agents in a test and reading what they returned (results keyed by agent id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock


def only(res: dict[int, dict[str, Any]]) -> Any:
    """The exit value of the one agent a run ran; fails the test if that agent faulted."""
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    return r["exit"]


def run_real(*targets: Any, home: Path | None = None, **opts: Any) -> dict[int, dict[str, Any]]:
    """Run agents on a fresh kernel with the real clock (timeouts, processes), then close it."""
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24, home=home)
    try:
        return run_sync(run_async(k, *targets, **opts))  # type: ignore[no-any-return]
    finally:
        k.close()
