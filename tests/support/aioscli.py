"""The ``aios`` command line, run as a subprocess against one ``$AIOS_HOME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def aios(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``aios ARGS`` with ``AIOS_HOME=home`` (no debug tracebacks); with ``check``, exit 0 or fail."""
    env = {**os.environ, "AIOS_HOME": str(home)}
    env.pop("AIOS_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "aios.cli.main", *args], env=env, capture_output=True,
                       text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"aios {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r
