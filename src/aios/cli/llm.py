"""``aios llm ls | chat | stats``: the language-model devices of the running kernel.

A daemon client: the console agent opens the model (DEV_OPEN with the
operator's ADMIN authority) and makes the same LLM_* syscalls an agent makes,
so a chat from the command line waits in the same fair queue as everyone
else's and ``stats`` shows every agent's line (weight, share, tokens, wait).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

NAME = "llm"
app = typer.Typer(help="Language models: devices, chat, per-agent usage.", no_args_is_help=True)
OutputOpt = typer.Option("table", "-o", "--output", help="table or json")
DeviceOpt = typer.Option("llm0", "--device", "-d", help="the model's device id")


@app.command("ls")
def ls(output: str = OutputOpt) -> None:
    """Language-model devices: model, slots, health, queue."""
    from aios.cli.dev import device_rows
    from aios.cli.kernel_cmds import _call, _connect, _emit

    c = _connect()
    devices = _call(c, "DEV_LIST", 2, "llm")["devices"]
    rows = device_rows(devices)
    for row in rows:
        slot = _call(c, "DEV_OPEN", 2, row["id"], ["READ"])
        s = _call(c, "LLM_STATS", slot)
        row.update({"in_flight": s["in_flight"], "queued": s["queued"], "requests": s["requests"],
                    "tokens_out": s["tokens_out"]})
    _emit(rows, output,
          ["id", "driver", "health", "model", "slots", "in_flight", "queued", "requests",
           "tokens_out"], "language models")


@app.command("chat")
def chat(prompt: str = typer.Argument(..., help="the user message"),
         device: str = DeviceOpt,
         system: str = typer.Option(None, "--system", help="a system message first"),
         max_tokens: int = typer.Option(256, "--max-tokens"),
         temperature: float = typer.Option(0.0, "--temperature"),
         seed: int = typer.Option(None, "--seed"),
         schema: Path = typer.Option(None, "--json-schema", help="a JSON schema file the answer must match"),
         output: str = typer.Option("text", "-o", "--output", help="text (streamed) or json")) -> None:
    """Ask the model, streaming the answer as it is generated."""
    from aios.cli.kernel_cmds import _call, _connect

    c = _connect()
    slot = _call(c, "DEV_OPEN", 2, device, ["READ", "WRITE"])
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}]
    opts: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
    if seed is not None:
        opts["seed"] = seed
    if schema is not None:
        try:
            opts["json_schema"] = json.loads(schema.read_text())
        except (OSError, json.JSONDecodeError) as e:
            typer.echo(f"error: cannot read the schema {schema}: {e}", err=True)
            raise typer.Exit(1) from None
    h = _call(c, "LLM_CHAT", slot, messages, opts)
    parts = []
    while True:
        r = _call(c, "LLM_RECV", h, 600.0, output == "json")
        parts.append(r["text"])
        if output != "json" and r["text"]:
            typer.echo(r["text"], nl=False)
        if r["done"]:
            break
    if output == "json":
        typer.echo(json.dumps({"text": "".join(parts), "finish_reason": r["finish_reason"],
                               "usage": r["usage"], "device": r["device"], "model": r["model"]}))
    else:
        u = r["usage"]
        typer.echo(f"\n[{r['finish_reason']}: {u['prompt_tokens']} prompt + "
                   f"{u['completion_tokens']} completion tokens, waited {u['queue_wait_ms']:.0f} ms, "
                   f"{u['time_ms']:.0f} ms on {r['device']}]", err=True)


@app.command("stats")
def stats(device: str = DeviceOpt, output: str = OutputOpt) -> None:
    """Every agent's use of a model: weight, fair share, tokens, queue wait."""
    from aios.cli.kernel_cmds import _call, _connect, _emit

    c = _connect()
    slot = _call(c, "DEV_OPEN", 2, device)
    s = _call(c, "LLM_STATS", slot)
    if output == "json":
        _emit(s, output)
        return
    rows = []
    for aid, cl in sorted(s["clients"].items(), key=lambda kv: int(kv[0])):
        n = max(1, cl["completed"] + cl["cancelled"])
        rows.append({"agent": aid, "live": "yes" if cl["live"] else "exited", "weight": cl["weight"],
                     "share": f"{cl['share']:.1%}", "requests": cl["requests"],
                     "tokens_in": cl["prompt_tokens"], "tokens_out": cl["tokens_out"],
                     "queued": cl["queued"], "in_flight": cl["in_flight"], "refused": cl["refused"],
                     "wait_ms": f"{cl['queue_wait_ns'] / n / 1e6:.0f}"})
    typer.echo(f"{s['device']}: {s['model']}, {s['slots']} slots, {s['health']}; "
               f"{s['requests']} requests, {s['tokens_in']} tokens in, {s['tokens_out']} out")
    _emit(rows, output, ["agent", "live", "weight", "share", "requests", "tokens_in", "tokens_out",
                         "queued", "in_flight", "refused", "wait_ms"], f"clients of {s['device']}")
