"""What ``aios top`` shows, computed from what the daemon reports: pure, no I/O, no clock.

:class:`TopModel` takes one refresh at a time (the daemon's agent list, its
scheduling statistics and the time of the refresh) and answers rows sorted
and filtered as the operator asked, plus a summary per scheduling class.

**CPU share** is what ``top`` shows: the CPU time an agent was charged
between two refreshes over the time between them (1.0 is one CPU).  The
first refresh has no interval, so shares are unknown (None) until the
second.  Agents the kernel schedules in its own run queue have a runtime;
agents in processes the host schedules (isolated, worker) have none and
show no share, as do agents that ended.

**Sorting** cycles through :data:`SORT_KEYS`; each has a natural direction
(biggest first for CPU, mailbox and memory; smallest first for ids and
names) which ``reverse`` flips.  **Filtering** keeps rows whose id equals
the filter, or whose name, state, executor or class contains it (case
ignored).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SORT_KEYS = ("cpu", "mailbox", "memory", "aid", "name", "state", "executor")
_DESCENDING = frozenset({"cpu", "mailbox", "memory"})


@dataclass(frozen=True, slots=True)
class AgentRow:
    aid: int
    name: str
    state: str
    executor: str
    sched_class: str
    weight: int | None
    share: float | None
    mailbox: int
    memory: int
    syscalls: int
    runtime_ns: int | None


@dataclass(frozen=True, slots=True)
class ClassSummary:
    name: str
    agents: int
    runnable: int
    share: float | None  # CPU share of the class over the last interval


class TopModel:
    def __init__(self) -> None:
        self.sort = "cpu"
        self.reverse = False
        self.filter = ""
        self.t_ns: int | None = None
        self._rows: list[AgentRow] = []
        self._runtime: dict[int, int] = {}
        self.runqueue = 0
        self.agents_live = 0

    def update(self, agents: Iterable[Mapping[str, Any]], sched: Iterable[Mapping[str, Any]],
               stats: Mapping[str, Any], t_ns: int) -> None:
        """One refresh: the daemon's AGENT_LIST, SCHED_STATS and KERNEL_STATS at ``t_ns``."""
        by_aid = {int(r["aid"]): r for r in sched if "aid" in r}
        dt = t_ns - self.t_ns if self.t_ns is not None and t_ns > self.t_ns else None
        runtime: dict[int, int] = {}
        rows = []
        for a in agents:
            aid = int(a["aid"])
            if aid == 1:
                continue  # init runs no code
            s = by_aid.get(aid, {})
            rt = s.get("runtime_ns")
            share = None
            if isinstance(rt, int):
                runtime[aid] = rt
                before = self._runtime.get(aid)
                if dt is not None and before is not None:
                    share = max(0, rt - before) / dt
            w = s.get("weight")
            rows.append(AgentRow(
                aid=aid, name=str(a.get("name", "")), state=str(a.get("state", "")),
                executor=str(a.get("kind", "")), sched_class=str(s.get("class", "-")),
                weight=w if isinstance(w, int) else None, share=share,
                mailbox=int(a.get("mailbox", 0) or 0), memory=int(a.get("memory", 0) or 0),
                syscalls=int(a.get("syscalls", 0) or 0), runtime_ns=rt if isinstance(rt, int) else None,
            ))
        self._rows = rows
        self._runtime = runtime
        self.t_ns = t_ns
        self.runqueue = int(stats.get("runnable", 0) or 0)
        self.agents_live = int(stats.get("agents_live", len(rows)) or 0)

    def cycle_sort(self) -> str:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self.reverse = False
        return self.sort

    def rows(self) -> list[AgentRow]:
        f = self.filter.strip().lower()
        rows = [r for r in self._rows if not f or _matches(r, f)]
        key = self.sort
        descending = (key in _DESCENDING) != self.reverse
        rows.sort(key=lambda r: r.aid)  # ties: by id, always ascending
        rows.sort(key=lambda r: _sort_value(r, key), reverse=descending)
        return rows

    def classes(self) -> list[ClassSummary]:
        out: dict[str, list[Any]] = {}
        for r in self._rows:
            c = out.setdefault(r.sched_class, [0, 0, None])
            c[0] += 1
            if r.state in ("ready", "running"):
                c[1] += 1
            if r.share is not None:
                c[2] = (c[2] or 0.0) + r.share
        return [ClassSummary(name, n, runnable, share) for name, (n, runnable, share) in sorted(out.items())]


def _matches(r: AgentRow, f: str) -> bool:
    if f.isdigit():
        return r.aid == int(f)
    return any(f in s.lower() for s in (r.name, r.state, r.executor, r.sched_class))


def _sort_value(r: AgentRow, key: str) -> Any:
    if key == "cpu":
        return r.share if r.share is not None else -1.0
    return getattr(r, key)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
