"""Shared fixtures: a kernel on a virtual clock, and a runner for SDK-only tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TESTDATA = SHARED / "testdata"


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26)
    yield k
    k.close()


@pytest.fixture
def run_agents(kernel: Kernel) -> Any:
    """``run_agents(fn, ...)`` runs agents as children of init until idle; returns results by aid."""

    def _run(*targets: Any, **opts: Any) -> dict[int, dict[str, Any]]:
        return run_sync(run_async(kernel, *targets, **opts))  # type: ignore[no-any-return]

    return _run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "aios-home"))
    return tmp_path / "aios-home"
