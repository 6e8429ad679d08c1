"""How every ``aios`` command prints: one module, so the commands agree.

``-o table`` (the default) is a table fitted to the terminal: columns a
command marks as *wide* are left out and long cells wrap rather than run off
an 80-column screen.  ``-o wide`` prints every column.  ``-o json`` prints
JSON (never a Python repr): ids, digests and hashes whole, so they can be
copied.  Times are shown as local ISO 8601 to the millisecond.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import typer

FORMATS = ("table", "wide", "json")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def check_format(output: str) -> str:
    if output not in FORMATS:
        from aios.abi.errors import InvalidArgument

        raise InvalidArgument(f"-o must be one of {', '.join(FORMATS)}, not {output!r}")
    return output


def cell(v: Any) -> str:
    """A table cell: strings as they are, everything else as JSON."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.hex()
    return json.dumps(v, default=str)


def emit(rows: Any, output: str, columns: list[str] | None = None, title: str = "",
         wide: tuple[str, ...] = ()) -> None:
    """Print ``rows`` (a list of dicts, or one dict as key/value pairs) in ``output`` format;
    ``wide``: columns shown only with ``-o wide``."""
    check_format(output)
    if output == "json":
        typer.echo(json.dumps(rows, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    if isinstance(rows, dict):
        t = Table(title=title or None, show_header=False)
        t.add_column("key", no_wrap=True)
        t.add_column("value", overflow="fold")
        for k, v in rows.items():
            t.add_row(str(k), cell(v))
    else:
        cols = columns or (list(rows[0]) if rows else [])
        if output != "wide":
            cols = [c for c in cols if c not in wide]
        t = Table(title=title or None)
        for col in cols:
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(*(cell(r.get(col)) for col in cols))
    Console(width=None if output == "table" else 10_000).print(t)


def human_time_ns(wall_ns: int) -> str:
    """Local time, ISO 8601 to the millisecond."""
    return datetime.fromtimestamp(wall_ns / 1e9, tz=UTC).astimezone().isoformat(timespec="milliseconds")


def monotonic_to_wall_ns(mono_ns: int) -> int:
    """A kernel timestamp (CLOCK_MONOTONIC of this host) as wall-clock nanoseconds."""
    return time.time_ns() - (time.monotonic_ns() - mono_ns)


def seconds_since(value: str) -> float:
    """``--since``: a duration back from now (``90``, ``30s``, ``5m``, ``2h``, ``1d``) or an ISO time."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
    if m:
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    from aios.abi.errors import InvalidArgument

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"--since takes a duration (30s, 5m, 2h, 1d) or an ISO time, not {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return max(0.0, time.time() - dt.timestamp())


def event_line(ev: dict[str, Any], wide: bool = False) -> str:
    """One event as a line: sequence, local time, topic, source agent, data."""
    when = human_time_ns(monotonic_to_wall_ns(int(ev["time_ns"])))
    if not wide:
        when = when[11:23]  # the time of day: history is recent
    return f"{ev['seq']:>7} {when} {ev['topic']:<28} agent={ev['source']} {json.dumps(ev['data'], default=str)}"


# -- progress ----------------------------------------------------------------------
# Slow work (a benchmark, an image install, a spawn waiting for the daemon) says
# what it is doing on stderr, so stdout stays the result (JSON pipes cleanly);
# ``aios -q`` / ``--quiet`` or ``AIOS_QUIET=1`` silences it.

quiet = False  # set by ``aios -q``


@contextmanager
def progress(what: str) -> Iterator[None]:
    """``what...`` on stderr before the work, ``what: done in N s`` (or ``failed``) after."""
    if quiet or os.environ.get("AIOS_QUIET", "") not in ("", "0"):
        yield
        return
    typer.echo(f"{what}...", err=True)
    t0 = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        typer.echo(f"{what}: {'done' if ok else 'failed'} in {time.monotonic() - t0:.1f} s", err=True)
