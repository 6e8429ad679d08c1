"""The kernel daemon: ``aios up``.

One kernel per ``$AIOS_HOME``.  The daemon takes an exclusive ``flock`` on
``kernel.lock`` (a second ``aios up`` on the same home is told who holds it),
writes ``kernel.pid``, boots the kernel and listens on ``kernel.sock`` (mode
0600: the file's owner is the only one who may connect, which is the
operator's authentication).

Every connection on the socket becomes a *console agent*: an AIOS agent
like any other, attached as a remote agent, whose syscalls arrive as trap
frames (:mod:`aios.abi.wire`) and go through the same syscall table.  A
console holds the operator's authority: every right (ADMIN included) on a
child of init's authority.  So ``aios ps``, ``aios kill``, ``aios events``
are ordinary syscalls made by an ordinary, if powerful, agent; there is no
second control interface to keep secure.  When the connection closes, the
console agent exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from pathlib import Path
from typing import Any

from aios.abi import limits
from aios.abi.errors import AlreadyExists
from aios.abi.home import aios_home
from aios.abi.rights import ALL_RIGHTS
from aios.kernel.agents import Agent
from aios.kernel.events import EVENT_HISTORY, EventHistory
from aios.kernel.kernel import Kernel
from aios.kernel.lifecycle import SpawnPlan, spawn


def home_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """``$AIOS_HOME``, else the per-user default (:func:`aios.abi.home.default_home`)."""
    return aios_home(home).resolve()


def socket_path(home: Path) -> Path:
    return home / "kernel.sock"


def pid_path(home: Path) -> Path:
    return home / "kernel.pid"


def running_pid(home: Path) -> int | None:
    """The pid of the kernel serving ``home``, if one holds its lock."""
    lock = home / "kernel.lock"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(pid_path(home).read_text().strip() or 0) or None
        except (OSError, ValueError):
            return -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Console:
    """One connection on the kernel socket, as an agent."""

    def __init__(self, k: Kernel) -> None:
        from aios.sandbox.channel import RemoteAgentChannel

        self.k = k
        plan = SpawnPlan(k.init, k.root_authority, {"name": "console", "rights": int(ALL_RIGHTS),
                                                     "directory": ["READ", "WRITE", "GRANT"],
                                                     "events": ["READ", "WRITE", "GRANT", "ADMIN"]})
        plan.quota = plan.quota.__class__(memory=limits.ROOT_QUOTA_MEMORY // 2, agents=limits.ROOT_QUOTA_AGENTS // 2)
        plan.executor = "console"
        self.agent: Agent = spawn(k, k.init, k.root_authority, "console", plan)[0]
        self.channel = RemoteAgentChannel(self._trap, on_close=self._closed, on_error=self._error)
        k.executors.remote.attach(self.agent, self.channel.reply, self._terminated, "console")
        k.executors.live.add(self.agent.aid)

    def _trap(self, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        if self.agent.alive:
            self.k.executors.remote.trap(self.agent, seq, sysno, args)

    def _error(self, exc: Exception) -> None:
        self.k.publish("security.violation", self.agent.aid, agent=self.agent.aid, error="EPROTO",
                       message=str(exc))
        self._closed()

    def _closed(self) -> None:
        self.k.executors.live.discard(self.agent.aid)
        if self.agent.alive:
            self.k.exit(self.agent, None)
        self.k.kick()

    def _terminated(self, _a: Agent) -> None:
        self.k.executors.live.discard(self.agent.aid)
        with contextlib.suppress(Exception):
            self.channel.close()


async def serve(home: Path, *, ready: asyncio.Event | None = None, accept_broken_log: bool = False,
                **observe: Any) -> int:
    """Run a kernel for ``home`` until ``aios down`` or SIGTERM/SIGINT; returns an exit code.
    ``observe``: the observability fields of :class:`~aios.boot.BootConfig` (``metrics``,
    ``metrics_allow_remote``, ``trace``)."""
    from aios.host import start_kernel

    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o711)  # agents' uids may traverse to their own dirs and images; keys/ stays 0700
    lock_fd = os.open(home / "kernel.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        pid = running_pid(home)
        raise AlreadyExists(f"a kernel is already running for {home} (pid {pid})") from None
    sock = socket_path(home)
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    pid_path(home).write_text(f"{os.getpid()}\n")
    try:
        k = start_kernel(home=home, accept_broken_log=accept_broken_log, journal=True, initd=True, **observe)
    except BaseException:  # boot refused (a damaged audit log, a corrupt keystore): leave no trace
        with contextlib.suppress(FileNotFoundError):
            pid_path(home).unlink()
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
        raise
    k.home = home
    k.ext[EVENT_HISTORY] = EventHistory(k.bus)  # `aios events --since`: what just happened
    loop = asyncio.get_running_loop()
    old_umask = os.umask(0o177)
    try:
        server = await loop.create_unix_server(lambda: Console(k).channel, path=str(sock))
    finally:
        os.umask(old_umask)
    os.chmod(sock, 0o600)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, k.stop)
    k.publish("kernel.listening", 0, socket=str(sock), pid=os.getpid())
    if ready is not None:
        ready.set()
    try:
        await k.run()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        await k.executors.close()
        k.close()
        for p in (sock, pid_path(home)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    return 0
