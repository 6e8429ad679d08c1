"""``aios policy``: check, list, test and reload Cedar policies.

Descriptions on the command line are compact ``key=value`` lists::

    aios policy test --principal key=7,type=worker,trust=trusted \\
        --action spawn --resource Image:summarizer,publisher=acme \\
        --context '{"child_type": "worker", "child_publisher": "acme", "rights": []}'

Resources are ``Kind:name[,attr=value...]`` with Kind one of ``Image``,
``Host``, ``Right``, ``Namespace``, ``AgentType`` or ``Agent:key=N,...``.
For ``grant``, ``--recipient`` describes the receiving agent and the context
is filled in; for ``quota`` / ``schedule`` the merged settings are printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

NAME = "policy"
app = typer.Typer(
    name=NAME, help="Cedar policy engine: check, list, test, reload.", no_args_is_help=True
)

# The seam the kernel client fills in: ask the running kernel to reload.
# Returns the kernel's ReloadResult as a dict.  Without it the running kernel
# still picks the change up through its PolicyWatcher poll.
reload_via: Callable[[], dict[str, Any]] | None = None

OutOpt = typer.Option("table", "-o", "--output", help="table or json")


def _pairs(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, spec.split(",")):
        if "=" not in part:
            raise typer.BadParameter(f"expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _agent(spec: str) -> Any:
    from aios.lib.policy.engine import AgentInfo

    kv = _pairs(spec)
    try:
        key = int(kv.pop("key", "0"))
        return AgentInfo(key=key, **kv)
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(f"bad agent description {spec!r}: {exc}") from exc


def _resource(spec: str) -> Any:
    from aios.lib.policy import engine as p

    kind, _, rest = spec.partition(":")
    if kind == "Agent":
        return _agent(rest)
    name, _, attrs = rest.partition(",")
    kv = _pairs(attrs)
    try:
        if kind == "Image":
            signed = kv.pop("signed", "true").lower() in ("1", "true", "yes")
            return p.ImageRef(name, signed=signed, **kv)
        if kind == "Host":
            return p.HostRef(name)
        if kind == "Right":
            return p.RightRef(name)
        if kind == "Namespace":
            return p.NamespaceRef(name, **kv)
        if kind == "AgentType":
            return p.AgentTypeRef(name)
    except TypeError as exc:
        raise typer.BadParameter(f"bad resource {spec!r}: {exc}") from exc
    raise typer.BadParameter(f"unknown resource kind {kind!r} in {spec!r}")


def _print(data: Any, output: str, title: str, rows: list[tuple[str, str]]) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


@app.command("check")
def check(
    directory: Annotated[
        Path | None, typer.Argument(help="policy dir (default $AIOS_HOME/policy)")
    ] = None,
    defaults: bool = typer.Option(
        True, "--defaults/--no-defaults", help="include shipped defaults"
    ),
    output: str = OutOpt,
) -> None:
    """Parse and schema-validate every policy file; exit 1 on any error."""
    from aios.abi.errors import InvalidArgument
    from aios.lib.policy.engine import compile_policies
    from aios.lib.policy.files import DEFAULTS_DIR, operator_dir, read_sources

    d = directory if directory is not None else operator_dir()
    dirs = [DEFAULTS_DIR, d] if defaults else [d]
    try:
        sources = read_sources(dirs)
        compiled = compile_policies(sources)
    except InvalidArgument as exc:
        errs = list(exc.detail.get("errors", (exc.message,)))
        _print(
            {"ok": False, "errors": errs},
            output,
            "policy check: FAILED",
            [("error", e) for e in errs],
        )
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"cannot read policies: {exc}", err=True)
        raise typer.Exit(1) from None
    data = {
        "ok": True,
        "files": list(compiled.files),
        "policies": len(compiled.infos),
        "marked_actions": sorted(compiled.marked),
    }
    _print(
        data,
        output,
        "policy check: ok",
        [
            ("files", ", ".join(compiled.files)),
            ("policies", str(len(compiled.infos))),
            ("marked actions", ", ".join(sorted(compiled.marked))),
        ],
    )


@app.command("list")
def list_(output: str = OutOpt) -> None:
    """List the policies in force (shipped defaults plus $AIOS_HOME/policy)."""
    from aios.abi.errors import InvalidArgument
    from aios.lib.policy.files import load_engine

    try:
        engine = load_engine()
    except InvalidArgument as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    infos = engine.policies()
    if output == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "id": i.id,
                        "effect": i.effect,
                        "actions": list(i.actions),
                        "annotations": dict(i.annotations),
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="policies in force")
    for col in ("id", "effect", "actions", "annotations"):
        table.add_column(col)
    for i in infos:
        ann = " ".join(f"@{k}({v})" for k, v in i.annotations if k != "id")
        table.add_row(i.id, i.effect, ", ".join(i.actions) or "(any)", ann)
    Console().print(table)


@app.command("test")
def test(
    principal: str = typer.Option(..., help="key=N,type=...,publisher=...,trust=...,image=..."),
    action: str = typer.Option(..., help="spawn, grant, net_connect, mem_share, quota, ..."),
    resource: str = typer.Option(..., help="Kind:name[,attr=value] e.g. Image:app,publisher=acme"),
    context: str = typer.Option("{}", help="context as JSON"),
    recipient: str = typer.Option("", help="for grant: the receiving agent (key=N,...)"),
    directory: Annotated[
        Path | None, typer.Option("--dir", help="policy dir (default $AIOS_HOME/policy)")
    ] = None,
    output: str = OutOpt,
) -> None:
    """Evaluate one described request; print the decision and deciding policies."""
    from aios.abi.errors import AIOSError
    from aios.lib.policy.engine import PolicyEngine
    from aios.lib.policy.files import DEFAULTS_DIR, operator_dir, read_sources

    d = directory if directory is not None else operator_dir()
    try:
        ctx = json.loads(context)
        if not isinstance(ctx, dict):
            raise typer.BadParameter("--context must be a JSON object")
        dirs = [DEFAULTS_DIR, d]
        engine = PolicyEngine(lambda: read_sources(dirs))
        who = _agent(principal)
        if action in ("quota", "schedule"):
            s = engine.quotas(who) if action == "quota" else engine.schedule(who)
            data: dict[str, Any] = {"settings": s.as_dict(), "policies": list(s.policies)}
            _print(
                data,
                output,
                f"policy test: {action}",
                [*((k, str(v)) for k, v in s.values), ("policies", "\n".join(s.policies))],
            )
            return
        if action == "grant":
            rec = _agent(recipient) if recipient else _agent("key=0")
            dec = engine.check_grant(
                who, rec, [_resource(resource).name], obj=str(ctx.get("object", ""))
            )
        else:
            dec = engine.decide(who, action, _resource(resource), ctx)
    except (AIOSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = [
        ("decision", "ALLOW" if dec.allowed else "DENY"),
        ("action", dec.action),
        ("resource", dec.resource),
        ("policies", "\n".join(dec.policies) or "(none: default deny)"),
    ]
    if dec.errors:
        rows.append(("errors", "\n".join(dec.errors)))
    _print(dec.record(), output, "policy test", rows)
    if not dec.allowed:
        raise typer.Exit(1)


def _reload_title(r: dict[str, Any]) -> str:
    if not r.get("ok", False):
        return "policy reload: REJECTED (previous policy stays in force)"
    if "generation" not in r:
        return "policy reload"
    n = {k: len(r.get(k, ())) for k in ("added", "removed", "modified")}
    what = f"{n['added']} added, {n['removed']} removed, {n['modified']} changed"
    if r.get("changed"):
        return f"policy reload: {what} (generation {r['generation']})"
    if any(n.values()):  # the file watcher applied the edit first: say what it did
        return f"policy reload: already in force (generation {r['generation']}: {what})"
    return f"policy reload: no change (generation {r['generation']})"


def _reload_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per policy that a reload added, removed or changed; then the totals."""
    rows = [(what, pid) for key, what in (("added", "added"), ("removed", "removed"),
                                          ("modified", "changed")) for pid in r.get(key, ())]
    rows += [(k, str(v)) for k, v in r.items()
             if k not in ("added", "removed", "modified", "files", "changed", "errors")]
    rows += [("error", e) for e in r.get("errors", ())]
    if "files" in r:
        rows.append(("files", str(len(r["files"]))))
    return rows


