"""The pure renderer behind ``aios sched``."""

from __future__ import annotations

from rich.console import Console

from aios.cli.sched import render_sched_table
from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import Scheduler


def test_render_sched_table_from_real_stats() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    a = sched.new_entity(7, None)
    b = sched.new_entity(8, None)
    sched.set_fair(a, nice=5)
    sched.set_deadline(b, runtime_ns=1_000_000, deadline_ns=5_000_000, period_ns=10_000_000)
    sched.wake(a)
    sched.wake(b)
    cur = sched.pick()
    assert cur is b
    clock.advance(250_000)
    sched.charge(cur, 250_000)
    rows = [dict(sched.stats(a), name="alpha"), sched.stats(b)]
    table = render_sched_table(rows)
    assert table.row_count == 2
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    assert "alpha" in text and "335 (nice 5)" in text
    assert "deadline 1.000 ms/10.000 ms" in text
    assert "0.250 ms" in text  # b's runtime


def test_render_missing_fields() -> None:
    table = render_sched_table([{"key": 1}])
    console = Console(width=200, record=True)
    console.print(table)
    assert "-" in console.export_text()
