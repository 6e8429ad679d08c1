"""Where the node keeps its state: ``$AIOS_HOME`` (one rule for every caller).

An explicit argument wins; then ``$AIOS_HOME`` when set and non-empty; else
``./.aios``.  An empty ``AIOS_HOME=`` means "not set" (a shell that exports
an empty variable must not put keys in the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".aios"


def aios_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory (not resolved, not created)."""
    return Path(home or os.environ.get("AIOS_HOME") or DEFAULT_HOME)
