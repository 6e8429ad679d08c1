"""Where the node keeps its state: ``$AIOS_HOME`` (one rule for every caller).

An explicit argument wins; then ``$AIOS_HOME`` when set and non-empty; else a
per-user directory following the XDG base directory convention for state:
``$XDG_STATE_HOME/aios``, ``~/.local/state/aios`` when that is unset (or, as
the convention says, not an absolute path).  An empty ``AIOS_HOME=`` means
"not set": a shell that exports an empty variable must not put keys in the
current directory.  ``aios home`` prints the one in use and where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

FALLBACK_HOME = ".aios"  # only when the user has no home directory at all


def default_home() -> Path:
    """The per-user home used when ``$AIOS_HOME`` is not set."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    if state and os.path.isabs(state):
        return Path(state) / "aios"
    try:
        return Path.home() / ".local" / "state" / "aios"
    except (RuntimeError, KeyError):  # no $HOME and no password entry
        return Path(FALLBACK_HOME)


def home_source(home: str | os.PathLike[str] | None = None) -> str:
    """Which rule chose the home: ``argument``, ``AIOS_HOME`` or ``XDG_STATE_HOME`` / ``default``."""
    if home:
        return "argument"
    if os.environ.get("AIOS_HOME"):
        return "AIOS_HOME"
    state = os.environ.get("XDG_STATE_HOME") or ""
    return "XDG_STATE_HOME" if state and os.path.isabs(state) else "default"


def aios_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory (not resolved, not created)."""
    return Path(home or os.environ.get("AIOS_HOME") or default_home())
