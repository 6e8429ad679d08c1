"""``aios ask "TEXT"``: send an intent through semantic-ipcd and print the route and reply."""

from __future__ import annotations

import json
from typing import Any

import typer

from aios.abi.errors import AIOSError, NoSuchObject
from aios.abi.sysno import Sys

# What a user on a fresh daemon is told: ``aios ask`` routes to skill agents,
# and none ship running.  The recipe is the one tests/cli/test_mem_cli.py runs.
START_HINT = (
    "No skill agent is running on this kernel yet; start one, e.g. the demo forecaster:\n"
    "  aios mem put notes hello && aios spawn aios.demos.team:Forecaster --name wx -o json\n"
    "  aios mem share notes wx --rights READ,WRITE && aios send wx start\n"
    "or your own SkillAgent subclass with `aios spawn FILE.py:Class` (docs/memory.md); "
    "`aios skills ls` lists what is registered"
)

def _plain(v: Any) -> Any:
    from aios.sdk.semantic import decode

    return decode(v)


def register(app: typer.Typer) -> None:
    @app.command("ask")
    def ask(
        text: str = typer.Argument(..., help="what you want, in words"),
        payload: str = typer.Option("", "--payload", help="a JSON payload for the skill"),
        broadcast: bool = typer.Option(False, "--broadcast", help="every agent above the threshold"),
        explain: bool = typer.Option(False, "--explain", help="show the decision, deliver nothing"),
        timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the reply"),
        choose: str = typer.Option("", "--choose", help="the skill you pick after an ambiguous answer"),
        output: str = typer.Option("table", "-o", "--output", help="table or json"),
    ) -> None:
        """Route TEXT by meaning to the agent whose skill it matches; print the route and the reply."""
        from aios.cli.kernel_cmds import _call, _connect

        data = None
        if payload:
            try:
                data = json.loads(payload)
            except ValueError as e:
                raise typer.BadParameter(f"--payload is not JSON: {e}") from None
        c = _connect()
        svc = _call(c, "SEMANTIC_OPEN", 2)
        opts: dict[str, Any] = {"timeout": timeout}
        if broadcast:
            opts["broadcast"] = True
        if explain:
            opts["explain"] = True
        if choose:
            opts["choose"] = choose
        try:
            handle = c.call(int(Sys.INTENT_SEND), (svc, text, data, opts))
            r = c.call(int(Sys.GET_ASYNC_RESULT), (handle, timeout + 60))
        except AIOSError as e:
            typer.echo(f"error: {e}", err=True)
            if isinstance(e, NoSuchObject) and "no skills registered" in e.message:
                typer.echo(START_HINT, err=True)
            raise typer.Exit(1) from None
        if "reply" in r:
            r["reply"] = _plain(r["reply"])
        for row in r.get("replies", []):
            if "reply" in row:
                row["reply"] = _plain(row["reply"])
        if output == "json":
            typer.echo(json.dumps(r, default=str))
            return
        typer.echo(f"intent: {r['intent']!r}  ({r['mode']}; {r['reason']})")
        for t in r["targets"]:
            typer.echo(f"route:  -> agent {t['agent']} skill {t['skill']} score {t['score']:.3f}")
        near = ", ".join(f"{n['skill']}@{n['agent']} {n['score']:.3f}" for n in r["nearest"])
        typer.echo(f"scores: {near}")
        if r.get("ambiguous"):
            typer.echo("ambiguous: which one did you mean? (ask again with --choose SKILL)")
            for c_ in r["candidates"]:
                typer.echo(f"  {c_['skill']} (agent {c_['agent']}, score {c_['score']:.2f})")
        if r.get("error"):
            typer.echo(f"would fail: {r['error']}")
        if "reply" in r:
            typer.echo(f"reply:  {json.dumps(r['reply'], default=str)}")
        for row in r.get("replies", []):
            typer.echo(f"reply from {row['agent']} ({row['skill']}): "
                       f"{json.dumps(row.get('reply', row.get('error')), default=str)}")
