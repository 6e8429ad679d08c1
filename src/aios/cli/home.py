"""``aios home``: which ``$AIOS_HOME`` this command line uses, and removing it.

The home holds the node's keys, its audit log, policies, images and the
daemon's socket.  ``aios home`` prints its path (so ``cd "$(aios home)"``
works) or, with ``-o json``, the path, the rule that chose it and whether a
kernel is serving it.  ``aios home --remove`` deletes it (``make clean-home``
runs that): it refuses while a kernel runs, and refuses a directory that does
not look like an AIOS home, so a mistyped ``$AIOS_HOME`` cannot empty some
other directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

MARKERS = ("kernel.lock", "keys", "audit", "policy", "images", "attest", "kernel.log")


def looks_like_home(path: Path) -> bool:
    """An empty directory or one holding something only AIOS writes there."""
    entries = {p.name for p in path.iterdir()}
    return not entries or bool(entries & set(MARKERS))


def register(app: typer.Typer) -> None:
    @app.command("home")
    def home_cmd(
        remove: bool = typer.Option(False, "--remove", help="delete the home (keys, audit log, policies, images)"),
        yes: bool = typer.Option(False, "-y", "--yes", help="do not ask before --remove"),
        output: str = typer.Option("text", "-o", "--output", help="text (the path) or json"),
    ) -> None:
        """Print the $AIOS_HOME in use (default: $XDG_STATE_HOME/aios, ~/.local/state/aios)."""
        from aios.abi.errors import Busy, InvalidArgument
        from aios.abi.home import home_source
        from aios.daemon import home_dir, running_pid

        home = home_dir()
        pid = running_pid(home) if home.exists() else None
        if not remove:
            if output == "json":
                typer.echo(json.dumps({"home": str(home), "source": home_source(), "exists": home.exists(),
                                       "kernel_pid": pid}))
            else:
                typer.echo(str(home))
            return
        if not home.exists():
            typer.echo(f"{home} does not exist; nothing to remove")
            return
        if pid is not None:
            raise Busy(f"a kernel is running for {home} (pid {pid}): stop it with `aios down` first")
        if not home.is_dir() or not looks_like_home(home):
            raise InvalidArgument(f"{home} does not look like an AIOS home (none of {', '.join(MARKERS)}): "
                                  "not removing it")
        if not yes:
            typer.confirm(f"remove {home} with its keys and audit log?", abort=True)
        shutil.rmtree(home)
        typer.echo(f"removed {home}")
