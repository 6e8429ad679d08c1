"""Kernel daemon commands: ``aios up | down | status | ps | spawn | kill | send | call | events | sched``.

Every command but ``up`` is a client: it connects to ``$AIOS_HOME/kernel.sock``,
becomes a console agent and makes ordinary syscalls over the trap protocol.
An agent is named by its id or, wherever an id is taken, by the name of
exactly one live agent (``aios kill echo``).
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

OutputOpt = typer.Option("table", "-o", "--output", help="table, wide (every column) or json")


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


def user_code_entry(entry: str) -> str:
    """``FILE.py:attr``, or ``module:attr`` of a module in the current directory, as the
    kernel's file form ``/abs/path/file.py:attr`` (the daemon does not share this
    command's directory or Python path); any other ``module:attr`` as given."""
    path, sep, attr = entry.rpartition(":")
    if not sep or not attr.isidentifier():
        return entry
    if path.endswith(".py"):
        f = Path(path)
        if not _exists(path) or not f.is_file():
            from aios.abi.errors import NoSuchObject

            raise NoSuchObject(f"no such file: {path}")
        return f"{f.resolve()}:{attr}"
    if all(part.isidentifier() for part in path.split(".")):
        base = Path.cwd().joinpath(*path.split("."))
        for f in (base.with_suffix(".py"), base / "__init__.py"):
            if f.is_file():
                return f"{f.resolve()}:{attr}"
    return entry


def agent_id(c: Any, target: str) -> int:
    """An agent named on the command line: its id, or the name of exactly one live agent."""
    from aios.abi.errors import InvalidArgument, NoSuchAgent

    if target.isdigit():
        return int(target)
    if not target or len(target) > 256:
        raise InvalidArgument("an agent is named by its id or by its name (at most 256 characters)")
    rows = _call(c, "AGENT_LIST", 2)
    live = [r["aid"] for r in rows if r["name"] == target and r["state"] not in ("dead", "zombie")]
    if len(live) == 1:
        return int(live[0])
    if not live:
        raise NoSuchAgent(f"no live agent is named {target!r} (see `aios ps`)")
    raise InvalidArgument(f"{len(live)} live agents are named {target!r} (ids {', '.join(map(str, live))}): "
                          "give the id")


