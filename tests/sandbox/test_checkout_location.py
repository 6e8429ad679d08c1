"""Where a user puts the checkout must not matter (finding 7 of the robustness review).

A fresh clone under ``/tmp`` failed ``make test``: in a directory an agent's
uid may not traverse (``mktemp -d`` makes it 0700), an isolated agent imports
its own module through a directory descriptor (``sandbox/importer.py``), and
the advisory audit hook resolved that descriptor-relative path against the
working directory and reported an ``fs`` event for the agent's own code.

This test copies the checkout (``src``, ``tests``, ``pyproject.toml``) into a
fresh ``tempfile.mkdtemp()`` directory and runs the isolation tests there,
with ``aios`` imported from the copy.  The location-sensitive tests run in the
default suite; the whole file is ``slow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.isolation
LOCATION_SENSITIVE = "unheld_slot or hello_and_home or well_behaved_agent_runs or exception_becomes"


def copy_checkout() -> Path:
    top = Path(tempfile.mkdtemp(prefix="aios-clone-"))  # 0700: agents' uids cannot traverse it
    dest = top / "aios"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache",
                                    ".ruff_cache", ".hypothesis", "*.egg-info")
    for part in ("src", "tests"):
        shutil.copytree(REPO / part, dest / part, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.mark.parametrize("select", [LOCATION_SENSITIVE, pytest.param("", marks=pytest.mark.slow)],
                         ids=["location-sensitive", "whole-file"])
def test_isolation_tests_pass_in_a_copy_under_tmp(select: str) -> None:
    dest = copy_checkout()
    try:
        assert str(dest).startswith(tempfile.gettempdir())
        assert (dest.parent.stat().st_mode & 0o777) == 0o700
        env = {**os.environ, "PYTHONPATH": str(dest / "src")}
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
               "tests/sandbox/test_isolation.py"]
        if select:
            cmd += ["-k", select]
        r = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        check = subprocess.run([sys.executable, "-c", "import aios; print(aios.__file__)"], cwd=dest,
                               env=env, capture_output=True, text=True, timeout=60)
        assert check.stdout.strip().startswith(str(dest)), check  # the copy's code was tested
    finally:
        shutil.rmtree(dest.parent, ignore_errors=True)
