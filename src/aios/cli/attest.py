"""``aios attest``: measured boot, quotes and their verification.

The software PCRs are replayed from the kernel's event log under
``$AIOS_HOME/attest``; a quote signs them with a verifier's nonce using the
node key.  No hardware TPM is used (``aios attest status`` says whether one
exists on this host).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

NAME = "attest"
app = typer.Typer(
    help="Measured boot and attestation quotes (software PCRs).", no_args_is_help=True
)


def _home() -> Path:
    from aios.abi.home import aios_home

    return aios_home()


def _fail(msg: str, code: int = 2) -> NoReturn:
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _nonce(value: str) -> bytes:
    """Hex if it parses as hex (even length), else the UTF-8 bytes."""
    try:
        if len(value) % 2 == 0 and value:
            return bytes.fromhex(value)
    except ValueError:
        pass
    return value.encode()


@app.command("status")
def status_cmd() -> None:
    """Say whether a hardware TPM exists and what is used instead."""
    from aios.lib.attest import tpm_status

    typer.echo(tpm_status())


@app.command("measure")
def measure_cmd() -> None:
    """Measure kernel code, config and policies into a fresh event log (what boot does)."""
    from aios.lib.attest import measure_boot
    from aios.lib.paths import event_log_path

    bank = measure_boot(_home())
    for e in bank.log:
        typer.echo(f"PCR {e.pcr:2d} {e.digest.hex()}  {e.description}")
    typer.echo(f"event log: {event_log_path(_home())}")


@app.command("quote")
def quote_cmd(
    nonce_arg: str | None = typer.Argument(None, metavar="NONCE", help="verifier's fresh nonce (hex or text)"),
    nonce_opt: str | None = typer.Option(None, "--nonce", help="the same, as an option"),
    out: Annotated[Path | None, typer.Option("--out", help="write the quote JSON here")] = None,
    passphrase_env: str = typer.Option(
        "AIOS_KEY_PASSPHRASE", help="env var holding the keystore passphrase"
    ),
) -> None:
    """PCR values and the nonce, signed by the node key (JSON)."""
    from aios.abi.errors import AIOSError
    from aios.lib.attest import PcrBank, load_event_log, quote
    from aios.lib.identity import Keystore
    from aios.lib.paths import event_log_path

    nonce = nonce_arg if nonce_arg is not None else nonce_opt
    if nonce is None:
        _fail("give the verifier's nonce: aios attest quote NONCE")
    home = _home()
    pw = os.environ.get(passphrase_env)
    try:
        bank = PcrBank.replay(load_event_log(event_log_path(home)))
        node = Keystore(home, pw.encode() if pw else None).node_identity()
        q = quote(bank, _nonce(nonce), node)
    except AIOSError as exc:
        _fail(str(exc))
    text = json.dumps(q.to_json(), indent=1)
    if out is not None:
        out.write_text(text)
    typer.echo(text)


@app.command("verify")
def verify_cmd(
    quote_file: Annotated[
        Path, typer.Option("--quote", help="quote JSON from `aios attest quote`")
    ],
    nonce: str = typer.Option(..., "--nonce", help="the nonce you sent (hex or text)"),
    event_log: Annotated[
        Path | None, typer.Option("--event-log", help="default: $AIOS_HOME/attest/eventlog.json")
    ] = None,
    pubkey: Annotated[
        Path | None, typer.Option("--pubkey", help="node public key file (default: keys/node.pub)")
    ] = None,
    check_local: bool = typer.Option(
        False, "--check-local", help="also compare PCR 0 with this install's code"
    ),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Replay the event log against the quote; fail on a stale nonce or any mismatch."""
    from aios.abi.errors import AIOSError
    from aios.lib.attest import (
        PCR_KERNEL,
        PcrBank,
        Quote,
        load_event_log,
        measure_kernel_code,
        verify_quote,
    )
    from aios.lib.paths import event_log_path, keys_dir

    home = _home()
    try:
        q = Quote.from_json(json.loads(quote_file.read_text()))
        events = load_event_log(event_log or event_log_path(home))
        pk = (pubkey or keys_dir(home) / "node.pub").read_bytes()
        verify_quote(q, events, pk, _nonce(nonce))
    except (AIOSError, OSError, ValueError) as exc:
        _fail(f"quote REJECTED: {exc}", 1)
    ok = True
    if check_local:
        local = PcrBank()
        measure_kernel_code(local)
        logged = [e.digest for e in events if e.pcr == PCR_KERNEL][:1]
        ok = logged == [local.log[0].digest]
    result = {"verified": ok, "nonce": q.nonce.hex(), "tpm": q.tpm,
              "events": [e.to_json() for e in events]}  # fmt: skip
    if output == "json":
        typer.echo(json.dumps(result))
    else:
        for e in events:
            typer.echo(f"PCR {e.pcr:2d} {e.digest.hex()}  {e.description}")
        typer.echo(
            "quote verified"
            if ok
            else "quote signature and log OK, but kernel code differs from this install"
        )
    if not ok:
        raise typer.Exit(1)
