"""The zygote: a pre-imported process that forks isolated agents on request.

Starting a Python interpreter and importing msgpack, the SDK and the agent
runtime costs tens of milliseconds and ~20 MB; forking a process that has
already done so costs about a millisecond and shares those pages
copy-on-write.  So the kernel starts one zygote (``python -m
aios.sandbox.zygote FD``, a fresh interpreter with no kernel state in it),
which imports everything, freezes the GC generations (so the collector does
not touch, and thereby copy, every inherited object) and waits.

Control channel.  A ``SOCK_SEQPACKET`` socketpair: one msgpack message per
packet, so file descriptors ride along with the message they belong to::

    kernel -> zygote   ["spawn", req, spec]  + SCM_RIGHTS [trap socket]
                       ["kill", agent, signo]
                       ["quit"]
    zygote -> kernel   ["ready", pid]
                       ["spawned", req, agent, pid]
                       ["exit", agent, pid, exit_code, signo]
                       ["security", agent, pid, kind, detail]

The zygote is single-threaded and blocks only in ``select``.  It is also a
child subreaper, so whatever an agent forks is reaped here, and it kills the
agent's whole cgroup when the agent exits.  It owns the seccomp
user-notification listeners of its children: a denied syscall arrives here,
is answered EPERM, and becomes a ``security`` message naming the syscall.

:class:`Zygote` is the kernel-side client (asyncio, uvloop-compatible).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as _errno
import gc
import importlib
import itertools
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from aios.abi import wire
from aios.sandbox import importer, limits, seccomp
from aios.sandbox.channel import TrapClient, run_entry
from aios.sandbox.process import (
    EXIT_SANDBOX_FAILED,
    AgentSpec,
    SandboxSetupError,
    code_paths,
    confine,
    install_audit_hook,
)

PR_SET_CHILD_SUBREAPER = 36
CTRL_MAX = 256 * 1024
RECV_TIMEOUT_S = 0.05


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True)


# -- inside the agent child ----------------------------------------------------------


def _child_main(spec: AgentSpec, chan_fd: int, notify_fd: int) -> None:
    """Runs in the forked child; never returns."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGALRM):
            signal.signal(s, signal.SIG_DFL)
        keep = {0, 1, 2, chan_fd, notify_fd}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sock = socket.socket(fileno=chan_fd)
        client = TrapClient(sock)
        notify = socket.socket(fileno=notify_fd)
        try:
            prot = confine(spec, notify)
        except SandboxSetupError as exc:
            client.control(wire.Control.EXIT, (EXIT_SANDBOX_FAILED, "sandbox", str(exc)))
            os._exit(EXIT_SANDBOX_FAILED)
        notify.close()
        client.control(wire.Control.HELLO, (spec.agent_id, os.getpid(), prot.to_wire()))
        sys.path[:0] = list(spec.code_paths)
        install_audit_hook(
            spec, lambda kind, detail: client.control(wire.Control.SECURITY, (kind, detail))
        )
        mod_name, _, fn_name = spec.entry.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except Exception as exc:
            client.control(wire.Control.EXIT, (1, "exception", f"cannot load {spec.entry}: {exc}"))
            os._exit(1)
        outcome = run_entry(fn, spec.args, client)
        status = outcome.status
        with contextlib.suppress(OSError):
            client.control(
                wire.Control.EXIT, (outcome.status, outcome.cause, outcome.message[:4096])
            )
    except BaseException as exc:
        status = 1
        with contextlib.suppress(BaseException):
            os.write(2, f"aios agent {spec.agent_id}: runtime failure: {exc!r}\n".encode())
    finally:
        os._exit(status)


# -- the zygote process ----------------------------------------------------------------