@app.command("reload")
def reload(output: str = OutOpt) -> None:
    """Validate $AIOS_HOME/policy and ask the running kernel to reload it.

    An invalid set is reported with its errors and the kernel keeps the
    policies it has.
    """
    from aios.abi.errors import InvalidArgument
    from aios.lib.policy.engine import compile_policies
    from aios.lib.policy.files import policy_dirs, read_sources

    try:
        compiled = compile_policies(read_sources(policy_dirs()))
    except InvalidArgument as exc:
        errs = list(exc.detail.get("errors", (exc.message,)))
        _print(
            {"ok": False, "errors": errs, "kept_previous": True},
            output,
            "policy reload: REJECTED (previous policy stays in force)",
            [("error", e) for e in errs],
        )
        raise typer.Exit(1) from None
    if reload_via is not None:
        result = reload_via()
        _print(result, output, _reload_title(result), _reload_rows(result))
        if not result.get("ok", False):
            raise typer.Exit(1)
        return
    _print(
        {"ok": True, "validated": True, "policies": len(compiled.infos), "kernel": "not contacted"},
        output,
        "policy reload",
        [
            ("validated", f"{len(compiled.infos)} policies in {len(compiled.files)} files"),
            ("kernel", "no kernel connection: it picks the change up on its next poll"),
        ],
    )
