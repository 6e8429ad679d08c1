"""Rendering for ``aios sched``: per-agent scheduling statistics as a table.

The command itself needs the kernel's scheduling-statistics syscall, which the
kernel wiring provides; this module holds the pure part: rows in (one dict per
agent, as returned by ``Scheduler.stats``), a :class:`rich.table.Table` out.
It defines no ``app``, so the CLI does not mount it until the command exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

# (header, key, formatter)
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("agent", "key", "int"),
    ("name", "name", "str"),
    ("class", "class", "class"),
    ("state", "state", "str"),
    ("weight", "weight", "weight"),
    ("slice", "slice_ns", "ms"),
    ("vruntime", "vruntime", "ms"),
    ("lag", "lag_ns", "ms"),
    ("runtime", "runtime_ns", "ms"),
    ("waits", "waits", "int"),
    ("wait", "wait_ns", "ms"),
    ("throttles", "throttles", "int"),
)


def _ms(v: Any) -> str:
    return f"{v / 1e6:,.3f} ms" if isinstance(v, int | float) else "-"


def _cell(row: Mapping[str, Any], key: str, kind: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    if kind == "ms":
        return _ms(v)
    if kind == "class":
        eff = row.get("effective_class")
        s = str(v)
        if row.get("boosted"):
            s += f" (boosted: {eff})" if eff and eff != v else " (boosted)"
        if row.get("throttled"):
            s += " throttled"
        if v == "deadline" and "dl_runtime_ns" in row:
            s += f" {_ms(row['dl_runtime_ns'])}/{_ms(row['dl_period_ns'])}"
        return s
    if kind == "weight":
        s = str(v)
        eff = row.get("effective_weight")
        if eff is not None and eff != v:
            s += f" -> {eff}"
        if "nice" in row:
            s += f" (nice {row['nice']})"
        return s
    return str(v)


# Left out of the 80-column table; ``-o wide`` shows them.
WIDE: tuple[str, ...] = ("slice", "vruntime", "waits", "wait", "throttles")


def sched_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The table's cells, one dict per agent keyed by column header, sorted by class then key."""
    return [{header: _cell(row, key, kind) for header, key, kind in _COLUMNS}
            for row in sorted(rows, key=lambda r: (str(r.get("class", "")), r.get("key", 0)))]


def print_sched(rows: Sequence[Mapping[str, Any]], output: str) -> None:
    """``aios sched -o table|wide|json``: JSON is the kernel's rows as they came."""
    from aios.cli.output import emit

    if output == "json":
        emit(list(rows), output)
        return
    emit(sched_rows(rows), output, [h for h, _, _ in _COLUMNS], "scheduler", wide=WIDE)


def render_sched_table(rows: Sequence[Mapping[str, Any]], title: str = "scheduler") -> Table:
    """One row per agent; missing fields print as ``-``."""
    from rich.table import Table  # heavy: imported when rendering, not at CLI start
    table = Table(title=title)
    for header, _, kind in _COLUMNS:
        table.add_column(header, justify="right" if kind in ("int", "ms") else "left")
    for row in sorted(rows, key=lambda r: (str(r.get("class", "")), r.get("key", 0))):
        table.add_row(*(_cell(row, key, kind) for _, key, kind in _COLUMNS))
    return table
