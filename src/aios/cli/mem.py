"""``aios mem ls | put | search | share | stats``: the memory fabric from the command line.

Every command is a daemon client (a console agent with the operator's ADMIN
authority): it opens namespaces with MEMD_OPEN and makes the same syscalls
an agent makes.  ``put`` creates the namespace when it does not exist yet.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from aios.abi.slots import SLOT_AUTHORITY

NAME = "mem"
app = typer.Typer(help="Memory fabric: namespaces, passages, search, sharing.", no_args_is_help=True)
OutputOpt = typer.Option("table", "-o", "--output", help="table or json")


def _client() -> Any:
    from aios.cli.kernel_cmds import _connect

    return _connect()


def acall(c: Any, name: str, *args: Any, timeout: float = 120.0) -> Any:
    """An async syscall from the console: the handle, then GET_ASYNC_RESULT."""
    from aios.cli.kernel_cmds import _call

    handle = _call(c, name, *args)
    return _call(c, "GET_ASYNC_RESULT", handle, timeout)


def _open(c: Any, ns: str, create: bool = False) -> int:
    from aios.abi.errors import NoSuchObject
    from aios.abi.sysno import Sys

    try:
        h = c.call(int(Sys.MEMD_OPEN), (2, ns, None))
        slot: int = c.call(int(Sys.GET_ASYNC_RESULT), (h, 120.0))
        return slot
    except NoSuchObject:
        if not create:
            typer.echo(f"error: no memory namespace {ns!r}", err=True)
            raise typer.Exit(1) from None
    slot = acall(c, "MEMD_CREATE", SLOT_AUTHORITY, ns, None)
    return slot


@app.command("ls")
def ls(output: str = OutputOpt) -> None:
    """Every namespace in the store, with usage and quotas."""
    from aios.cli.kernel_cmds import _emit

    rows = acall(_client(), "MEMD_LIST", 2)
    _emit(rows, output, ["namespace", "owner", "items", "bytes", "quota_items", "quota_bytes"], "memory")


@app.command("put")
def put(
    ns: str = typer.Argument(..., help="namespace (created if missing)"),
    text: str = typer.Argument(...),
    tier: str = typer.Option("archival", "--tier", help="archival or recall"),
    meta: str = typer.Option("", "--meta", help="metadata as a JSON object"),
    role: str = typer.Option("", "--role", help="recall: who said it"),
    output: str = OutputOpt,
) -> None:
    """Store TEXT in namespace NS."""
    from aios.cli.kernel_cmds import _emit

    opts: dict[str, Any] = {"tier": tier}
    if meta:
        try:
            opts["meta"] = json.loads(meta)
        except ValueError as e:
            raise typer.BadParameter(f"--meta is not JSON: {e}") from None
    if role:
        opts["role"] = role
    c = _client()
    slot = _open(c, ns, create=True)
    _emit(acall(c, "MEMD_PUT", slot, text, opts), output, title="stored")


@app.command("search")
def search(
    ns: str = typer.Argument(..., help="namespace, or several separated by commas"),
    query: str = typer.Argument(...),
    k: int = typer.Option(5, "-k"),
    tier: str = typer.Option("archival", "--tier", help="archival (meaning) or recall (words)"),
    output: str = OutputOpt,
) -> None:
    """Search one or several namespaces."""
    from aios.cli.kernel_cmds import _emit

    c = _client()
    slots = [_open(c, n.strip()) for n in ns.split(",") if n.strip()]
    hits = acall(c, "MEMD_SEARCH", slots, query, {"k": k, "tier": tier})
    cols = ["score", "namespace", "id", "text"] if tier == "archival" else ["namespace", "id", "role", "text"]
    _emit(hits, output, cols, f"search {query!r}")


@app.command("share")
def share(
    ns: str = typer.Argument(...),
    agent: str = typer.Argument(..., metavar="ID|NAME", help="the agent to share with"),
    rights: str = typer.Option("READ", "--rights", help="comma-separated: READ, WRITE, GRANT"),
) -> None:
    """Give AGENT (an id or a registered name) a capability for NS (it arrives as a message carrying the slot).

    The console is gone when this command returns, so the agent's capability is installed by
    the kernel (MEMD_OPEN with an endpoint) rather than derived from the console's own.
    """
    from aios.cli.kernel_cmds import _call, agent_id

    c = _client()
    _open(c, ns)  # a clear error if the namespace does not exist
    aid = agent_id(c, agent)
    _ctl, ep = _call(c, "AGENT_CONTROL", 2, aid)
    names = [r.strip().upper() for r in rights.split(",") if r.strip()]
    peer = acall(c, "MEMD_OPEN", 2, ns, names, ep)
    typer.echo(f"shared {ns} with agent {aid} ({', '.join(names)}): its slot {peer}")


@app.command("stats")
def stats(ns: str = typer.Argument("", help="a namespace; empty: the fabric"), output: str = OutputOpt) -> None:
    """The active embedder and the store, or one namespace's usage."""
    from aios.cli.kernel_cmds import _emit

    c = _client()
    if ns:
        _emit(acall(c, "MEMD_STATS", _open(c, ns)), output, title=ns)
        return
    st = acall(c, "MEMD_STATS", None)
    st["semantic_skills"] = len(acall(c, "SEMANTIC_STATUS")["skills"])
    _emit(st, output, title="memory fabric")
