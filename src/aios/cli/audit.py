"""``aios audit``: read, verify and prove the tamper-evident audit log.

Works on the files under ``$AIOS_HOME`` directly (the kernel may have the
database open: WAL lets readers in).  Only ``checkpoint`` needs the node's
private key; everything else uses public data.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

NAME = "audit"
app = typer.Typer(
    help="Tamper-evident audit log (RFC 6962 Merkle tree, signed checkpoints).",
    no_args_is_help=True,
)

OutOpt = typer.Option("table", "-o", "--output", help="table or json")


def _home() -> Path:
    from aios.abi.home import aios_home

    return aios_home()


def _reader() -> Any:
    """The log, read-only.  A missing or damaged file raises; ``aios`` (cli/main.py)
    prints that error once, with the file and what to do (``--debug``: the traceback)."""
    from aios.lib.audit.log import LogReader
    from aios.lib.paths import audit_db_path

    return LogReader.open(audit_db_path(_home()))


def _fail(msg: str, code: int = 2) -> NoReturn:
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _emit(obj: dict[str, Any] | list[dict[str, Any]], output: str, title: str = "") -> None:
    from aios.cli.output import emit

    emit(obj, output, title=title, wide=("cap", "decision"))


def _time_ns(value: str | None) -> int | None:
    """ISO 8601 time or integer nanoseconds since the epoch."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"not a time: {value!r} (use ISO 8601 or ns since the epoch)")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _latest(reader: Any) -> Any:
    """The latest checkpoint, checked against the node's public keys (or None)."""
    from aios.abi.errors import AIOSError
    from aios.lib.audit.checkpoint import verify_checkpoint
    from aios.lib.identity import read_node_public

    text = reader.latest_checkpoint()
    if text is None:
        return None
    try:
        _name, keys = read_node_public(_home())
        return verify_checkpoint(text, reader.origin(), keys)
    except AIOSError as exc:
        _fail(f"latest checkpoint does not verify: {exc}", 1)


@app.command("log")
def log_cmd(
    agent: int | None = typer.Option(None, "--agent", help="only this agent id"),
    kind: str | None = typer.Option(
        None, "--type", help="event type; a trailing * matches a prefix"
    ),
    since: str | None = typer.Option(None, "--since", help="ISO time or ns since the epoch"),
    until: str | None = typer.Option(None, "--until", help="ISO time or ns since the epoch"),
    start: int | None = typer.Option(None, "--from-entry", help="first entry index (implies oldest first)"),
    limit: int = typer.Option(50, "-n", "--limit", help="at most this many entries"),
    oldest_first: bool = typer.Option(False, "--oldest-first", help="log order instead of newest first"),
    follow: bool = typer.Option(False, "-f", "--follow",
                                help="print the latest entries oldest first, then new ones as they are appended"),
    output: str = OutOpt,
) -> None:
    """List audit records, newest first, filtered by agent, type and time (--follow: keep watching)."""
    reader = _reader()
    flt = (agent, kind, _time_ns(since), _time_ns(until))
    if follow:
        _follow(reader, flt, limit, start, output)
        return
    newest = start is None and not oldest_first
    rows = [_row(e) for e in reader.entries(*flt, limit, start or 0, newest_first=newest)]
    _emit(rows, output, f"audit log ({len(rows)} entries, {'newest' if newest else 'oldest'} first)")


