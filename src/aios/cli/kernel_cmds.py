"""Kernel daemon commands: ``aios up | down | status | ps | spawn | kill | send | events | sched``.

Every command but ``up`` is a client: it connects to ``$AIOS_HOME/kernel.sock``,
becomes a console agent and makes ordinary syscalls over the trap protocol.
Output is a table by default; ``-o json`` prints JSON for scripts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

OutputOpt = typer.Option("table", "-o", "--output", help="table or json")


def _home() -> Path:
    from aios.daemon import home_dir

    return home_dir()


def _connect() -> Any:
    from aios.daemon import socket_path
    from aios.sandbox.channel import TrapClient

    path = socket_path(_home())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        typer.echo(f"no kernel is running for {_home()} (start one with `aios up`)", err=True)
        raise typer.Exit(2) from None
    return TrapClient(s)


ENTRY_MAX = 4096  # characters of an image path or entry point on the command line


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:  # a name too long, a bad byte: not a file we could use
        return False


def _call(c: Any, name: str, *args: Any) -> Any:
    from aios.abi.errors import AIOSError
    from aios.abi.sysno import Sys

    try:
        return c.call(int(Sys[name]), args)
    except AIOSError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


def _emit(rows: Any, output: str, columns: list[str] | None = None, title: str = "") -> None:
    if output == "json":
        typer.echo(json.dumps(rows, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    if isinstance(rows, dict):
        t = Table(title=title, show_header=False)
        t.add_column("key")
        t.add_column("value")
        for k, v in rows.items():
            t.add_row(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    else:
        cols = columns or (list(rows[0]) if rows else [])
        t = Table(title=title)
        for col in cols:
            t.add_column(col)
        for r in rows:
            t.add_row(*(str(r.get(col, "")) for col in cols))
    Console().print(t)


def host_protections() -> dict[str, Any]:
    """Which isolation mechanisms this host offers (what isolated agents can get)."""
    from aios.sandbox.landlock import abi_version
    from aios.sandbox.limits import cgroup_available

    def userns() -> bool:
        try:
            return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
        except (OSError, ValueError):
            return False

    try:
        landlock = abi_version()
    except OSError:
        landlock = 0
    seccomp = Path("/proc/self/status").read_text().find("Seccomp:") >= 0
    return {
        "user_namespaces": userns(),
        "network_namespaces": userns(),
        "landlock_abi": landlock,
        "seccomp": seccomp,
        "cgroups_writable": cgroup_available(),
        "tpm": Path("/dev/tpmrm0").exists(),
        "microvm": False,
    }


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        detach: bool = typer.Option(False, "-d", "--detach", help="run in the background"),
        accept_broken_log: bool = typer.Option(
            False, "--accept-broken-log",
            help="boot even if the audit log fails its check: it is moved aside and a new one records that"),
    ) -> None:
        """Start the kernel for $AIOS_HOME, listening on kernel.sock (mode 0600)."""
        from aios.abi.errors import AlreadyExists
        from aios.daemon import running_pid, serve, socket_path
        from aios.host import run_sync

        home = _home()
        pid = running_pid(home) if home.exists() else None
        if pid:
            typer.echo(f"a kernel is already running for {home} (pid {pid})", err=True)
            raise typer.Exit(1)
        if detach:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            log_path = home / "kernel.log"
            start = log_path.stat().st_size if log_path.exists() else 0
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
            proc = subprocess.Popen(
                [sys.executable, "-m", "aios.cli.main", "up", *(["--accept-broken-log"] if accept_broken_log else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "AIOS_HOME": str(home)},
            )
            for _ in range(200):
                if socket_path(home).exists() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            if proc.poll() is not None:
                with log_path.open("rb") as f:  # what this start wrote: its error is the last line
                    f.seek(start)
                    lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
                why = next((x for x in reversed(lines) if x.startswith("error:")), lines[-1] if lines else "")
                typer.echo(f"kernel failed to start; see {log_path}" + (f"\n{why}" if why else ""), err=True)
                raise typer.Exit(1)
            typer.echo(f"kernel running (pid {proc.pid}), socket {socket_path(home)}")
            return
        typer.echo(f"kernel for {home}: listening on {socket_path(home)} (pid {os.getpid()})")
        try:
            run_sync(serve(home, accept_broken_log=accept_broken_log))
        except AlreadyExists as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None

    @app.command("down")
    def down() -> None:
        """Stop the kernel cleanly."""
        from aios.daemon import running_pid

        home = _home()
        pid = running_pid(home)
        c = _connect()
        _call(c, "KERNEL_SHUTDOWN", 2)
        c.sock.close()
        for _ in range(200):
            if running_pid(home) is None:
                break
            time.sleep(0.05)
        typer.echo(f"kernel stopped (was pid {pid})")

    @app.command("status")
    def status(output: str = OutputOpt) -> None:
        """Kernel statistics and which protections are active on this host."""
        from aios.abi.errors import AIOSError
        from aios.abi.sysno import Sys

        c = _connect()
        st = _call(c, "KERNEL_STATS")
        st["protections"] = host_protections()
        try:  # the audit log's backlog: pending depth, its high-water mark, agents held
            au = c.call(int(Sys.AUDIT_STATUS), ())
            st["audit"] = {key: au.get(key) for key in ("pending", "pending_max", "pending_capacity",
                                                        "held", "holds", "acknowledged", "size")}
        except AIOSError as e:
            st["audit"] = f"unavailable: {e.message}"
        try:  # the memory fabric's embedder (loaded on first use)
            fab = c.call(int(Sys.GET_ASYNC_RESULT), (c.call(int(Sys.MEMD_STATS), (None,)), 60.0))
            st["embedder"] = f"{fab['embedder']} ({fab['dim']}-d): {fab['embedder_reason']}"
        except AIOSError as e:
            st["embedder"] = f"unavailable: {e.message}"
        _emit(st, output, title="kernel")

    @app.command("ps")
    def ps(
        output: str = OutputOpt,
        all_: bool = typer.Option(False, "-a", "--all", help="also exited agents (exit status, fault)"),
    ) -> None:
        """Every agent (with -a, also those that exited, as the kernel journal keeps them)."""
        c = _connect()
        rows = _call(c, "AGENT_LIST", 2)
        cols = ["aid", "name", "parent", "state", "kind", "protections"]
        if all_:
            rows = rows + _call(c, "AGENT_HISTORY", 2)
            rows.sort(key=lambda r: r["aid"])
            cols = ["aid", "name", "parent", "state", "kind", "exit", "fault"]
        _emit(rows, output, cols, "agents")

    @app.command("spawn")
    def spawn(
        image: str = typer.Argument(..., help="an image directory/archive, or module:attribute"),
        name: str = typer.Option("", "--name"),
        executor: str = typer.Option("", "--executor", help="for module:attribute entries"),
        restart: str = typer.Option("", "--restart",
                                    help="no, on-failure or always: also brought back after a kernel crash"),
        output: str = OutputOpt,
    ) -> None:
        """Spawn an agent from a signed image (verified by the kernel) or an entry point."""
        from aios.abi.errors import InvalidArgument

        if len(image) > ENTRY_MAX:
            raise InvalidArgument(f"the image argument is {len(image)} characters long; give an image "
                                  f"directory or archive, or a 'module:attribute' entry (at most {ENTRY_MAX})")
        entry = image
        opts: dict[str, Any] = {"name": name} if name else {}
        if restart:
            opts["restart"] = restart
        if _exists(image):
            entry = "image:" + str(Path(image).resolve())
        elif executor:
            opts["executor"] = executor
        c = _connect()
        handle = _call(c, "AGENT_SPAWN", 2, entry, opts or None)
        aid, _ctl, _ep = _call(c, "GET_ASYNC_RESULT", handle, 60.0)
        _emit({"aid": aid, "entry": entry}, output, title="spawned")

    @app.command("kill")
    def kill(aid: int, tree: bool = typer.Option(False, "--tree")) -> None:
        """Kill an agent (with --tree, its subtree)."""
        c = _connect()
        ctl, _ep = _call(c, "AGENT_CONTROL", 2, aid)
        _call(c, "AGENT_KILL", ctl, tree)
        typer.echo(f"killed {aid}")

    @app.command("send")
    def send(aid: int, message: str) -> None:
        """Send MESSAGE (UTF-8) to an agent's mailbox."""
        c = _connect()
        _ctl, ep = _call(c, "AGENT_CONTROL", 2, aid)
        _call(c, "IPC_SEND", ep, message.encode())
        typer.echo(f"sent {len(message.encode())} bytes to {aid}")

    @app.command("events")
    def events(
        pattern: str = typer.Argument("**"),
        count: int = typer.Option(0, "--count", "-n", help="stop after N events (0: follow)"),
        output: str = OutputOpt,
    ) -> None:
        """Follow the event bus."""
        c = _connect()
        sid = _call(c, "EVENT_SUBSCRIBE", 4, pattern, {"depth": 65536})
        typer.echo(f"following {pattern} (subscription {sid})", err=True)  # events after this line are seen
        seen = 0
        while count == 0 or seen < count:
            ev = _call(c, "EVENT_RECV", sid, None)
            seen += 1
            if output == "json":
                typer.echo(json.dumps(ev, default=str))
            else:
                typer.echo(f"{ev['seq']:>7} {ev['topic']:<32} agent={ev['source']} {json.dumps(ev['data'], default=str)}")

    @app.command("sched")
    def sched(output: str = OutputOpt) -> None:
        """Scheduling statistics of every agent."""
        from rich.console import Console

        from aios.cli.sched import render_sched_table

        c = _connect()
        rows = _call(c, "SCHED_STATS", None)
        if output == "json":
            typer.echo(json.dumps(rows))
            return
        Console().print(render_sched_table(rows))


def _reload_via_kernel() -> dict[str, Any]:
    """``aios policy reload`` with a kernel running: ask it (POLICY_RELOAD)."""
    from aios.daemon import socket_path

    if not socket_path(_home()).exists():
        return {"ok": True, "kernel": "not running: the files validated; the next boot loads them"}
    c = _connect()
    result: dict[str, Any] = _call(c, "POLICY_RELOAD", 2)
    return result


def _node_key() -> Any:
    """``aios token mint`` without --key: the node identity of $AIOS_HOME."""
    from aios.lib.identity import Keystore

    return Keystore(_home(), None).node_identity()._key


def _install_hooks() -> None:
    import aios.cli.policy as policy_cli
    import aios.cli.token as token_cli

    policy_cli.reload_via = _reload_via_kernel
    token_cli.default_key = _node_key


_install_hooks()
