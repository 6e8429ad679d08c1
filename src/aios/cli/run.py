"""``aios run FILE.py`` and ``aios demo``: boot a kernel in this process and run agents."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import typer

TOUR_RIGHTS = ["SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY", "SUPERVISOR"]
TEAM_RIGHTS = [*TOUR_RIGHTS, "SEMANTIC_SEND"]


def _agents_in(path: Path) -> list[Any]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    if hasattr(mod, "AGENTS"):
        return list(mod.AGENTS)
    if inspect.iscoroutinefunction(getattr(mod, "main", None)):
        return [mod.main]
    raise typer.BadParameter(f"{path} defines neither AGENTS nor an async main(ctx)")


def _print_results(results: dict[int, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="agents")
    for col in ("id", "name", "state", "exit status", "fault"):
        t.add_column(col)
    for aid, r in results.items():
        t.add_row(str(aid), r["name"], r["state"], repr(r["exit"])[:60], r["fault"] or "")
    Console().print(t)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="a Python file defining agents"),
        rights: list[str] = typer.Option(TOUR_RIGHTS, "--right", help="rights of the root agents"),
    ) -> None:
        """Boot a kernel in-process, run the agents in FILE, print their exit statuses."""
        from aios.host import run

        results = run(*_agents_in(file), rights=rights, arena_bytes=1 << 28)
        _print_results(results)
        if any(r["fault"] for r in results.values()):
            raise typer.Exit(1)

    @app.command("demo")
    def demo_cmd() -> None:
        """The main job: a multi-agent workload that shows the system at work."""
        from aios.demos import team, tour
        from aios.host import run

        print("AIOS demo: one kernel, in this process; every agent below is an AIOS process.\n")
        results = run(tour.main, rights=TOUR_RIGHTS, name="tour", arena_bytes=1 << 28)
        _print_results(results)
        if any(r["fault"] for r in results.values()):
            raise typer.Exit(1)
        results = run(team.main, rights=TEAM_RIGHTS, name="team", arena_bytes=1 << 28)
        _print_results(results)
        if any(r["fault"] for r in results.values()):
            raise typer.Exit(1)
        from aios.demos import minds

        results = run(minds.main, rights=minds.MINDS_RIGHTS, name="minds", arena_bytes=1 << 28)
        _print_results(results)
        if any(r["fault"] for r in results.values()):
            raise typer.Exit(1)
