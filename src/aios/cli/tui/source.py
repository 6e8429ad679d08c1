"""The daemon as ``aios top`` sees it: ordinary syscalls over the kernel socket, one at a time.

A :class:`DaemonSource` is a console agent (like every client of
``kernel.sock``).  Its calls block, so the app makes them off its event loop;
a lock keeps them one at a time on the one trap stream."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aios.abi.errors import AIOSError
from aios.abi.sysno import Sys


class DaemonSource:
    def __init__(self, sock_path: Path) -> None:
        from aios.sandbox.channel import TrapClient

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock_path))
        self.client = TrapClient(s)
        self.lock = threading.Lock()

    def _call(self, name: str, *args: Any) -> Any:
        with self.lock:
            return self.client.call(int(Sys[name]), args)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], int]:
        """``(agents, sched rows, kernel stats, when)``: what :meth:`TopModel.update` takes."""
        with self.lock:
            c = self.client
            agents = c.call(int(Sys.AGENT_LIST), (2,))
            sched = c.call(int(Sys.SCHED_STATS), (None,))
            stats = c.call(int(Sys.KERNEL_STATS), ())
        return agents, sched, stats, time.monotonic_ns()

    def act(self, action: str, aid: int) -> str:
        """``kill``, ``suspend`` or ``resume`` agent ``aid``; returns what was done.
        The control capability is asked for and deleted again, so nothing accumulates."""
        op = {"kill": "AGENT_KILL", "suspend": "AGENT_SUSPEND", "resume": "AGENT_RESUME"}[action]
        ctl, ep = self._call("AGENT_CONTROL", 2, aid)
        try:
            if action == "kill":
                self._call(op, ctl, False)
            else:
                self._call(op, ctl)
        finally:
            for slot in (ctl, ep):
                with contextlib.suppress(AIOSError):
                    self._call("CAP_DELETE", slot)
        return {"kill": "killed", "suspend": "suspended", "resume": "resumed"}[action] + f" {aid}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.client.sock.close()
