"""Prometheus metrics for a running kernel, computed when they are scraped.

Design
------
**Read at scrape time.**  The kernel already keeps most of what an operator
wants to watch: the agent table (state, executor, syscalls made), mailboxes
(depth), the scheduler (run queue, per-entity runtime, waits, lag, class,
weight), the audit pump (appends, backlog, the last checkpoint), memoryd (its
store).  :class:`MetricsCollector` is a ``prometheus_client`` custom
collector: each scrape reads that state and builds the metric families then;
nothing is maintained between scrapes for them.  What leaves no trace in
state is counted as it happens by :class:`~aios.kmod.observe.tally.Tally`,
which is installed only on a kernel started with metrics, so a kernel
without ``--metrics`` pays nothing per syscall or message.

**Read on the kernel thread.**  The HTTP server answers on its own thread,
and the kernel's tables are changed by the kernel thread only.  A scrape
therefore posts its read to the kernel thread (``Kernel.post``) and waits for
the copy; the families are built from the copy on the scrape thread.  A
kernel that is not serving (tests, a kernel between runs) is read directly.
memoryd's totals are read on memoryd's own worker thread, with a timeout,
and only when its store is already open.

**Names.**  ``aios_`` prefix, base units (seconds, bytes), counters end in
``_total`` (``prometheus_client`` appends it), latencies are histograms.
The full list with their labels is in ``docs/observability.md``.

**Bounded cardinality.**  Labels are syscall names, error names, executors,
exit causes, scheduler classes, sandbox mechanisms and route outcomes: small
fixed sets.  Per-agent series (syscalls, mailbox depth) are emitted for the
``top`` agents only (10 by default), ranked by the value itself.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from aios.abi.errors import BY_CODE, PolicyDenied, QuotaExceeded
from aios.abi.sysno import Sys
from aios.kernel.registry import ERRNO_SHIFT
from aios.kmod.observe.tally import Tally

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

READ_TIMEOUT_S = 5.0  # a scrape waits this long for the kernel thread, then reads directly
TOP_N = 10


def _error_names() -> dict[int, str]:
    return {code: cls.name for code, cls in BY_CODE.items()}


def _syscall_name(num: int) -> str:
    try:
        return Sys(num).name
    except ValueError:
        return str(num)


def read_kernel(k: Kernel, tally: Tally, top: int) -> dict[str, Any]:
    """Everything the families need, as plain data.  Call on the kernel thread."""
    agents: list[dict[str, Any]] = []
    by_state: dict[tuple[str, str], int] = {}
    live_by_kind: dict[str, int] = {}
    classes: dict[str, dict[str, Any]] = {}
    queued = 0
    sched = k.sched
    for a in k.agents:
        if a is k.init:
            continue
        kind = a.kind or "inproc"
        key = (a.status.value, kind)
        by_state[key] = by_state.get(key, 0) + 1
        if not a.alive:
            continue
        live_by_kind[kind] = live_by_kind.get(kind, 0) + 1
        depth = len(a.mailbox) if a.mailbox is not None else 0
        queued += depth
        row = {"aid": a.aid, "name": a.name, "syscalls": a.syscalls, "depth": depth}
        agents.append(row)
        if a.sched is not None:
            st = sched.stats(a.sched)
            c = classes.setdefault(str(st["class"]), {"runtime_ns": 0, "wait_ns": 0, "waits": 0, "agents": 0,
                                                      "lag_min": None, "lag_max": None})
            c["runtime_ns"] += int(st["runtime_ns"])
            c["wait_ns"] += int(st["wait_ns"])
            c["waits"] += int(st["waits"])
            c["agents"] += 1
            lag = int(st["lag_ns"])
            c["lag_min"] = lag if c["lag_min"] is None else min(c["lag_min"], lag)
            c["lag_max"] = lag if c["lag_max"] is None else max(c["lag_max"], lag)
    out: dict[str, Any] = {
        "tally": tally.copy(),
        "stats": dict(k.stats),
        "runqueue": len(sched),
        "by_state": by_state,
        "live_by_kind": live_by_kind,
        "classes": classes,
        "queued": queued,
        "top_syscalls": heapq.nlargest(top, agents, key=lambda r: r["syscalls"]),
        "top_depth": heapq.nlargest(top, (r for r in agents if r["depth"]), key=lambda r: r["depth"]),
        "max_depth": max((r["depth"] for r in agents), default=0),
        "audit": None,
        "skills": None,
    }
    from aios.kmod.security.glue import security_of

    ks = security_of(k)
    if ks is not None and ks.audit is not None:
        st = ks.audit.status()
        log = ks.audit.sec.log
        last = log.policy.last_ns
        out["audit"] = {"recorded": st["recorded"], "pending": st["pending"], "size": st["size"],
                        "checkpoint_age_s": (log.clock() - last) / 1e9 if last else None}
    from aios.kmod.memoryd.service import MEMORYD

    fab = k.ext.get(MEMORYD)
    if fab is not None:
        out["skills"] = sum(len(s) for s in fab.skills.values())
        out["search_seconds"] = fab.search_seconds.snapshot()
    return out


class KernelReader:
    """Reads :func:`read_kernel` on the kernel thread for a caller on another thread."""

    def __init__(self, k: Kernel, tally: Tally, top: int = TOP_N) -> None:
        self.k = k
        self.tally = tally
        self.top = top

    def read(self) -> dict[str, Any]:
        k = self.k
        tid = k.serving_thread
        if tid is None or tid == threading.get_ident():
            return read_kernel(k, self.tally, self.top)
        box: list[Any] = []
        done = threading.Event()

        def on_kernel() -> None:
            try:
                box.append(read_kernel(k, self.tally, self.top))
            except BaseException as e:  # handed back to the scrape, which reports it
                box.append(e)
            finally:
                done.set()

        k.post(on_kernel)
        if not done.wait(READ_TIMEOUT_S):
            raise TimeoutError(f"the kernel thread did not answer a metrics read in {READ_TIMEOUT_S} s")
        v = box[0]
        if isinstance(v, BaseException):
            raise v
        return v  # type: ignore[no-any-return]


def _hist(name: str, doc: str, snap: tuple[list[tuple[str, int]], float]) -> HistogramMetricFamily:
    buckets, total = snap
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class MetricsCollector(Collector):
    """The ``aios_*`` families of one kernel (register it with a CollectorRegistry)."""

    def __init__(self, reader: KernelReader) -> None:
        self.reader = reader
        self.errors = _error_names()

    def describe(self) -> Iterator[Any]:
        return iter(())  # no fixed description: the families depend on what is installed

    def collect(self) -> Iterator[Any]:
        s = self.reader.read()
        t = s["tally"]
        errs = self.errors

        sc = CounterMetricFamily("aios_syscalls", "Syscalls completed, by syscall and result (ok or error name).",
                                 labels=["syscall", "result"])
        refusals = CounterMetricFamily("aios_quota_refusals", "Syscalls refused for a quota or budget (EDQUOT).",
                                       labels=["syscall"])
        policy_denied = 0
        for key, n in sorted(t["syscalls"].items()):
            num, errno = key & ((1 << ERRNO_SHIFT) - 1), key >> ERRNO_SHIFT
            name = _syscall_name(num)
            sc.add_metric([name, "ok" if errno == 0 else errs.get(errno, str(errno))], n)
            if errno == QuotaExceeded.code:
                refusals.add_metric([name], n)
            elif errno == PolicyDenied.code:
                policy_denied += n
        yield sc
        yield refusals

        yield CounterMetricFamily("aios_ipc_messages", "IPC messages sent (sends, batch items, calls).",
                                  value=t["messages"])
        yield CounterMetricFamily("aios_ipc_bytes", "IPC payload bytes sent.", value=t["message_bytes"])
        yield CounterMetricFamily("aios_ipc_calls", "IPC calls made.", value=t["calls"])
        yield CounterMetricFamily("aios_ipc_replies", "IPC calls answered.", value=t["replies"])
        yield CounterMetricFamily("aios_ipc_reply_bytes", "IPC reply payload bytes.", value=t["reply_bytes"])
        yield CounterMetricFamily("aios_ipc_calls_failed", "IPC calls that ended unanswered (timeout, party gone).",
                                  value=t["calls_failed"])
        yield _hist("aios_ipc_call_duration_seconds", "Time from an IPC call to its reply.", t["call_seconds"])

        depth = GaugeMetricFamily("aios_mailbox_depth_messages", "Messages queued in a mailbox (top agents).",
                                  labels=["aid", "name"])
        for r in s["top_depth"]:
            depth.add_metric([str(r["aid"]), r["name"]], r["depth"])
        yield depth
        yield GaugeMetricFamily("aios_mailbox_queued_messages", "Messages queued in all mailboxes.",
                                value=s["queued"])
        yield GaugeMetricFamily("aios_mailbox_depth_max_messages", "The deepest mailbox.", value=s["max_depth"])

        yield GaugeMetricFamily("aios_sched_runqueue_length", "Scheduling entities runnable now.",
                                value=s["runqueue"])
        share = GaugeMetricFamily("aios_sched_share_ratio", "Share of CPU time of live agents, by class.",
                                  labels=["class"])
        lag = GaugeMetricFamily("aios_sched_lag_seconds", "Lag of live agents (EEVDF), min and max by class.",
                                labels=["class", "stat"])
        cpu = CounterMetricFamily("aios_sched_cpu_seconds", "CPU time charged to agents, by class.",
                                  labels=["class"])
        wait = CounterMetricFamily("aios_sched_wait_seconds", "Time agents waited runnable in the run queue.",
                                   labels=["class"])
        waits = CounterMetricFamily("aios_sched_waits", "Waits in the run queue.", labels=["class"])
        classes = s["classes"]
        total_rt = sum(c["runtime_ns"] for c in classes.values()) or 1
        ended = t["ended_sched"]
        for cls in sorted(set(classes) | set(ended)):
            c = classes.get(cls, {"runtime_ns": 0, "wait_ns": 0, "waits": 0, "lag_min": None, "lag_max": None})
            e = ended.get(cls, [0, 0, 0])
            share.add_metric([cls], c["runtime_ns"] / total_rt)
            if c["lag_min"] is not None:
                lag.add_metric([cls, "min"], c["lag_min"] / 1e9)
                lag.add_metric([cls, "max"], c["lag_max"] / 1e9)
            cpu.add_metric([cls], (c["runtime_ns"] + e[0]) / 1e9)
            wait.add_metric([cls], (c["wait_ns"] + e[1]) / 1e9)
            waits.add_metric([cls], c["waits"] + e[2])
        yield share
        yield lag
        yield cpu
        yield wait
        yield waits

        agents = GaugeMetricFamily("aios_agents", "Agents in the table, by state and executor.",
                                   labels=["state", "executor"])
        for (state, kind), n in sorted(s["by_state"].items()):
            agents.add_metric([state, kind], n)
        yield agents
        spawned = CounterMetricFamily("aios_agents_spawned", "Agents started, by executor.", labels=["executor"])
        exited = CounterMetricFamily("aios_agents_exited", "Agents that ended, by executor and how.",
                                     labels=["executor", "how"])
        faults = CounterMetricFamily("aios_agent_faults", "Agents that faulted, by executor.", labels=["executor"])
        ended_by_kind: dict[str, int] = {}
        faulted: dict[str, int] = {}
        for (kind, how), n in sorted(t["exits"].items()):
            exited.add_metric([kind, how], n)
            ended_by_kind[kind] = ended_by_kind.get(kind, 0) + n
            if how == "faulted":
                faulted[kind] = faulted.get(kind, 0) + n
        for kind in sorted(set(ended_by_kind) | set(s["live_by_kind"])):
            spawned.add_metric([kind], ended_by_kind.get(kind, 0) + s["live_by_kind"].get(kind, 0))
            faults.add_metric([kind], faulted.get(kind, 0))
        yield spawned
        yield exited
        yield faults
        per = CounterMetricFamily("aios_agent_syscalls", "Syscalls made by an agent (top agents).",
                                  labels=["aid", "name"])
        for r in s["top_syscalls"]:
            per.add_metric([str(r["aid"]), r["name"]], r["syscalls"])
        yield per

        den = CounterMetricFamily("aios_sandbox_denials", "Refusals by a protection mechanism.",
                                  labels=["mechanism"])
        denials = dict(t["denials"])
        denials["policy"] = denials.get("policy", 0) + policy_denied
        denials.setdefault("capability", 0)
        for mech, n in sorted(denials.items()):
            den.add_metric([mech], n)
        yield den

        st = s["stats"]
        yield CounterMetricFamily("aios_kernel_panics", "Kernel bugs caught (KernelPanic to a caller).",
                                  value=st["panics"])
        yield CounterMetricFamily("aios_kernel_dispatches", "Times an agent was given the CPU.",
                                  value=st["dispatches"])

        au = s["audit"]
        if au is not None:
            yield CounterMetricFamily("aios_audit_appends", "Audit records appended since boot.",
                                      value=au["recorded"])
            yield GaugeMetricFamily("aios_audit_pending_entries", "Audit records not yet durable.",
                                    value=au["pending"])
            yield GaugeMetricFamily("aios_audit_log_entries", "Entries in the audit log.", value=au["size"])
            if au["checkpoint_age_s"] is not None:
                yield GaugeMetricFamily("aios_audit_checkpoint_age_seconds", "Age of the last signed checkpoint.",
                                        value=au["checkpoint_age_s"])

        if s["skills"] is not None:
            yield GaugeMetricFamily("aios_semantic_skills", "Skills registered with semantic-ipcd.",
                                    value=s["skills"])
            yield _hist("aios_memoryd_search_duration_seconds", "Archival search latency in memoryd.",
                        s["search_seconds"])
            from aios.kmod.memoryd.service import MEMORYD

            fab = self.reader.k.ext.get(MEMORYD)
            tot = fab.totals(READ_TIMEOUT_S) if fab is not None else None
            if tot is not None:
                yield GaugeMetricFamily("aios_memoryd_namespaces", "memoryd namespaces.", value=tot[0])
                yield GaugeMetricFamily("aios_memoryd_items", "Live memory records and core blocks.", value=tot[1])
                yield GaugeMetricFamily("aios_memoryd_bytes", "Bytes of live memory records and core blocks.",
                                        value=tot[2])
        routes = CounterMetricFamily("aios_semantic_routes", "Intents routed by semantic-ipcd, by outcome.",
                                     labels=["outcome"])
        for outcome, n in sorted(t["routes"].items()):
            routes.add_metric([outcome], n)
        yield routes
        yield _hist("aios_semantic_route_duration_seconds", "Time from an intent to its routing decision.",
                    t["route_seconds"])
