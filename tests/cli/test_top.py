"""`aios top`: the pure model (shares, sorting, filtering), then the Textual app driven by its
pilot against a real daemon: it shows the agents, sorts, filters, kills one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aios.cli.tui.model import SORT_KEYS, TopModel, human_bytes


def agent(aid: int, name: str, state: str = "blocked", kind: str = "inproc", **kw: Any) -> dict[str, Any]:
    return {"aid": aid, "name": name, "parent": 1, "state": state, "kind": kind, **kw}


def test_model_cpu_share_is_runtime_over_interval() -> None:
    m = TopModel()
    agents = [agent(1, "init"), agent(2, "busy", "ready", mailbox=3, memory=8192), agent(3, "idle")]
    m.update(agents, [{"aid": 2, "class": "fair", "weight": 1024, "runtime_ns": 1_000},
                      {"aid": 3, "class": "fair", "weight": 2048, "runtime_ns": 500}], {"runnable": 1}, 10_000)
    assert [r.share for r in m.rows()] == [None, None]  # first refresh: no interval yet
    m.update(agents, [{"aid": 2, "class": "fair", "weight": 1024, "runtime_ns": 501_000},
                      {"aid": 3, "class": "fair", "weight": 2048, "runtime_ns": 500}], {"runnable": 1}, 1_010_000)
    rows = m.rows()
    assert [(r.aid, r.share) for r in rows] == [(2, 0.5), (3, 0.0)]  # init is not shown
    assert rows[0].mailbox == 3 and rows[0].memory == 8192 and rows[1].weight == 2048
    (fair,) = m.classes()
    assert fair.name == "fair" and fair.agents == 2 and fair.runnable == 1 and fair.share == 0.5
    assert m.runqueue == 1


def test_model_sorts_and_filters() -> None:
    m = TopModel()
    m.update([agent(5, "echo", mailbox=1), agent(3, "zeta", mailbox=9, kind="isolated"), agent(4, "alpha")],
             [], {}, 1)
    assert m.sort == "cpu"
    seen = [m.sort]
    while m.cycle_sort() != "cpu":
        seen.append(m.sort)
    assert tuple(seen) == SORT_KEYS
    m.sort = "mailbox"
    assert [r.aid for r in m.rows()] == [3, 5, 4]  # biggest first
    m.reverse = True
    assert [r.aid for r in m.rows()] == [4, 5, 3]
    m.sort, m.reverse = "name", False
    assert [r.name for r in m.rows()] == ["alpha", "echo", "zeta"]
    m.filter = "ISO"
    assert [r.aid for r in m.rows()] == [3]
    m.filter = "4"
    assert [r.aid for r in m.rows()] == [4]
    assert human_bytes(512) == "512 B" and human_bytes(3 * 1024 * 1024) == "3.0 MiB"


# -- the app against a real daemon ---------------------------------------------------------


def aios(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOS_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "aios.cli.main", *args], env=env, capture_output=True,
                       text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"aios {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture
def daemon(tmp_path: Path):
    home = tmp_path / "home"
    aios(home, "up", "-d")
    yield home
    aios(home, "down", check=False)


async def until(pilot: Any, cond: Any, what: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def test_top_shows_sorts_filters_and_kills(daemon: Path) -> None:
    from aios.cli.tui.app import TopApp
    from aios.cli.tui.source import DaemonSource
    from aios.daemon import socket_path

    ids = {}
    for name in ("zulu", "alpha"):
        ids[name] = json.loads(aios(daemon, "spawn", "aios.demos.remote_agents:echo", "--name", name,
                                    "-o", "json").stdout)["aid"]
    source = DaemonSource(socket_path(daemon))
    app = TopApp(source, interval=3600)  # refreshed by hand and after each action

    def names() -> list[str]:
        t = app.query_one("#agents")
        return [str(t.get_row_at(i)[1]) for i in range(t.row_count)]

    async def drive() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: {"zulu", "alpha"} <= set(names()), "the agents")
            for _ in SORT_KEYS:
                if app.model.sort == "name":
                    break
                await pilot.press("s")
            assert app.model.sort == "name"
            got = [n for n in names() if n in ("zulu", "alpha")]
            assert got == ["alpha", "zulu"]
            await pilot.press("S")
            assert [n for n in names() if n in ("zulu", "alpha")] == ["zulu", "alpha"]
            await pilot.press("slash", *"alpha", "enter")
            assert names() == ["alpha"]
            await pilot.press("k")  # the cursor is on the only row: alpha
            await until(pilot, lambda: "killed" in app.message, "the kill")
            await pilot.press("escape")
            await app.refresh_data()
            row = next(r for r in app.model.rows() if r.aid == ids["alpha"]) if any(
                r.aid == ids["alpha"] for r in app.model.rows()) else None
            assert row is None or row.state in ("zombie", "dead")
            assert any(r.aid == ids["zulu"] and r.state not in ("zombie", "dead") for r in app.model.rows())
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        source.close()
    rows = json.loads(aios(daemon, "ps", "-o", "json").stdout)
    states = {r["aid"]: r["state"] for r in rows}
    assert states.get(ids["alpha"]) in (None, "zombie", "dead") and states[ids["zulu"]] != "zombie"
