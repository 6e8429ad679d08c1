"""``aios top``: a live table of agents and a scheduler pane, in Textual.

Every ``interval`` seconds the app takes a snapshot from its source (the
daemon, off the event loop), feeds it to a :class:`~aios.cli.tui.model.TopModel`
and redraws.  Keys: ``s`` next sort column, ``S`` reverse it, ``/`` filter
(Enter applies, Escape clears), ``k`` kill, ``z`` suspend, ``r`` resume the
agent under the cursor, ``q`` quit.  An action's result or error is shown in
the status line; the table is refreshed right after it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Input, Static

from aios.abi.errors import AIOSError
from aios.cli.tui.model import AgentRow, TopModel, human_bytes

COLUMNS = ("aid", "name", "state", "executor", "class", "weight", "cpu", "mailbox", "memory", "syscalls")


def _share(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:5.1f}%"


def _cells(r: AgentRow) -> tuple[str, ...]:
    return (str(r.aid), r.name, r.state, r.executor, r.sched_class, "-" if r.weight is None else str(r.weight),
            _share(r.share), str(r.mailbox), human_bytes(r.memory), str(r.syscalls))


class TopApp(App[None]):
    TITLE = "aios top"
    CSS = """
    #sched { height: auto; padding: 0 1; color: $text-muted; }
    #filter { display: none; }
    #filter.shown { display: block; }
    #status { height: 1; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("s", "cycle_sort", "sort"),
        Binding("S", "reverse_sort", "reverse"),
        Binding("slash", "filter", "filter"),
        Binding("k", "act('kill')", "kill"),
        Binding("z", "act('suspend')", "suspend"),
        Binding("r", "act('resume')", "resume"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self, source: Any, interval: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.model = TopModel()
        self.refreshes = 0  # snapshots applied (tests wait on it)
        self.message = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="sched")
        yield Input(placeholder="filter: id, or part of a name, state, executor or class", id="filter")
        yield DataTable(id="agents", cursor_type="row", zebra_stripes=True)
        yield Static(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one("#agents", DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        table.focus()  # keys go to the table; the filter box takes them only when opened
        await self.refresh_data()
        self.set_interval(self.interval, self.refresh_data)

    async def refresh_data(self) -> None:
        try:
            agents, sched, stats, t = await asyncio.to_thread(self.source.snapshot)
        except (AIOSError, OSError) as e:
            self.message = f"cannot read the kernel: {e}"
            self._draw_status()
            return
        self.model.update(agents, sched, stats, t)
        self.refreshes += 1
        self._draw()

    def selected_aid(self) -> int | None:
        table = self.query_one("#agents", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(str(key.value)) if key.value is not None else None

    def _draw(self) -> None:
        table = self.query_one("#agents", DataTable)
        keep = self.selected_aid()
        rows = self.model.rows()
        table.clear()
        for r in rows:
            table.add_row(*_cells(r), key=str(r.aid))
        if keep is not None:
            for i, r in enumerate(rows):
                if r.aid == keep:
                    table.move_cursor(row=i)
                    break
        m = self.model
        classes = "  ".join(
            f"{c.name}: {c.agents} agents, {c.runnable} runnable, cpu {_share(c.share).strip()}" for c in m.classes())
        self.query_one("#sched", Static).update(
            f"scheduler: run queue {m.runqueue}, {m.agents_live} agents live | {classes}")
        self._draw_status()

    def _draw_status(self) -> None:
        m = self.model
        arrow = "asc" if (m.sort in ("cpu", "mailbox", "memory")) == m.reverse else "desc"
        filt = f", filter {m.filter!r}" if m.filter else ""
        self.query_one("#status", Static).update(f"sort {m.sort} ({arrow}){filt}  {self.message}")

    # -- keys --------------------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        self.model.cycle_sort()
        self._draw()

    def action_reverse_sort(self) -> None:
        self.model.reverse = not self.model.reverse
        self._draw()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.model.filter
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.model.filter = ""
        self.query_one("#agents", DataTable).focus()
        self._draw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.model.filter = event.value
        event.input.remove_class("shown")
        self.query_one("#agents", DataTable).focus()
        self._draw()

    async def action_act(self, action: str) -> None:
        aid = self.selected_aid()
        if aid is None:
            return
        try:
            self.message = await asyncio.to_thread(self.source.act, action, aid)
        except AIOSError as e:
            self.message = f"{action} {aid}: {e}"
        await self.refresh_data()