def _row(e: Any) -> dict[str, Any]:
    from aios.abi.errors import AIOSError
    from aios.lib.audit.recorder import AuditRecord

    try:
        r = AuditRecord.decode(e.record)
    except AIOSError:
        return {"entry": e.index, "time": "", "agent": e.agent, "type": e.kind, "raw": e.record.hex()}
    when = datetime.fromtimestamp(r.ts_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")
    return {"entry": e.index, "time": when, "agent": r.agent, "type": r.kind, "cap": r.capability,
            "decision": r.decision, "result": r.result, "detail": dict(r.detail)}


def _follow(reader: Any, flt: tuple[Any, ...], limit: int, start: int | None, output: str) -> None:
    """``tail -f`` for the log: the latest ``limit`` entries in order, then each new one (Ctrl-C stops)."""
    import time

    latest = list(reader.entries(*flt, limit, start or 0, newest_first=start is None))
    if start is None:
        latest.reverse()
    nxt = start or 0
    typer.echo("following the audit log (Ctrl-C stops)", err=True)
    while True:
        for e in latest:
            row = _row(e)
            if output == "json":
                typer.echo(json.dumps(row), nl=True)
            else:
                typer.echo(f"{row['entry']:>7} {row['time']} agent={row['agent']} {row['type']} "
                           f"{json.dumps(row.get('detail', row.get('raw')))}")
            nxt = e.index + 1
        sys.stdout.flush()
        time.sleep(0.25)  # the daemon writes the log; a reader polls it (WAL: no lock taken)
        latest = list(reader.entries(*flt, 1000, nxt))


@app.command("verify")
def verify_cmd(
    output: str = OutOpt,
    full: bool = typer.Option(True, "--full/--quick",
                              help="--full (default): every entry; --quick: the boot check only "
                                   "(latest checkpoint and the entries after it)"),
) -> None:
    """Recompute the whole tree, check every checkpoint; report the first bad entry."""
    from aios.lib.identity import read_node_public

    reader = _reader()
    _name, keys = read_node_public(_home())
    report = reader.verify(keys) if full else reader.check_tail(keys)
    _emit(
        {"ok": report.ok, "size": report.size, "checkpoints": report.checkpoints,
         "first_bad_entry": report.first_bad_entry, "reason": report.reason},
        output, "audit verify",
    )  # fmt: skip
    if not report.ok:
        raise typer.Exit(1)


@app.command("prove")
def prove_cmd(
    index: int | None = typer.Argument(None, metavar="ENTRY", help="entry index"),
    entry_opt: int | None = typer.Option(None, "--entry", help="the same, as an option"),
    size: int | None = typer.Option(None, "--size", help="tree size (default: latest checkpoint)"),
    output: str = OutOpt,
) -> None:
    """Inclusion proof of entry ENTRY, checked against the signed checkpoint."""
    from aios.abi.errors import AIOSError
    from aios.lib.audit import merkle

    entry = index if index is not None else entry_opt
    if entry is None:
        _fail("give the entry index: aios audit prove ENTRY")
    reader = _reader()
    cp = _latest(reader)
    if size is None:
        size = cp.size if cp is not None and entry < cp.size else reader.size()
    try:
        data = reader.entry(entry).data
        proof = reader.inclusion_proof(entry, size)
        root = reader.root(size)
    except AIOSError as exc:
        _fail(str(exc))
    leaf = merkle.leaf_hash(data)
    ok = merkle.verify_inclusion(leaf, entry, size, proof, root)
    signed = cp is not None and cp.size == size
    if signed:
        ok = ok and root == cp.root_hash
    _emit(
        {"entry": entry, "tree_size": size, "leaf_hash": base64.b64encode(leaf).decode(),
         "root": base64.b64encode(root).decode(), "proof": [base64.b64encode(p).decode() for p in proof],
         "verified": ok, "against_signed_checkpoint": signed},
        output, "inclusion proof",
    )  # fmt: skip
    if not ok:
        raise typer.Exit(1)


@app.command("consistency")
def consistency_cmd(
    from_size: int = typer.Option(..., "--from", help="the older tree size"),
    to_size: int | None = typer.Option(
        None, "--to", help="the newer size (default: latest checkpoint)"
    ),
    output: str = OutOpt,
) -> None:
    """Consistency proof that the log at SIZE is a prefix of the newer log."""
    from aios.abi.errors import AIOSError
    from aios.lib.audit import merkle
    from aios.lib.audit.checkpoint import parse

    reader = _reader()
    cp = _latest(reader)
    if to_size is None:
        to_size = cp.size if cp is not None and cp.size >= from_size else reader.size()
    try:
        proof = reader.consistency_proof(from_size, to_size)
        root1, root2 = reader.root(from_size), reader.root(to_size)
    except AIOSError as exc:
        _fail(str(exc))
    # if either end has a signed checkpoint, use its root instead of the stored one
    signed = {s: parse(t).checkpoint.root_hash for s, t in reader.checkpoints()}
    root1, root2 = signed.get(from_size, root1), signed.get(to_size, root2)
    ok = merkle.verify_consistency(from_size, to_size, proof, root1, root2)
    _emit(
        {"from": from_size, "to": to_size, "root1": base64.b64encode(root1).decode(),
         "root2": base64.b64encode(root2).decode(), "proof": [base64.b64encode(p).decode() for p in proof],
         "verified": ok, "signed_ends": [s for s in (from_size, to_size) if s in signed]},
        output, "consistency proof",
    )  # fmt: skip
    if not ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint_cmd(
    output: str = OutOpt,
    passphrase_env: str = typer.Option(
        "AIOS_KEY_PASSPHRASE", help="env var holding the keystore passphrase"
    ),
) -> None:
    """Sign a checkpoint for the current log now (needs the node key) and print it."""
    from aios.abi.errors import AIOSError
    from aios.lib.audit.log import AuditLog
    from aios.lib.identity import Keystore
    from aios.lib.paths import audit_db_path, audit_origin

    home = _home()
    pw = os.environ.get(passphrase_env)
    try:
        ks = Keystore(home, pw.encode() if pw else None)
        log = AuditLog(audit_db_path(home), audit_origin(ks.node_id), ks.node_identity())
        text = log.checkpoint()
        log.close()
    except AIOSError as exc:
        _fail(str(exc))
    if text is None:
        _fail("the audit log is empty: nothing to checkpoint", 1)
    if output == "json":
        typer.echo(json.dumps({"checkpoint": text}))
    else:
        typer.echo(text, nl=False)
