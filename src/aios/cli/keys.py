"""``aios keys``: publisher signing keys (ML-DSA-65) and the image trust store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

NAME = "keys"
app = typer.Typer(
    help="Publisher keys for signing agent images, and the trust store.", no_args_is_help=True
)


def publishers_dir() -> Path:
    from aios.abi.home import aios_home
    from aios.lib import paths

    return paths.publishers_dir(aios_home())


def trust_dir() -> Path:
    """The one trust store (``aios.lib.paths.trust_dir``), which the kernel reads too."""
    from aios.abi.home import aios_home
    from aios.lib import paths

    return paths.trust_dir(aios_home())


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command("create")
def create(
    name: str, output: str = typer.Option("table", "-o", "--output", help="table | json")
) -> None:
    """Create publisher key NAME ($AIOS_HOME/keys/publishers/NAME.key, mode 0600)."""
    from aios.abi.errors import AIOSError
    from aios.abi.home import aios_home
    from aios.kmod.images.signed import create_key, fingerprint
    from aios.lib.paths import keys_dir, private_dir

    try:
        aios_home().mkdir(parents=True, exist_ok=True)
        private_dir(keys_dir(aios_home()))
        key, pub = create_key(publishers_dir(), name)
    except AIOSError as exc:
        _fail(exc)
        return
    fp = fingerprint(pub.read_bytes())
    if output == "json":
        typer.echo(
            json.dumps({"name": name, "key": str(key), "public": str(pub), "fingerprint": fp})
        )
    else:
        typer.echo(f"created {key} (0600) and {pub}\nfingerprint {fp}")


_CAP_OPT = typer.Option([], "--cap", help="capability this publisher may grant (repeat)")
_EXEC_OPT = typer.Option([], "--executor", help="executor kind allowed (repeat; default all)")


@app.command("trust")
def trust(
    name: str,
    pub: str = typer.Option("", "--pub", help="public key file (default: our own NAME.pub)"),
    cap: list[str] = _CAP_OPT,
    executor: list[str] = _EXEC_OPT,
    max_memory: int = typer.Option(1 << 30, "--max-memory"),
    max_cpu: int = typer.Option(3600, "--max-cpu-seconds"),
    max_procs: int = typer.Option(64, "--max-processes"),
) -> None:
    """Add publisher NAME to the trust store with what it may grant."""
    from aios.kmod.images.signed import EXECUTORS, trust_entry

    path = Path(pub) if pub else publishers_dir() / f"{name}.pub"
    if not path.exists():
        _fail(FileNotFoundError(f"no public key {path}"))
    from aios.abi.home import aios_home
    from aios.lib.paths import keys_dir, private_dir, private_file

    aios_home().mkdir(parents=True, exist_ok=True)
    private_dir(keys_dir(aios_home()))
    d = private_dir(trust_dir())
    text = trust_entry(name, path.read_bytes(), capabilities=cap, executors=executor or list(EXECUTORS),
                       max_memory_bytes=max_memory, max_cpu_seconds=max_cpu, max_processes=max_procs)  # fmt: skip
    tmp = private_file(d / f".{name}.toml.tmp")
    tmp.write_text(text)
    os.replace(tmp, d / f"{name}.toml")  # a running kernel reads the store on its next verification
    typer.echo(f"trusted {name} in {d}")


@app.command("list")
def list_keys(output: str = typer.Option("table", "-o", "--output", help="table | json")) -> None:
    """List own publisher keys and trusted publishers."""
    from aios.kmod.images.signed import fingerprint, load_trust

    own = [
        {"name": p.stem, "fingerprint": fingerprint(p.read_bytes()), "kind": "own"}
        for p in sorted(publishers_dir().glob("*.pub"))
    ]
    trusted = [{"name": t.name, "fingerprint": t.fingerprint, "kind": "trusted", "capabilities": sorted(t.capabilities)}
               for t in load_trust(trust_dir()).values()]  # fmt: skip
    rows = own + trusted
    if output == "json":
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keys")
    for col in ("kind", "name", "fingerprint", "capabilities"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["kind"]),
            str(r["name"]),
            str(r["fingerprint"]),
            ", ".join(r.get("capabilities", [])),
        )
    Console().print(table)