class _ZygoteLoop:
    def __init__(self, ctrl: socket.socket) -> None:
        self.ctrl = ctrl
        self.children: dict[int, tuple[int, str]] = {}  # pid -> (agent id, cgroup name)
        self.notify_socks: dict[socket.socket, int] = {}  # receiving end -> child pid
        self.listeners: dict[int, int] = {}  # listener fd -> child pid
        self.stale: set[str] = set()  # cgroups whose removal must be retried
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGALRM, lambda *_: None)  # interrupts a notification receive

    def send(self, *msg: Any) -> None:
        with contextlib.suppress(OSError):
            self.ctrl.send(_pack(list(msg)))

    def run(self) -> None:
        self.send("ready", os.getpid())
        while True:
            rlist: list[Any] = [self.ctrl, self.wake_r, *self.notify_socks, *self.listeners]
            try:
                ready, _, _ = select.select(rlist, [], [], 0.1 if self.stale else None)
            except InterruptedError:
                continue
            if self.stale:
                self.stale = {cg for cg in self.stale if not limits.remove_cgroup(cg)}
            for r in ready:
                if r is self.ctrl:
                    if not self.on_ctrl():
                        return
                elif r == self.wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 4096)
                    self.reap()
                elif isinstance(r, socket.socket):
                    self.on_notify_sock(r)
                else:
                    self.on_listener(r)

    def on_ctrl(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctrl, CTRL_MAX, 4)
        except OSError:
            return False
        if not data:
            return False
        try:
            msg = _unpack(data)
            op = msg[0]
        except Exception:
            for fd in fds:
                os.close(fd)
            return True
        if op == "spawn" and len(fds) == 1:
            self.spawn(msg[1], AgentSpec.from_wire(msg[2]), fds[0])
        elif op == "kill":
            self.kill(int(msg[1]), int(msg[2]))
        elif op == "quit":
            self.shutdown()
            return False
        for fd in fds[1 if op == "spawn" else 0 :]:
            os.close(fd)
        return True

    def spawn(self, req: int, spec: AgentSpec, chan_fd: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        pid = os.fork()
        if pid == 0:
            parent.close()
            _child_main(spec, chan_fd, child.detach())
        child.close()
        os.close(chan_fd)
        self.children[pid] = (spec.agent_id, f"agent-{spec.agent_id}-{pid}")
        parent.setblocking(False)
        self.notify_socks[parent] = pid
        self.send("spawned", req, spec.agent_id, pid)

    def on_notify_sock(self, s: socket.socket) -> None:
        pid = self.notify_socks.pop(s)
        try:
            _msg, fds, _f, _a = socket.recv_fds(s, 16, 1)
        except OSError:
            fds = []
        s.close()
        if pid in self.children and fds:
            self.listeners[fds[0]] = pid
        else:
            for fd in fds:
                os.close(fd)

    def on_listener(self, fd: int) -> None:
        pid = self.listeners.get(fd, 0)
        # select said a notification was pending, but it is withdrawn if the calling task
        # dies first, and the receive then blocks (O_NONBLOCK does not apply to it): a
        # timer interrupts it (EINTR) so no agent can stall the zygote that way
        signal.setitimer(signal.ITIMER_REAL, RECV_TIMEOUT_S)
        try:
            n = seccomp.receive(fd)
        except OSError as exc:
            if exc.errno in (_errno.ENOENT, _errno.EINTR, _errno.EAGAIN):
                # the caller died between notification and receive, or spurious wakeup
                if pid not in self.children:
                    self.drop_listener(fd)
                return
            self.drop_listener(fd)
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        with contextlib.suppress(OSError):
            seccomp.respond(fd, n.id, _errno.EPERM)
        agent = self.children.get(pid, (-1, ""))[0]
        self.send("security", agent, n.pid, "syscall", seccomp.syscall_name(n.nr))

    def drop_listener(self, fd: int) -> None:
        self.listeners.pop(fd, None)
        with contextlib.suppress(OSError):
            os.close(fd)

    def shutdown(self) -> None:
        """Kill every agent (and its descendants), reap them, remove their cgroups."""
        import time

        for pid, (_aid, cg) in list(self.children.items()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            self.kill_group(cg)
        deadline = time.monotonic() + 3.0
        groups = {cg for _aid, cg in self.children.values()} | self.stale
        while self.children and time.monotonic() < deadline:
            try:
                pid, _status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.pop(pid, None)
        while groups and time.monotonic() < deadline:
            for cg in list(groups):
                self.kill_group(cg)
                if limits.remove_cgroup(cg):
                    groups.discard(cg)
            if groups:
                time.sleep(0.02)

    def kill(self, agent: int, signo: int) -> None:
        for pid, (aid, cg) in list(self.children.items()):
            if aid == agent:
                with contextlib.suppress(OSError):
                    os.kill(pid, signo)
                if signo == signal.SIGKILL:
                    self.kill_group(cg)

    def kill_group(self, cg: str) -> None:
        procs = limits.cgroup_stat(cg, "pids", "cgroup.procs")
        for line in (procs or "").split():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(line), signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue  # an agent's orphaned descendant (we are a subreaper)
            agent, cg = entry
            for fd, lpid in list(self.listeners.items()):
                if lpid == pid:
                    self.drop_listener(fd)
            for s, spid in list(self.notify_socks.items()):
                if spid == pid:
                    self.notify_socks.pop(s)
                    s.close()
            self.kill_group(cg)
            counters = self.counters(cg)
            if not limits.remove_cgroup(cg):
                self.stale.add(cg)
            code = os.waitstatus_to_exitcode(status)
            self.send(
                "exit", agent, pid, code if code >= 0 else 0, -code if code < 0 else 0, counters
            )

    def counters(self, cg: str) -> dict[str, int]:
        out: dict[str, int] = {}
        events = limits.cgroup_stat(cg, "pids", "pids.events") or ""
        for line in events.splitlines():
            k, _, v = line.partition(" ")
            if k == "max" and v.isdigit():
                out["pids_max"] = int(v)
        fail = limits.cgroup_stat(cg, "memory", "memory.failcnt")
        if fail and fail.isdigit():
            out["mem_failcnt"] = int(fail)
        return out


def zygote_main(ctrl_fd: int) -> None:
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # warm what agents use, then freeze so forks share it untouched
    limits.cgroup_layout()
    code_paths()
    importer.preload()
    importlib.import_module("aios.abi.errors")
    importlib.import_module("aios.sandbox.landlock")
    with contextlib.suppress(ImportError):
        importlib.import_module("aios.sdk")
    ctrl = socket.socket(fileno=ctrl_fd)
    gc.collect()
    gc.freeze()
    _ZygoteLoop(ctrl).run()


# -- kernel-side client -------------------------------------------------------------------


ExitCallback = Callable[
    [int, int, int, int, dict[str, int]], None
]  # agent, pid, code, signal, counters
SecurityCallback = Callable[[int, int, str, str], None]  # agent, pid, kind, detail


class Zygote:
    """Kernel-side handle on a zygote process (asyncio; works with uvloop)."""

    def __init__(
        self,
        *,
        on_exit: ExitCallback | None = None,
        on_security: SecurityCallback | None = None,
        scrub_env: bool = True,
    ) -> None:
        self.scrub_env = scrub_env  # False only for the security mutants
        self.on_exit = on_exit
        self.on_security = on_security
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self._ctrl: socket.socket | None = None
        self._req = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._ready: asyncio.Future[int] | None = None
        self.closed = False

    async def start(self, python: str = sys.executable) -> None:
        loop = asyncio.get_running_loop()
        from aios.sandbox.environment import agent_environment

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = agent_environment(scrub=self.scrub_env)  # agents fork from here: no secrets
        self.proc = subprocess.Popen(
            [python, "-m", "aios.sandbox.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
            close_fds=True,
        )
        theirs.close()
        ours.setblocking(False)
        self._ctrl = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        self.pid = await asyncio.wait_for(self._ready, 30)

    def _on_readable(self) -> None:
        assert self._ctrl is not None
        while True:
            try:
                data = self._ctrl.recv(CTRL_MAX)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            msg = _unpack(data)
            op = msg[0]
            if op == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(int(msg[1]))
            elif op == "spawned":
                fut = self._waiting.pop(int(msg[1]), None)
                if fut is not None and not fut.done():
                    fut.set_result(int(msg[3]))
            elif op == "exit" and self.on_exit is not None:
                self.on_exit(int(msg[1]), int(msg[2]), int(msg[3]), int(msg[4]), dict(msg[5]))
            elif op == "security" and self.on_security is not None:
                self.on_security(int(msg[1]), int(msg[2]), str(msg[3]), str(msg[4]))

    def _lost(self) -> None:
        if self._ctrl is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._ctrl.fileno())
        self.closed = True
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("zygote is gone"))
        self._waiting.clear()

    async def spawn(self, spec: AgentSpec, chan: socket.socket) -> int:
        """Fork an agent; ``chan`` (its end of the trap socketpair) is handed over. Returns the pid."""
        if self._ctrl is None or self.closed:
            raise ConnectionError("zygote not running")
        req = next(self._req)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        socket.send_fds(self._ctrl, [_pack(["spawn", req, spec.to_wire()])], [chan.fileno()])
        return await fut

    def kill(self, agent: int, signo: int = signal.SIGKILL) -> None:
        if self._ctrl is not None and not self.closed:
            with contextlib.suppress(OSError):
                self._ctrl.send(_pack(["kill", agent, signo]))

    async def close(self) -> None:
        if self._ctrl is not None and not self.closed:
            with contextlib.suppress(OSError):
                self._ctrl.send(_pack(["quit"]))
            self._lost()
            self._ctrl.close()
        if self.proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 5)
            except TimeoutError:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    zygote_main(int(sys.argv[1]))
