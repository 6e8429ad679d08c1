"""``aios agent resume ID``: an operator reverses the automated responses on an agent."""

from __future__ import annotations

import json

import typer

NAME = "agent"
app = typer.Typer(help="Operator actions on one agent.", no_args_is_help=True)


@app.command("resume")
def resume(agent: str = typer.Argument(..., metavar="ID|NAME"), output: str = typer.Option("table", "-o", "--output")) -> None:
    """Undo the behavior monitor's responses (unthrottle, resume, regrant) on an agent (by id or name)."""
    from aios.cli.kernel_cmds import _call, _connect, _emit, agent_id

    c = _connect()
    aid = agent_id(c, agent)
    ctl, _ep = _call(c, "AGENT_CONTROL", 2, aid)
    undone = _call(c, "AGENT_RELEASE", ctl)
    if output == "json":
        typer.echo(json.dumps(undone, default=str))
        return
    _emit(undone or [{"response": "none in force"}], output, title=f"agent {aid}: responses reversed")
