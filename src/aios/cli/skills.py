"""``aios skills ls | explain NAME``: semantic-ipcd's skills, neighbours and confusions.

Daemon clients like ``aios mem``: SEMANTIC_STATUS lists the skills the
console can see with their raw *background* score (what generic text scores
for the skill) and *expected* score (what its own examples score, leave one
out): the wider the gap, the more distinct the skill; ``explain``
adds the skill's nearest neighbours and the examples the router would
confuse with another skill (within the routing margin), which is what to fix
before two skills start taking each other's requests.
"""

from __future__ import annotations

import json
from typing import Any

import typer

NAME = "skills"
app = typer.Typer(help="Semantic skills: list, neighbours, confusions.", no_args_is_help=True)
OutputOpt = typer.Option("table", "-o", "--output", help="table or json")


def _status(opts: dict[str, Any] | None) -> dict[str, Any]:
    from aios.cli.kernel_cmds import _connect
    from aios.cli.mem import acall

    r: dict[str, Any] = acall(_connect(), "SEMANTIC_STATUS", opts)
    return r


@app.command("ls")
def ls(output: str = OutputOpt) -> None:
    """Every skill you can see, its owner, examples and expected score."""
    r = _status(None)
    if output == "json":
        typer.echo(json.dumps(r, default=str))
        return
    typer.echo(f"embedder {r['embedder']}  threshold {r['threshold']}  margin {r['margin']}  "
               f"lexical weight {r.get('lexical_weight')}  re-ranker {r.get('reranker') or '-'}")
    if not r["skills"]:
        typer.echo("no skills registered")
        return
    typer.echo(f"{'SKILL':32} {'AGENT':>6} {'EXAMPLES':>8} {'BACKGROUND':>10} {'EXPECTED':>8}  "
               "DESCRIPTION")
    for s in r["skills"]:
        flags = (" [restricted]" if s["restricted"] else "") + (" [learns]" if s.get("learn") else "")
        typer.echo(f"{s['skill']:32} {s['agent']:>6} {s['examples']:>8} {s['background']:>10} "
                   f"{s['expected']:>8}  {s['description'][:60]}{flags}")


@app.command("explain")
def explain(name: str = typer.Argument(..., help="skill name"),
            agent: int = typer.Option(0, "--agent", help="only this agent's registration"),
            output: str = OutputOpt) -> None:
    """NAME's nearest skills and the examples the router would confuse with another skill."""
    opts: dict[str, Any] = {"skill": name}
    if agent:
        opts["agent"] = agent
    r = _status(opts)
    if output == "json":
        typer.echo(json.dumps(r["explain"], default=str))
        return
    for e in r["explain"]:
        typer.echo(f"{e['skill']} (agent {e['agent']}): {e['description']}")
        typer.echo(f"  raw scores: background {e['background']}, own examples {e['expected']}; "
                   f"calibrated threshold {r['threshold']}, margin {r['margin']}")
        near = ", ".join(f"{n['skill']}@{n['agent']} {n['similarity']:.2f}"
                         for n in e["neighbours"])
        typer.echo(f"  nearest skills: {near or '-'}")
        if not e["confusions"]:
            typer.echo("  confusions: none")
        for c in e["confusions"]:
            typer.echo(f"  confused: {c['example']!r} scores {c['own']} here, "
                       f"{c['other_score']} for {c['other']}")
