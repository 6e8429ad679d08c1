"""``aios run FILE.py`` and ``aios demo``: boot a kernel in this process and run agents."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import typer

TOUR_RIGHTS = ["SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY", "SUPERVISOR"]
TEAM_RIGHTS = [*TOUR_RIGHTS, "SEMANTIC_SEND"]
RUN_RIGHTS = TEAM_RIGHTS  # what docs/memory.md's examples need: namespaces, sharing, sending by meaning
_LACKS = re.compile(r"lacks ([A-Z_]+(?:, [A-Z_]+)*)")


def root_rights(add: list[str], only: list[str]) -> list[str]:
    """The root agents' rights: the defaults plus ``--right``, or exactly ``--only-right``."""
    from aios.abi.errors import InvalidArgument
    from aios.abi.rights import RIGHT_NAMES

    chosen = [r.upper() for r in only] if only else [*RUN_RIGHTS, *(r.upper() for r in add)]
    unknown = [r for r in chosen if r not in RIGHT_NAMES]
    if unknown:
        raise InvalidArgument(f"unknown right {', '.join(unknown)} (rights: {', '.join(RIGHT_NAMES)})")
    return list(dict.fromkeys(chosen))


def missing_right_hints(results: dict[int, dict[str, Any]], file: str, flag: str = "--right") -> list[str]:
    """For each fault that names a right the agent lacked, the flag that grants it."""
    hints = []
    for aid, r in results.items():
        m = _LACKS.search(r["fault"] or "")
        if m:
            flags = " ".join(f"{flag} {x}" for x in m.group(1).split(", "))
            hints.append(f"agent {aid} ({r['name']}) lacked {m.group(1)}: `aios run {flags} {file}` grants it")
    return hints


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


def _print_results(results: dict[int, dict[str, Any]], output: str = "table") -> None:
    import json

    from aios.cli.output import emit

    def shown(v: Any) -> Any:  # a table shows the value as JSON: a string keeps its quotes
        return v if output == "json" else json.dumps(v, default=repr)

    rows = [{"id": aid, "name": r["name"], "state": r["state"], "exit status": shown(r["exit"]), "fault": r["fault"]}
            for aid, r in results.items()]
    emit(rows, output, ["id", "name", "state", "exit status", "fault"], "agents")


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="a Python file defining agents"),
        rights: list[str] = typer.Option([], "--right", help=f"add a right to the defaults ({', '.join(RUN_RIGHTS)})"),
        only: list[str] = typer.Option([], "--only-right", help="give exactly these rights (repeat the flag)"),
        output: str = typer.Option("table", "-o", "--output", help="table, wide or json"),
    ) -> None:
        """Boot a kernel in-process, run the agents in FILE, print their exit statuses."""
        from aios.host import run

        granted = root_rights(rights, only)
        results = run(*_agents_in(file), rights=granted, arena_bytes=1 << 28)
        _print_results(results, output)
        flag = "--only-right" if only else "--right"
        for hint in missing_right_hints(results, str(file), flag):
            typer.echo(f"hint: {hint}", err=True)
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
