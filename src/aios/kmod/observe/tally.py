"""What the metrics need counted as it happens, and nothing else.

Most of what ``aios_*`` metrics report is read from kernel state when
Prometheus scrapes (:mod:`aios.kmod.observe.metrics`): agents, mailboxes,
the run queue, scheduler entities, the audit log.  A few things leave no
trace in that state and must be counted when they happen: syscalls by number
and result (the dispatcher counts those into tables the registry hands out,
without a call per syscall), messages and bytes, call latencies (real time,
``perf_counter_ns``, whatever clock the kernel runs on), agents that ended, sandbox
denials, semantic routes.  :class:`Tally` counts exactly those, and it exists
only on a kernel started with metrics on: with metrics off nothing here is
installed, so no syscall and no message pays for it.

Every count is a plain int in a dict updated on the kernel thread; the
scrape reads copies taken on the kernel thread too (the collector posts its
read there), so no lock is needed.  Keys are bounded: syscall numbers and
errnos are small fixed sets, executors and exit causes are a handful, and
sandbox mechanisms are capped at :data:`MAX_MECHANISMS` (the rest count as
``other``), because a sandbox event's ``kind`` comes from outside the kernel.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from aios.kernel.registry import ERRNO_SHIFT
from aios.lib.histogram import Histogram

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.events import Event
    from aios.kernel.kernel import Kernel

MAX_MECHANISMS = 16
MAX_OPEN_CALLS = 65536  # calls whose start time is remembered (a leak bound, not a limit)

_MECHANISM = re.compile(r"[a-z][a-z0-9_]{0,23}")
SECCOMP_KINDS = frozenset({"syscall"})


class Tally:
    """Counters fed by the kernel's syscall observer, the IPC probe and a few events."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.now = k.now
        # the dispatcher counts into these (registry.count_syscalls): no call per syscall
        self.counts, self.errors = k.registry.count_syscalls()
        self.messages = 0  # plain messages (sends, batch items); calls are counted apart
        self.message_bytes = 0
        self.calls = 0
        self.call_bytes = 0
        self.replies = 0
        self.reply_bytes = 0
        self.call_started: dict[int, int] = {}  # call id -> kernel time it was made
        self.call_seconds = Histogram()
        self.calls_failed = 0
        self.exits: dict[tuple[str, str], int] = {}  # (executor, how) -> count
        self.ended_sched: dict[str, list[int]] = {}  # class -> [runtime_ns, wait_ns, waits]
        self.ended_agents_syscalls = 0
        self.denials: dict[str, int] = {}  # mechanism -> count
        self.routes: dict[str, int] = {}  # outcome -> count
        self.route_seconds = Histogram()

    def syscalls(self) -> dict[int, int]:
        """``errno << 12 | number -> count`` (errno 0: succeeded)."""
        out = dict(self.errors)
        failed: dict[int, int] = {}
        for key, n in out.items():
            num = key & ((1 << ERRNO_SHIFT) - 1)
            failed[num] = failed.get(num, 0) + n
        for num, n in enumerate(self.counts):
            ok = n - failed.get(num, 0)
            if ok:
                out[num] = ok
        return out

    # -- the IPC probe (IpcProbe): the metrics half ---------------------------------

    def sent(self, a: Agent, n: int, nbytes: int) -> None:
        self.messages += n
        self.message_bytes += nbytes

    def call(self, a: Agent, cid: int, receiver: int, nbytes: int, parent: Any = None) -> None:
        self.calls += 1
        self.call_bytes += nbytes
        started = self.call_started
        if len(started) >= MAX_OPEN_CALLS:
            started.pop(next(iter(started)))
        started[cid] = perf_counter_ns()

    def received(self, cid: int, receiver: Agent) -> None:
        pass  # the metrics time a call from its start to its reply

    def replied(self, a: Agent, cid: int, nbytes: int) -> None:
        self.replies += 1
        self.reply_bytes += nbytes
        t0 = self.call_started.pop(cid, None)
        if t0 is not None:  # Histogram.observe, inlined: this runs once per call
            h = self.call_seconds
            dt = (perf_counter_ns() - t0) / 1e9
            h.counts[bisect_left(h.bounds, dt)] += 1
            h.sum += dt
            h.count += 1

    def ended(self, cid: int) -> None:
        """A call ended; if it was not answered (timeout, a party gone) it failed."""
        if self.call_started.pop(cid, None) is not None:
            self.calls_failed += 1

    def route(self, a: Agent, intent: str) -> tuple[int, Any]:
        return self.k.now(), None

    def routed(self, token: tuple[int, Any], outcome: str, targets: int) -> None:
        self.routes[outcome] = self.routes.get(outcome, 0) + 1
        self.route_seconds.observe((self.k.now() - token[0]) / 1e9)

    # -- agents that end, sandbox reports ---------------------------------------------

    def agent_exited(self, a: Agent) -> None:
        key = (a.kind or "inproc", a.how or "ended")
        self.exits[key] = self.exits.get(key, 0) + 1
        self.ended_agents_syscalls += a.syscalls
        ent = a.sched
        if ent is not None:
            st = self.k.sched.stats(ent)
            acc = self.ended_sched.setdefault(str(st["class"]), [0, 0, 0])
            acc[0] += int(st["runtime_ns"])
            acc[1] += int(st["wait_ns"])
            acc[2] += int(st["waits"])

    def on_sandbox(self, ev: Event) -> None:
        kind = ev.data.get("kind")
        mech = "seccomp" if kind in SECCOMP_KINDS else str(kind)
        if not _MECHANISM.fullmatch(mech):
            mech = "other"
        if mech not in self.denials and len(self.denials) >= MAX_MECHANISMS:
            mech = "other"
        self.denials[mech] = self.denials.get(mech, 0) + 1

    def on_violation(self, _ev: Event) -> None:
        self.denials["capability"] = self.denials.get("capability", 0) + 1

    def copy(self) -> dict[str, Any]:
        """Plain copies of every counter (taken on the kernel thread)."""
        return {
            "syscalls": self.syscalls(),
            "messages": self.messages + self.calls, "message_bytes": self.message_bytes + self.call_bytes,
            "calls": self.calls, "call_bytes": self.call_bytes,
            "replies": self.replies, "reply_bytes": self.reply_bytes,
            "calls_failed": self.calls_failed,
            "call_seconds": self.call_seconds.snapshot(),
            "exits": dict(self.exits),
            "ended_sched": {c: list(v) for c, v in self.ended_sched.items()},
            "ended_agents_syscalls": self.ended_agents_syscalls,
            "denials": dict(self.denials),
            "routes": dict(self.routes),
            "route_seconds": self.route_seconds.snapshot(),
        }
