"""Entry point of the ``aios`` command.

Command groups live in their own modules under :mod:`aios.cli`; any module there
that defines ``app`` (a :class:`typer.Typer`) and ``NAME`` is mounted as
``aios NAME ...``.  Modules must import heavy dependencies inside their
commands, so ``aios --help`` stays fast.

Errors are caught once, here: a taxonomy error (bad input, a refused call, a
damaged file) prints ``error: [CODE] message`` and exits 1; an operating
system error (a name too long, a permission) prints the same way; anything
else is a bug and says so.  No traceback is shown unless ``--debug`` is given
(anywhere on the command line) or ``AIOS_DEBUG=1`` is set.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import traceback

import click
import typer

import aios.cli as _cli_pkg
from aios import bench as _bench

app = typer.Typer(
    name="aios",
    help="AIOS: an operating system for AI agents.  --debug (anywhere) shows tracebacks.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("aios")
        except PackageNotFoundError:
            from aios import __version__ as v
        typer.echo(f"aios {v} (Python {sys.version.split()[0]})")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines on stderr (also AIOS_QUIET=1)"),
) -> None:
    """AIOS: an operating system for AI agents.  --debug (anywhere) shows tracebacks."""
    if quiet:
        from aios.cli import output

        output.quiet = True


def _mount_groups() -> None:
    for mod in pkgutil.iter_modules(_cli_pkg.__path__):
        if mod.name in ("main",) or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"aios.cli.{mod.name}")
        sub = getattr(module, "app", None)
        name = getattr(module, "NAME", None)
        if isinstance(sub, typer.Typer) and name:
            app.add_typer(sub, name=name)
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def bench_cmd(
    ctx: typer.Context,
    name: str = typer.Argument("", help="benchmark name (see --list)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    list_: bool = typer.Option(False, "--list", help="list the benchmarks"),
    help_: bool = typer.Option(False, "--help", "-h",
                               help="show this message, or with NAME the benchmark's own options"),
) -> None:
    """Run a benchmark; it measures against a baseline in the same run.

    `aios bench NAME --help` lists that benchmark's options.
    """
    if help_ and not name:
        typer.echo(ctx.get_help())
        typer.echo("\nbenchmarks: " + ", ".join(_bench.names()))
        return
    if list_ or not name:
        for n in _bench.names():
            typer.echo(n)
        return
    try:
        fn = _bench.load(name)
    except KeyError:
        typer.echo(f"no such benchmark: {name} (have: {', '.join(_bench.names())})", err=True)
        raise typer.Exit(2) from None
    if help_:  # each benchmark parses its own options: its argparse prints them and exits 0
        try:
            fn(["--help"])
        except SystemExit as e:
            raise typer.Exit(e.code if isinstance(e.code, int) else 0) from None
        return
    from aios.cli.output import progress

    with progress(f"bench {name}: measuring against a baseline in the same run"):
        result = fn(list(ctx.args))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"bench {name}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in result.items():
            table.add_row(k, f"{v:,.4g}" if isinstance(v, float) else str(v))
        Console().print(table)


def main() -> None:
    debug = "--debug" in sys.argv[1:] or os.environ.get("AIOS_DEBUG", "") not in ("", "0")
    sys.argv[1:] = [a for a in sys.argv[1:] if a != "--debug"]
    _mount_groups()
    try:
        import uvloop  # noqa: F401  (installed policy is chosen where loops are made)
    except ImportError:
        pass
    try:
        rc = app(standalone_mode=False, prog_name="aios")
    except click.exceptions.Exit as e:  # typer.Exit: the command chose its exit code
        rc = e.exit_code
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        rc = 130
    except click.ClickException as e:  # a usage error: click's own message
        e.show()
        rc = e.exit_code
    except Exception as e:
        rc = _report(e, debug)
    sys.exit(rc if isinstance(rc, int) else 0)


def _report(e: BaseException, debug: bool) -> int:
    """The one place a failed command is explained to its user."""
    from aios.abi.errors import AIOSError

    if debug:
        traceback.print_exception(e)
    if isinstance(e, AIOSError):
        typer.echo(f"error: {e}", err=True)
        return 1
    if isinstance(e, OSError):
        where = f" ({e.filename if len(str(e.filename)) <= 200 else str(e.filename)[:200] + '...'})" if e.filename else ""
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        return 1
    typer.echo(f"internal error: {type(e).__name__}: {e}" + ("" if debug else " (run with --debug for the traceback)"),
               err=True)
    return 70


if __name__ == "__main__":
    main()
