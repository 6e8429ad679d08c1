"""Where policies live on disk, and how the engine notices they changed.

The engine in :mod:`aios.lib.policy.engine` is sans-IO: it takes a callable that
returns ``{file name: Cedar text}``.  This module is that callable for the
real system, plus the cheap change detector the kernel polls.

* Shipped defaults: ``aios/lib/policy/policies/*.cedar`` inside the package.
* Operator policies: ``$AIOS_HOME/policy/*.cedar`` (``$AIOS_HOME`` defaults to
  ``~/.local/state/aios``).  An operator file with the name of a shipped one *replaces*
  it; any other name adds to the set.  A shipped default is switched off by
  an empty operator file of the same name.

:class:`PolicyWatcher` keeps ``(name, size, mtime_ns)`` of every file; the
kernel calls :meth:`PolicyWatcher.poll` from a timer (every second is plenty)
and it reloads the engine only when that fingerprint moved.  The engine
compares content digests itself, so touching a file without changing it is a
no-op reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aios.abi.home import aios_home
from aios.lib.policy.engine import Emit, PolicyEngine, ReloadResult

DEFAULTS_DIR = Path(__file__).resolve().parent / "policies"


def operator_dir(home: Path | None = None) -> Path:
    return (home or aios_home()) / "policy"


def policy_dirs(home: Path | None = None, *, defaults: bool = True) -> list[Path]:
    """Directories in override order: later ones replace same-named files."""
    dirs = [DEFAULTS_DIR] if defaults else []
    dirs.append(operator_dir(home))
    return dirs


def read_sources(dirs: Sequence[Path]) -> dict[str, str]:
    """``{file name: text}`` of every ``*.cedar`` in ``dirs``, later dirs override."""
    out: dict[str, str] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.cedar")):
            out[p.name] = p.read_text(encoding="utf-8")
    return out


def fingerprint(dirs: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector: name, size and mtime of every policy file."""
    rows: list[tuple[str, int, int]] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.cedar")):
            try:
                st = p.stat()
            except OSError:
                continue
            rows.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(rows)


def load_engine(
    home: Path | None = None, *, emit: Emit | None = None, defaults: bool = True
) -> PolicyEngine:
    """The engine over the shipped defaults and ``$AIOS_HOME/policy``.

    Raises :class:`aios.abi.errors.InvalidArgument` (``detail["errors"]``) if the
    set on disk is invalid: a kernel does not boot on a broken policy.
    """
    dirs = policy_dirs(home, defaults=defaults)
    return PolicyEngine(lambda: read_sources(dirs), emit=emit)


class PolicyWatcher:
    """Reload ``engine`` when the files under ``dirs`` change (mtime/size poll)."""

    def __init__(self, engine: PolicyEngine, dirs: Sequence[Path]) -> None:
        self.engine = engine
        self.dirs = list(dirs)
        self._seen = fingerprint(self.dirs)

    def poll(self) -> ReloadResult | None:
        """``None`` when nothing moved, else the engine's :class:`ReloadResult`."""
        now = fingerprint(self.dirs)
        if now == self._seen:
            return None
        self._seen = now
        return self.engine.reload()
