"""``aios unit ls|status|start|stop|restart|reset-failed|cat`` (systemctl) and ``aios logs``
(journalctl): initd's units and what the kernel says about a unit or an agent."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

NAME = "unit"
app = typer.Typer(help="initd's units: systemctl's verbs.", no_args_is_help=True)
OutputOpt = typer.Option("table", "-o", "--output", help="table or json")
COLUMNS = ["unit", "state", "sub", "result", "job", "restarts", "agent", "description"]


def _client() -> Any:
    from aios.cli.kernel_cmds import _connect

    return _connect()


def _ctl(op: str, name: str | None, output: str) -> None:
    from aios.cli.kernel_cmds import _call, _emit

    rows = _call(_client(), "UNIT_CTL", 2, op, name)
    _emit(rows, output, COLUMNS, f"unit {op}")


@app.command("ls")
def ls(output: str = OutputOpt) -> None:
    """Every unit and its state."""
    from aios.cli.kernel_cmds import _call, _emit

    _emit(_call(_client(), "UNIT_LIST"), output, COLUMNS, "units")


@app.command("status")
def status(name: str, output: str = OutputOpt) -> None:
    """One unit: state, result, restarts, its agent and its recent log lines."""
    from aios.cli.kernel_cmds import _call

    (row,) = _call(_client(), "UNIT_LIST", name)
    if output == "json":
        typer.echo(json.dumps(row, default=str))
        return
    typer.echo(f"{row['unit']} - {row['description']}\n  source: {row['source']}\n"
               f"  active: {row['state']} ({row['sub']}) result {row['result']}, "
               f"restarts {row['restarts']}, agent {row['agent'] or '-'}")  # fmt: skip
    for t, line in row["log"]:
        typer.echo(f"  {_ts(t)} {line}")


@app.command("start")
def start(name: str, output: str = OutputOpt) -> None:
    """Start a unit (and what it requires or wants)."""
    _ctl("start", name, output)


@app.command("stop")
def stop(name: str, output: str = OutputOpt) -> None:
    """Stop a unit (and what requires it, binds to it or is part of it)."""
    _ctl("stop", name, output)


@app.command("restart")
def restart(name: str, output: str = OutputOpt) -> None:
    _ctl("restart", name, output)


@app.command("reset-failed")
def reset_failed(name: str = typer.Argument(None), output: str = OutputOpt) -> None:
    """Forget a failure and the start-limit count (every unit without a name)."""
    _ctl("reset-failed", name, output)


@app.command("cat")
def cat(name: str) -> None:
    """A unit's file."""
    from aios.cli.kernel_cmds import _call

    d = _call(_client(), "UNIT_CAT", name)
    typer.echo(f"# {d['source']}\n{d['text']}")


def _ts(t_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_ns / 1e9)) + f".{t_ns % 10**9 // 10**6:03d}"


def register(root: typer.Typer) -> None:
    @root.command("logs")
    def logs(
        what: str = typer.Argument(..., help="a unit name or an agent id"),
        follow: bool = typer.Option(False, "-f", "--follow", help="then follow the kernel's events about it"),
    ) -> None:
        """What the kernel recorded about a unit (initd's lines) or an agent (its record, exit
        status and fault, and its unit's lines), with timestamps; -f follows its events."""
        from aios.abi.errors import AIOSError
        from aios.cli.kernel_cmds import _call

        c = _client()
        aid = int(what) if what.isdigit() else 0
        unit = "" if aid else what
        if aid:
            live = [r for r in _call(c, "AGENT_LIST", 2) if r["aid"] == aid]
            try:
                gone = [r for r in c.call(int(_sys("AGENT_HISTORY")), (2,)) if r["aid"] == aid]
            except AIOSError:
                gone = []
            for r in live + gone:
                typer.echo(f"agent {aid} ({r['name']}): {r['state']}"
                           + (f", exit {r.get('exit')!r}, {r.get('fault')}" if r in gone else ""))
            for u in _call(c, "UNIT_LIST"):
                if u["agent"] == aid:
                    unit = u["unit"]
            if not live and not gone and not unit:
                typer.echo(f"no agent {aid} is known to the kernel", err=True)
                raise typer.Exit(1)
        if unit:
            (row,) = _call(c, "UNIT_LIST", unit)
            for t, line in row["log"]:
                typer.echo(f"{_ts(t)} {unit}: {line}")
        if not follow:
            return
        sid = _call(c, "EVENT_SUBSCRIBE", 4, "**", {"depth": 65536})
        while True:
            ev = _call(c, "EVENT_RECV", sid, None)
            data = ev.get("data", {})
            if (aid and (ev.get("source") == aid or data.get("agent") == aid)) or (unit and data.get("unit") == unit):
                typer.echo(f"{_ts(ev.get('time_ns', time.time_ns()))} {ev['topic']} {json.dumps(data, default=str)}")


def _sys(name: str) -> int:
    from aios.abi.sysno import Sys

    return int(Sys[name])
