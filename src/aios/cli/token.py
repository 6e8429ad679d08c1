"""``aios token``: mint, attenuate, inspect and revoke capability tokens.

``mint`` signs with a node key given as ``--key FILE``, a raw 32-byte
ML-DSA-65 seed (``aios token keygen FILE`` writes one).  When the kernel's
node identity exists, the lead's wiring makes it the default key; without
``--key`` and without that identity the command refuses.  Revocations go to
``$AIOS_HOME/tokens/revoked.db``.  Tokens are printed and read in the text
form ``aios1.<base64url>``; ``-`` reads the token from stdin.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from aios.abi.home import aios_home

NAME = "token"
app = typer.Typer(
    name=NAME, help="Attenuable capability tokens (ML-DSA signed).", no_args_is_help=True
)

# The seam for the node identity: a callable returning the node's ML-DSA-65
# private key, set by the identity wiring; used when --key is not given.
default_key: Callable[[], Any] | None = None

OutOpt = typer.Option("table", "-o", "--output", help="table or json")


def _home() -> Path:
    return aios_home()


def _read_token(arg: str) -> bytes:
    from aios.lib.tokens import from_text

    text = sys.stdin.read() if arg == "-" else arg
    return from_text(text)


def _load_key(path: Path | None) -> Any:
    from aios.lib.tokens import load_seed_key

    if path is None:
        if default_key is None:
            typer.echo("no --key given and no node identity configured", err=True)
            raise typer.Exit(2)
        return default_key()
    return load_seed_key(path.read_bytes())


def _rights(spec: str | None) -> frozenset[str] | None:
    if spec is None:
        return None
    return frozenset(r.strip().upper() for r in spec.split(",") if r.strip())


def _expiry(expires_in: float | None, expiry: int | None) -> int | None:
    if expires_in is not None:
        return int(time.time() + expires_in)
    return expiry


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="file to write the 32-byte seed to")],
) -> None:
    """Write a fresh ML-DSA-65 seed (mode 0600) and print its public key hash."""
    import hashlib

    from aios.lib.tokens import load_seed_key

    if path.exists():
        raise _fail(FileExistsError(f"{path} exists"))
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed)
    pub = load_seed_key(seed).public_key().public_bytes_raw()
    typer.echo(f"wrote {path}; public key sha256 {hashlib.sha256(pub).hexdigest()[:16]}")


@app.command("mint")
def mint(
    object: str = typer.Option(..., "--object", help="what the token grants access to"),
    rights: str = typer.Option(..., help="comma-separated rights, e.g. READ,WRITE"),
    key: Annotated[Path | None, typer.Option("--key", help="raw ML-DSA-65 seed file")] = None,
    issuer: str = typer.Option("", help="issuing node name"),
    expires_in: float | None = typer.Option(None, help="seconds from now"),
    expiry: int | None = typer.Option(None, help="absolute unix time"),
    audience: str | None = typer.Option(None, help="only this audience may import it"),
    rate: int | None = typer.Option(None, help="uses per second"),
    sealed: bool = typer.Option(False, "--seal", help="seal: no further attenuation"),
) -> None:
    """Mint a token (block 0) with the node key; prints the text form."""
    from aios.abi.errors import AIOSError
    from aios.lib import tokens

    try:
        tok = tokens.mint(
            _load_key(key),
            object=object,
            rights=_rights(rights) or frozenset(),
            issuer=issuer,
            expiry=_expiry(expires_in, expiry),
            audience=audience,
            rate=rate,
        )
        if sealed:
            tok = tokens.seal(tok)
    except (AIOSError, OSError) as exc:
        raise _fail(exc) from None
    typer.echo(tokens.to_text(tok))


@app.command("attenuate")
def attenuate(
    token: str = typer.Argument(..., help="token text, or - for stdin"),
    rights: str | None = typer.Option(None, help="keep only these rights"),
    expires_in: float | None = typer.Option(None, help="seconds from now"),
    expiry: int | None = typer.Option(None, help="absolute unix time"),
    audience: str | None = typer.Option(None),
    rate: int | None = typer.Option(None),
    sealed: bool = typer.Option(False, "--seal", help="seal after attenuating"),
) -> None:
    """Add a narrowing block, offline; prints the new token."""
    from aios.abi.errors import AIOSError
    from aios.lib import tokens

    try:
        tok = tokens.attenuate(
            _read_token(token),
            rights=_rights(rights),
            expiry=_expiry(expires_in, expiry),
            audience=audience,
            rate=rate,
        )
        if sealed:
            tok = tokens.seal(tok)
    except AIOSError as exc:
        raise _fail(exc) from None
    typer.echo(tokens.to_text(tok))


@app.command("inspect")
def inspect(
    token: str = typer.Argument(..., help="token text, or - for stdin"),
    key: Annotated[
        Path | None, typer.Option("--key", help="verify against this node seed file")
    ] = None,
    audience: str | None = typer.Option(None, help="audience to verify as"),
    output: str = OutOpt,
) -> None:
    """Show the blocks; with --key also verify (signatures, expiry, revocation)."""
    from aios.abi.errors import AIOSError
    from aios.lib import tokens
    from aios.lib.revocations import RevocationList

    try:
        raw = _read_token(token)
        views, is_sealed = tokens.inspect(raw)
        verdict: dict[str, Any] | None = None
        if key is not None:
            pub = _load_key(key).public_key()
            revoked = RevocationList.at_home(_home())
            try:
                g = tokens.verify(
                    raw, pub, now=time.time(), audience=audience, is_revoked=revoked.is_revoked
                )
                verdict = {
                    "valid": True,
                    "rights": sorted(g.rights),
                    "expiry": g.expiry,
                    "audience": g.audience,
                    "rate": g.rate,
                }
            except AIOSError as exc:
                verdict = {"valid": False, "error": str(exc)}
            finally:
                revoked.close()
    except (AIOSError, OSError) as exc:
        raise _fail(exc) from None
    blocks = [
        {
            "index": v.index,
            "object": v.object,
            "issuer": v.issuer,
            "rights": sorted(v.caveats.rights) if v.caveats.rights is not None else None,
            "expiry": v.caveats.expiry,
            "audience": v.caveats.audience,
            "rate": v.caveats.rate,
            "revocation_id": v.revocation_id,
        }
        for v in views
    ]
    if output == "json":
        typer.echo(json.dumps({"sealed": is_sealed, "blocks": blocks, "verify": verdict}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"token ({'sealed' if is_sealed else 'open'}, {len(raw)} bytes)")
        for col in ("#", "rights", "expiry", "audience", "rate", "revocation id"):
            table.add_column(col)
        for b in blocks:
            rights = b["rights"]
            table.add_row(
                str(b["index"]),
                ",".join(rights) if isinstance(rights, list) else "-",
                str(b["expiry"] or "-"),
                str(b["audience"] or "-"),
                str(b["rate"] or "-"),
                str(b["revocation_id"]),
            )
        con = Console()
        con.print(f"object {blocks[0]['object']!r}, issuer {blocks[0]['issuer']!r}")
        con.print(table)
        if verdict is not None:
            con.print(verdict)
    if verdict is not None and not verdict["valid"]:
        raise typer.Exit(1)


@app.command("revoke")
def revoke(
    target: str = typer.Argument(..., help="a revocation id, or a token (text or -)"),
    block: int | None = typer.Option(
        None, help="with a token: which block to revoke (default: its last block)"
    ),
    reason: str = typer.Option("", help="recorded with the revocation"),
) -> None:
    """Revoke a block: every token containing it (and derived from it) fails."""
    from aios.abi.errors import AIOSError
    from aios.lib import tokens
    from aios.lib.revocations import RevocationList

    try:
        if target == "-" or target.startswith(tokens.TEXT_PREFIX):
            views, _ = tokens.inspect(_read_token(target))
            idx = len(views) - 1 if block is None else block
            if not 0 <= idx < len(views):
                raise _fail(IndexError(f"token has blocks 0..{len(views) - 1}"))
            rid = views[idx].revocation_id
        else:
            rid = target
        rl = RevocationList.at_home(_home())
        try:
            new = rl.revoke(rid, reason)
        finally:
            rl.close()
    except AIOSError as exc:
        raise _fail(exc) from None
    typer.echo(f"{'revoked' if new else 'already revoked'}: {rid}")