def _emit(rows: Any, output: str, columns: list[str] | None = None, title: str = "",
          wide: tuple[str, ...] = ()) -> None:
    from aios.cli.output import emit

    emit(rows, output, columns, title, wide)


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
        metrics: str = typer.Option("", "--metrics", metavar="HOST:PORT",
                                    help="serve Prometheus metrics, e.g. 127.0.0.1:9464 (off by default)"),
        metrics_allow_remote: bool = typer.Option(False, "--metrics-allow-remote",
                                                  help="let --metrics listen on a non-loopback address"),
        trace: float | None = typer.Option(None, "--trace", metavar="RATIO",
                                    help="trace IPC calls and semantic routes with OpenTelemetry, sampling "
                                         "RATIO (0..1) of requests; exporter from OTEL_TRACES_EXPORTER (otlp)"),
    ) -> None:
        """Start the kernel for $AIOS_HOME, listening on kernel.sock (mode 0600)."""
        from aios.abi.errors import AlreadyExists
        from aios.daemon import running_pid, serve, socket_path
        from aios.host import run_sync
        from aios.kmod.observe.service import parse_address

        observe: dict[str, Any] = {}
        flags: list[str] = []
        if metrics:
            parse_address(metrics, metrics_allow_remote)  # refused here, before anything starts
            observe.update(metrics=metrics, metrics_allow_remote=metrics_allow_remote)
            flags += ["--metrics", metrics, *(["--metrics-allow-remote"] if metrics_allow_remote else [])]
        if trace is not None:
            from aios.abi.errors import InvalidArgument
            from aios.kmod.observe.otel import sdk_provider

            if not 0.0 <= trace <= 1.0:
                raise InvalidArgument(f"--trace takes a sample ratio in [0, 1], got {trace}")
            flags += ["--trace", repr(trace)]
            if not detach:
                observe.update(trace=trace, trace_provider=sdk_provider())
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
                [sys.executable, "-m", "aios.cli.main", "up", *(["--accept-broken-log"] if accept_broken_log else []),
                 *flags],
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
        if metrics:
            typer.echo(f"metrics on http://{metrics}/metrics")
        try:
            run_sync(serve(home, accept_broken_log=accept_broken_log, **observe))
        except AlreadyExists as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None
        finally:
            if observe.get("trace_provider") is not None:
                observe["trace_provider"].shutdown()  # flush the spans still batched

    @app.command("down")
    def down() -> None:
        """Stop the kernel cleanly."""
        from aios.daemon import running_pid

        home = _home()
        pid = running_pid(home)
        if pid is None:
            typer.echo(f"no kernel is running for {home}; nothing to stop")
            return
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
        st = {"home": str(_home()), **_call(c, "KERNEL_STATS")}
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
        cols = ["aid", "name", "parent", "state", "kind", "fault", "protections"]
        wide: tuple[str, ...] = ("parent", "protections")
        if all_:
            rows = rows + _call(c, "AGENT_HISTORY", 2)
            rows.sort(key=lambda r: r["aid"])
            cols = ["aid", "name", "parent", "state", "kind", "exit", "fault"]
            wide = ("parent",)
        _emit(rows, output, cols, "agents", wide=wide)

    @app.command("spawn")
    def spawn(
        image: str = typer.Argument(..., help="an image directory/archive, FILE.py:Class, or module:attribute "
                                           "(a module in the current directory is shipped by its path)"),
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
        else:
            entry = user_code_entry(image)
            if executor:
                opts["executor"] = executor
        c = _connect()
        from aios.cli.output import progress

        with progress(f"spawning {image} (the kernel loads and verifies it)"):
            handle = _call(c, "AGENT_SPAWN", 2, entry, opts or None)
            aid, _ctl, _ep = _call(c, "GET_ASYNC_RESULT", handle, 60.0)
        _emit({"aid": aid, "entry": entry}, output, title="spawned")

    @app.command("kill")
    def kill(agent: str = typer.Argument(..., metavar="ID|NAME"),
             tree: bool = typer.Option(False, "--tree")) -> None:
        """Kill an agent (with --tree, its subtree)."""
        c = _connect()
        aid = agent_id(c, agent)
        ctl, _ep = _call(c, "AGENT_CONTROL", 2, aid)
        _call(c, "AGENT_KILL", ctl, tree)
        typer.echo(f"killed {aid}")

    @app.command("send")
    def send(agent: str = typer.Argument(..., metavar="ID|NAME"), message: str = typer.Argument(...)) -> None:
        """Send MESSAGE (UTF-8) to an agent's mailbox."""
        c = _connect()
        aid = agent_id(c, agent)
        _ctl, ep = _call(c, "AGENT_CONTROL", 2, aid)
        _call(c, "IPC_SEND", ep, message.encode())
        typer.echo(f"sent {len(message.encode())} bytes to {aid}")

    @app.command("call")
    def call(
        agent: str = typer.Argument(..., metavar="ID|NAME"),
        message: str = typer.Argument(...),
        timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the reply"),
        output: str = typer.Option("text", "-o", "--output", help="text (the reply) or json"),
    ) -> None:
        """Call an agent with MESSAGE (UTF-8) and print its reply."""
        c = _connect()
        aid = agent_id(c, agent)
        _ctl, ep = _call(c, "AGENT_CONTROL", 2, aid)
        reply = _call(c, "IPC_CALL", ep, message.encode(), timeout)
        payload = reply.payload if hasattr(reply, "payload") else reply
        if isinstance(payload, bytes):
            try:
                text, binary = payload.decode(), False
            except UnicodeDecodeError:
                text, binary = payload.hex(), True
        else:
            text, binary = json.dumps(payload, default=str), False
        if output == "json":
            typer.echo(json.dumps({"aid": aid, "reply": text, "encoding": "hex" if binary else "utf-8"}))
        else:
            typer.echo(text)

    @app.command("events")
    def events(
        pattern: str = typer.Argument("**"),
        count: int = typer.Option(0, "--count", "-n", help="stop after N events (0: follow)"),
        since: str = typer.Option("", "--since", help="history first: a duration (30s, 5m, 2h, 1d) or an ISO time"),
        tail: int = typer.Option(10, "--tail", help="at most this many past events (0: none)"),
        all_: bool = typer.Option(False, "--all", help="also the traffic of aios commands themselves (consoles)"),
        follow: bool = typer.Option(True, "--follow/--no-follow", help="--no-follow: print the history and exit"),
        output: str = OutputOpt,
    ) -> None:
        """Recent history, then follow the event bus (Ctrl-C stops)."""
        from aios.abi.errors import WouldBlock
        from aios.abi.sysno import Sys
        from aios.cli.output import seconds_since

        c = _connect()
        opts: dict[str, Any] = {"depth": 65536}
        if since:
            opts["since_s"] = seconds_since(since)
        if tail or since:
            opts["backlog"] = 4096  # trimmed to --tail here, after the consoles' events are left out
        consoles = set() if all_ else {r["aid"] for r in _call(c, "AGENT_LIST", 2) if r["name"] == "console"}
        sid = _call(c, "EVENT_SUBSCRIBE", 4, pattern, opts)
        past: list[dict[str, Any]] = []
        while True:  # the history was queued by the subscribe call itself
            try:
                ev = c.call(int(Sys.EVENT_RECV), (sid, 0))
            except WouldBlock:
                break
            if all_ or not _console_traffic(ev, consoles):
                past.append(ev)
        past = past[len(past) - tail:] if tail and len(past) > tail else past
        hidden = "" if all_ else "; aios commands' own traffic hidden (--all shows it)"
        seen = 0
        for ev in past[:count] if count else past:
            seen += 1
            _print_event(ev, output)
        if not follow:
            return
        typer.echo(f"following {pattern} (subscription {sid}): {len(past)} past events above; waiting for new "
                   f"events (Ctrl-C stops){hidden}", err=True)  # events after this line are seen
        while count == 0 or seen < count:
            ev = _call(c, "EVENT_RECV", sid, None)
            if not all_ and _console_traffic(ev, consoles):
                continue
            seen += 1
            _print_event(ev, output)

    @app.command("sched")
    def sched(output: str = OutputOpt) -> None:
        """Scheduling statistics of every agent (-o wide adds slice, vruntime and waits)."""
        from aios.cli.output import check_format
        from aios.cli.sched import print_sched

        check_format(output)
        c = _connect()
        print_sched(_call(c, "SCHED_STATS", None), output)


def _print_event(ev: dict[str, Any], output: str) -> None:
    from aios.cli.output import event_line

    typer.echo(json.dumps(ev, default=str) if output == "json" else event_line(ev, wide=output == "wide"))


def _console_traffic(ev: dict[str, Any], consoles: set[int]) -> bool:
    """An event made by an ``aios`` command's own console agent (learning new consoles)."""
    data = ev.get("data") or {}
    if data.get("name") == "console" and ev["topic"].startswith("agent.lifecycle."):
        consoles.add(data.get("agent", ev["source"]))
        return True
    if ev["topic"] == "agent.control.taken":
        return True  # an operator command reaching for an agent
    return data.get("agent") in consoles or (ev["source"] in consoles and not ev["topic"].startswith("agent."))


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
