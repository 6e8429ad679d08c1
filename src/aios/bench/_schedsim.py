"""A pure tick-by-tick driver for :class:`aios.kernel.sched.core.Scheduler`.

It plays the kernel's part on a virtual clock: pick, run the current entity
for one tick (or less, when a job ends or a release falls inside the tick),
``charge`` it, and ``put_prev`` it when the scheduler says so.  Tests and the
``sched`` benchmark use it; the kernel's fairness benchmark can measure shares
the same way (service per agent over the run, divided by the run's length).

Service deviation: for an always-runnable agent i, ``D_i(t) = S_i(t) - t *
w_i / W`` (service received minus its ideal share).  ``D_i`` rises while i runs
and falls while it waits, so its extremes sit at i's run boundaries; the
driver samples ``D_i`` only there and reports ``max - min`` per agent
(``dev_range``), which bounds ``|service - ideal|`` over every window of the
run.  ``pick_range`` samples only the instants where i is picked: it bounds the
deviation over every window that starts and ends at i's own scheduling points
(a whole number of i's slices).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aios.kernel.clock import VirtualClock
from aios.kernel.sched.core import SchedEntity, Scheduler


@dataclass
class FairRun:
    total_ns: int
    service: dict[int, int]
    max_run: dict[int, int]  # longest uninterrupted run per key
    dev_range: dict[int, float]  # max D_i - min D_i per key over all run boundaries (ns)
    pick_range: dict[int, float]  # the same, sampled only where i is picked
    runs: int = 0
    switches: list[tuple[int, int]] = field(default_factory=list)  # (t, key) at pick

    def share(self, key: int) -> float:
        return self.service[key] / self.total_ns


def run_fair(
    sched: Scheduler,
    clock: VirtualClock,
    ents: list[SchedEntity],
    total_ns: int,
    tick_ns: int,
    *,
    record_switches: bool = False,
    on_tick: Callable[[int], None] | None = None,
) -> FairRun:
    """Run always-runnable ``ents`` (already woken) for ``total_ns`` of virtual time."""
    start = clock.now_ns()
    total_w = sum(e.weight for e in ents)
    share = {e.key: e.weight / total_w for e in ents}
    service = {e.key: 0 for e in ents}
    max_run = {e.key: 0 for e in ents}
    dmin = {e.key: 0.0 for e in ents}
    dmax = {e.key: 0.0 for e in ents}
    pmin = {e.key: float("inf") for e in ents}
    pmax = {e.key: float("-inf") for e in ents}
    out = FairRun(total_ns, service, max_run, {}, {})
    end = start + total_ns
    cur: SchedEntity | None = None
    run_len = 0

    def sample(key: int) -> None:
        d = service[key] - (clock.now_ns() - start) * share[key]
        if d < dmin[key]:
            dmin[key] = d
        if d > dmax[key]:
            dmax[key] = d

    while clock.now_ns() < end:
        if cur is None:
            cur = sched.pick()
            if cur is None:
                raise RuntimeError("nothing runnable")
            sample(cur.key)
            d = service[cur.key] - (clock.now_ns() - start) * share[cur.key]
            pmin[cur.key] = min(pmin[cur.key], d)
            pmax[cur.key] = max(pmax[cur.key], d)
            run_len = 0
            out.runs += 1
            if record_switches:
                out.switches.append((clock.now_ns() - start, cur.key))
        step = min(tick_ns, end - clock.now_ns())
        clock.advance(step)
        service[cur.key] += step
        run_len += step
        preempt = sched.charge(cur, step)
        if on_tick is not None:
            on_tick(clock.now_ns() - start)
        if preempt or clock.now_ns() >= end:
            if run_len > max_run[cur.key]:
                max_run[cur.key] = run_len
            sample(cur.key)
            sched.put_prev(cur)
            cur = None
    for k in service:
        sample(k)
        out.dev_range[k] = dmax[k] - dmin[k]
        out.pick_range[k] = pmax[k] - pmin[k] if pmax[k] >= pmin[k] else 0.0
    return out


@dataclass
class DlTask:
    """A periodic job source: ``work_ns`` of work released every ``period_ns``."""

    ent: SchedEntity
    work_ns: int
    period_ns: int
    deadline_ns: int
    next_release: int = 0
    left: int = 0  # work left in the current job
    job_deadline: int = 0
    met: int = 0
    missed: int = 0


def run_mixed(
    sched: Scheduler,
    clock: VirtualClock,
    tasks: list[DlTask],
    hogs: list[SchedEntity],
    total_ns: int,
    tick_ns: int,
) -> dict[int, int]:
    """Periodic deadline tasks plus always-runnable fair hogs; returns service per key.

    Each task's job must finish within ``deadline_ns`` of its release; the task
    blocks when its job is done and wakes at the next release.
    """
    start = clock.now_ns()
    end = start + total_ns
    service: dict[int, int] = {t.ent.key: 0 for t in tasks}
    service.update({h.key: 0 for h in hogs})
    by_key = {t.ent.key: t for t in tasks}
    for t in tasks:
        t.next_release = start
    cur: SchedEntity | None = None
    while clock.now_ns() < end:
        now = clock.now_ns()
        woke = False
        for t in tasks:
            if t.next_release <= now:
                woke = True
                if t.left > 0:  # previous job unfinished at its next release
                    t.missed += 1
                t.left = t.work_ns
                t.job_deadline = t.next_release + t.deadline_ns
                t.next_release += t.period_ns
                sched.wake(t.ent)
        if woke and cur is not None and sched.charge(cur, 0):  # the trap after a wake-up
            sched.put_prev(cur)
            cur = None
        if cur is None:
            cur = sched.pick()
        horizon = min(t.next_release for t in tasks) if tasks else end
        ev = sched.next_event_ns()
        if ev is not None:
            horizon = min(horizon, ev)
        if cur is None:
            clock.jump_to(min(horizon, end))
            continue
        step = min(tick_ns, end - now, max(1, horizon - now))
        task = by_key.get(cur.key)
        if task is not None:
            step = min(step, task.left)
        clock.advance(step)
        service[cur.key] += step
        preempt = sched.charge(cur, step)
        if task is not None:
            task.left -= step
            if task.left == 0:
                if clock.now_ns() <= task.job_deadline:
                    task.met += 1
                else:
                    task.missed += 1
                sched.block(cur)
                cur = None
                continue
        if preempt:
            sched.put_prev(cur)
            cur = None
    return service
