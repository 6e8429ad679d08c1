"""``aios top``: watch a running kernel's agents and scheduler live (the ``tui`` extra)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top(interval: float = typer.Option(1.0, "--interval", "-n", help="seconds between refreshes")) -> None:
        """Live agents (state, executor, CPU share, weight, mailbox, memory) and the scheduler;
        s sort, / filter, k kill, z suspend, r resume, q quit."""
        from aios.abi.errors import InvalidArgument
        from aios.daemon import home_dir, socket_path

        if not 0.1 <= interval <= 3600:
            raise InvalidArgument(f"--interval must be between 0.1 and 3600 seconds, got {interval}")
        try:
            from aios.cli.tui.app import TopApp
        except ImportError:
            typer.echo("aios top needs Textual: pip install 'aios[tui]'", err=True)
            raise typer.Exit(2) from None
        from aios.cli.tui.source import DaemonSource

        home = home_dir()
        try:
            source = DaemonSource(socket_path(home))
        except OSError:
            typer.echo(f"no kernel is running for {home} (start one with `aios up`)", err=True)
            raise typer.Exit(2) from None
        try:
            TopApp(source, interval).run()
        finally:
            source.close()
