"""Shared fixtures for the security tests: where the conformance data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def testdata_dir() -> Path:
    """``../shared/testdata`` beside the repository (``$AIOS_TESTDATA`` overrides)."""
    env = os.environ.get("AIOS_TESTDATA")
    return Path(env) if env else REPO / ".." / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    d = testdata_dir()
    if not (d / "README.md").exists():
        pytest.skip(f"conformance data not found at {d} (clone the repo next to shared/testdata)")
    return d
