"""``aios bench llm``: who gets a shared model, under five request schedulers.

A simulated serving engine (:mod:`aios.lib.llm.simengine`: 16 slots, a
512-token step budget with chunked prefill, 64k tokens of KV, recompute
preemption, step time ``alpha + beta*tokens + gamma*context``) is shared by
fourteen agents on virtual time:

=========  ===  ==============================================================
class      n    what it sends
=========  ===  ==============================================================
deadline   2    short interactive calls that must finish within 6 s
interact   2    short interactive calls (class INTERACTIVE, no deadline)
batch      2    long prompts, long answers (class BATCH)
heavy      1    a heavy hitter: 5x the calls of anyone else; a token budget
premium    3    backlogged agents with weights 1024 : 2048 : 4096
program    2    multi-call agent programs: 4-12 calls in a chain, a fan-out
onoff      2    15 s bursts and 15 s of silence (one has a budget)
=========  ===  ==============================================================

Arrival rates are scaled so the offered load is 0.6 and 1.5 of the engine's
capacity (measured first: FIFO, saturated, same mix).  Each load runs under
FIFO with continuous batching (requests go straight to the engine), Rutgers
AIOS's batched FIFO (collect 1 s, then dispatch), round-robin across agents,
VTC (Sheng et al., OSDI 2024) and ours (the kernel's ``DeviceQueue``).

Per policy and load: output tokens/s, TTFT p50/p99 per class, Jain's index of
weighted service among backlogged agents over 10 s windows, the premium
agents' weighted share error, the deadline miss rate (and, for ours, how many
deadline calls admission refused), budget overruns (agents whose tokens went
past their budget), program completion time, and microseconds of wall time per
scheduling decision (one call of the policy's dispatch).  Headline keys (ours):
``jain_overload`` (load 1.5), ``throughput_vs_fifo`` (load 1.5: below capacity
every policy serves what it admits, and ours refuses over-budget calls, so the
ratio there measures the budgets, not the scheduler; both are printed),
``program_speedup_vs_batched_fifo`` (the smaller over the loads),
``budget_overruns`` (summed), ``deadline_miss_rate`` (the larger).

``--embedded`` adds the embedded model's direct throughput (no kernel) with
1, 4 and 16 concurrent requests: the baseline ``aios bench llm-embedded``
compares the kernel path against.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from aios.kernel.clock import VirtualClock
from aios.kernel.devqueue import DeviceQueue, Pricing, Priority, ServiceModel
from aios.lib.llm.simengine import EngineConfig, SimEngine
from aios.lib.llm.simpolicies import BatchedFifoPolicy, FifoPolicy, RoundRobinPolicy, VtcPolicy
from aios.lib.llm.simrun import (
    SEC,
    Arrival,
    Call,
    ClientConfig,
    Metrics,
    Policy,
    ProgramArrival,
    Simulation,
    backlogged,
    jain,
    percentile,
)

POLICIES = ("fifo", "batched_fifo", "round_robin", "vtc", "ours")
ENGINE = EngineConfig(slots=16, step_tokens=512, kv_tokens=65_536,
                      alpha_ns=4_000_000, beta_ns=40_000, gamma_ns=60)
# the figures the device driver would publish for this engine (conservative)
SERVICE = ServiceModel(prefill_tokens_per_s=15_000, decode_tokens_per_s=30,
                       device_tokens_per_s=1_500, deadline_share=0.5)
DEADLINE_NS = 6 * SEC

# key -> (class, weight, base rate calls/s, prompt range, output range, max_tokens, priority)
CLIENTS: dict[int, tuple[str, int, float, tuple[int, int], tuple[int, int], int, Priority]] = {
    1: ("deadline", 1024, 0.25, (100, 400), (20, 100), 128, Priority.INTERACTIVE),
    2: ("deadline", 1024, 0.25, (100, 400), (20, 100), 128, Priority.INTERACTIVE),
    3: ("interact", 1024, 0.25, (100, 400), (20, 120), 128, Priority.INTERACTIVE),
    4: ("interact", 1024, 0.25, (100, 400), (20, 120), 128, Priority.INTERACTIVE),
    5: ("batch", 1024, 0.3, (800, 1600), (200, 500), 512, Priority.BATCH),
    6: ("batch", 1024, 0.3, (800, 1600), (200, 500), 512, Priority.BATCH),
    7: ("heavy", 1024, 2.5, (200, 600), (100, 300), 384, Priority.NORMAL),
    8: ("premium", 1024, 3.0, (300, 700), (100, 300), 384, Priority.NORMAL),
    9: ("premium", 2048, 3.0, (300, 700), (100, 300), 384, Priority.NORMAL),
    10: ("premium", 4096, 3.0, (300, 700), (100, 300), 384, Priority.NORMAL),
    13: ("onoff", 1024, 1.2, (200, 500), (80, 250), 320, Priority.NORMAL),
    14: ("onoff", 1024, 1.2, (200, 500), (80, 250), 320, Priority.NORMAL),
}
PROGRAM_CLIENTS = (11, 12)
PROGRAM_RATE = 0.08  # programs/s per program client at scale 1
BUDGETS = {7: 0.5, 14: 0.5}  # fraction of the client's expected demand over the run
ONOFF_PERIOD = 15 * SEC


def _calls_rate(scale: float) -> float:
    """Expected generated tokens/s the workload offers at ``scale``."""
    total = 0.0
    for key, (cls, _w, rate, _p, (o1, o2), _mx, _pr) in CLIENTS.items():
        duty = 0.5 if cls == "onoff" else 1.0
        total += rate * scale * duty * (o1 + o2) / 2
        del key
    total += len(PROGRAM_CLIENTS) * PROGRAM_RATE * scale * 10 * 60
    return total


def workload(
    scale: float, horizon_ns: int, seed: int
) -> tuple[list[Arrival], list[ProgramArrival], dict[int, ClientConfig]]:
    rng = random.Random(seed)
    arrivals: list[Arrival] = []
    demand: dict[int, int] = {}
    for key, (cls, _w, rate, (p1, p2), (o1, o2), mx, prio) in CLIENTS.items():
        t = 0.0
        lam = rate * scale
        while True:
            t += rng.expovariate(lam)
            tn = int(t * SEC)
            if tn >= horizon_ns:
                break
            if cls == "onoff" and (tn // ONOFF_PERIOD + key) % 2 == 1:
                continue  # off phase (the two on/off agents alternate)
            p, o = rng.randint(p1, p2), rng.randint(o1, o2)
            dl = DEADLINE_NS if cls == "deadline" else None
            arrivals.append(Arrival(tn, key, Call(p, mx, o, int(prio), dl), cls))
            demand[key] = demand.get(key, 0) + p + o
    programs: list[ProgramArrival] = []
    for key in PROGRAM_CLIENTS:
        t = 0.0
        while True:
            t += rng.expovariate(PROGRAM_RATE * scale)
            tn = int(t * SEC)
            if tn >= horizon_ns:
                break
            n = rng.randint(4, 12)
            ctx = rng.randint(300, 800)
            stages: list[tuple[Call, ...]] = []
            for i in range(n):
                width = 3 if i == n // 2 else 1
                stage = []
                for _ in range(width):
                    o = rng.randint(20, 100)
                    stage.append(Call(ctx, 256, o, int(Priority.NORMAL)))
                stages.append(tuple(stage))
                ctx += sum(c.output_tokens for c in stage) + 40
            programs.append(ProgramArrival(tn, key, tuple(stages)))
    clients = {k: ClientConfig(weight=CLIENTS[k][1]) for k in CLIENTS}
    for k in PROGRAM_CLIENTS:
        clients[k] = ClientConfig()
    for k, frac in BUDGETS.items():
        clients[k] = ClientConfig(weight=CLIENTS[k][1], budget_tokens=int(demand.get(k, 0) * frac))
    return arrivals, programs, clients


def make_policy(name: str, clock: VirtualClock) -> Policy:
    if name == "fifo":
        return FifoPolicy()
    if name == "batched_fifo":
        return BatchedFifoPolicy(clock.now_ns)
    if name == "round_robin":
        return RoundRobinPolicy()
    if name == "vtc":
        return VtcPolicy()
    if name == "ours":
        return DeviceQueue(clock, ENGINE.slots, pricing=Pricing(1, 2), service=SERVICE,
                           max_queued=256)
    raise KeyError(name)


class _Timed:
    """Wraps a policy to measure the wall time of its decisions."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.ns = 0
        self.calls = 0
        self.submit_ns = 0
        self.submits = 0

    def dispatch(self, fits: Callable[[Any], bool] | None = None, limit: int | None = None) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return self.inner.dispatch(fits, limit)
        finally:
            self.ns += time.perf_counter_ns() - t0
            self.calls += 1

    def submit(self, key: int, prompt_tokens: int, max_tokens: int, **kw: Any) -> int:
        t0 = time.perf_counter_ns()
        try:
            return self.inner.submit(key, prompt_tokens, max_tokens, **kw)
        finally:
            self.submit_ns += time.perf_counter_ns() - t0
            self.submits += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run_one(
    policy_name: str, scale: float, horizon_ns: int, seed: int
) -> tuple[Metrics, _Timed]:
    clock = VirtualClock()
    timed = _Timed(make_policy(policy_name, clock))
    arrivals, programs, clients = workload(scale, horizon_ns, seed)
    sim = Simulation(timed, SimEngine(ENGINE), clients=clients, set_clock=clock.jump_to)
    m = sim.run(arrivals, programs, horizon_ns, drain_ns=horizon_ns)
    m.decision_ns = timed.ns
    return m, timed


def _timing(t: _Timed) -> dict[str, float]:
    return {
        "us_per_decision": round(t.ns / 1e3 / max(1, t.calls), 2),
        "us_per_submit": round(t.submit_ns / 1e3 / max(1, t.submits), 2),
    }


def summarize(m: Metrics, warmup_ns: int, clients: dict[int, ClientConfig]) -> dict[str, Any]:
    end = m.end_ns
    span = (end - warmup_ns) / SEC
    w0, w1 = warmup_ns // m.window_ns, end // m.window_ns
    out_tokens = sum(v for w, v in m.tokens_out.items() if w0 <= w < w1)
    res: dict[str, Any] = {"output_tokens_per_s": round(out_tokens / span, 1)}
    served = sum(v for k in m.service for w, v in m.service[k].items() if w0 <= w < w1)
    res["priced_service_per_s"] = round(served / span, 1)
    # TTFT per class (unstarted calls count as waiting until the end)
    by_cls: dict[str, list[float]] = {}
    for r in m.requests:
        if r.arrival_ns < warmup_ns or r.refused:
            continue
        first = r.first_ns if r.first_ns >= 0 else end
        by_cls.setdefault(r.cls, []).append((first - r.arrival_ns) / 1e6)
    for cls, xs in sorted(by_cls.items()):
        res[f"ttft_ms_p50_{cls}"] = round(percentile(xs, 0.5), 1)
        res[f"ttft_ms_p99_{cls}"] = round(percentile(xs, 0.99), 1)
    # Jain over backlogged agents' weighted service, per window
    keys = sorted(clients)
    jains: list[float] = []
    for w in range(w0, w1):
        bl = backlogged(m, w, keys)
        if len(bl) >= 2:
            jains.append(jain([m.service.get(k, {}).get(w, 0) / clients[k].weight for k in bl]))
    res["jain_mean"] = round(sum(jains) / len(jains), 4) if jains else None
    res["jain_min"] = round(min(jains), 4) if jains else None
    res["jain_windows"] = len(jains)
    # the premium agents' shares, over windows where all three were backlogged
    prem = [k for k in keys if CLIENTS.get(k, ("",))[0] == "premium"]
    tot = dict.fromkeys(prem, 0)
    nwin = 0
    for w in range(w0, w1):
        if len(backlogged(m, w, prem)) == len(prem):
            nwin += 1
            for k in prem:
                tot[k] += m.service.get(k, {}).get(w, 0)
    if nwin and sum(tot.values()):
        wsum = sum(clients[k].weight for k in prem)
        res["weighted_share_error"] = round(max(
            abs(tot[k] / sum(tot.values()) - clients[k].weight / wsum) for k in prem), 4)
    else:
        res["weighted_share_error"] = None
    res["weighted_share_windows"] = nwin
    # deadlines
    dl = [r for r in m.requests if r.deadline_abs is not None and r.arrival_ns >= warmup_ns
          and r.deadline_abs <= end]
    admitted = [r for r in dl if not r.refused]
    missed = [r for r in admitted if r.finish_ns < 0 or r.finish_ns > (r.deadline_abs or 0)]
    res["deadline_calls"] = len(dl)
    res["deadline_refused"] = len(dl) - len(admitted)
    res["deadline_miss_rate"] = round(len(missed) / len(admitted), 4) if admitted else 0.0
    # budgets
    over = [k for k, c in clients.items()
            if c.budget_tokens is not None and m.charged.get(k, 0) > c.budget_tokens]
    res["budget_overruns"] = len(over)
    res["budget_refused"] = sum(1 for r in m.requests if r.refused == "EDQUOT")
    # programs
    progs = [p for p in m.programs if p.start_ns >= warmup_ns]
    done = [(p.finish_ns if p.finish_ns >= 0 else m.drain_end_ns) - p.start_ns for p in progs]
    res["program_completion_s_mean"] = round(sum(done) / len(done) / SEC, 3) if done else None
    res["program_completion_s_p99"] = round(percentile(done, 0.99) / SEC, 3) if done else None
    res["programs"] = len(progs)
    res["programs_unfinished"] = sum(1 for p in progs if p.finish_ns < 0)
    res["started"] = m.decisions
    res["preemptions"] = m.preemptions
    res["engine_preemptions"] = m.engine_preemptions
    return res


def capacity(horizon_ns: int, seed: int) -> float:
    """Saturated output tokens/s of the engine on this mix (FIFO, 4x overload)."""
    m, _ = run_one("fifo", 4.0, horizon_ns, seed)
    w0 = (horizon_ns // 3) // m.window_ns
    w1 = horizon_ns // m.window_ns
    toks = sum(v for w, v in m.tokens_out.items() if w0 <= w < w1)
    return toks / ((w1 - w0) * m.window_ns / SEC)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench llm")
    ap.add_argument("--seconds", type=float, default=160.0, help="virtual seconds per run")
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loads", default="0.6,1.5")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--embedded", action="store_true",
                    help="also measure the embedded model directly (1, 4, 16 requests)")
    a = ap.parse_args(argv)
    horizon = int(a.seconds * SEC)
    warm = int(a.warmup * SEC)
    cap = capacity(horizon, a.seed)
    unit = _calls_rate(1.0)
    loads = [float(x) for x in a.loads.split(",")]
    out: dict[str, Any] = {}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for load in loads:
        scale = load * cap / unit
        for name in a.policies.split(","):
            m, timed = run_one(name, scale, horizon, a.seed)
            _, _, clients = workload(scale, horizon, a.seed)
            row = summarize(m, warm, clients)
            row.update(_timing(timed))
            row["log_sha256"] = m.log_hash[:16]
            table.setdefault(name, {})[str(load)] = row
    if "ours" in table:
        ours = table["ours"]
        hi = str(max(loads))
        out["jain_overload"] = ours[hi]["jain_mean"]
        if "fifo" in table:
            # at overload the device is the bottleneck; below it every policy serves
            # what it admits (ours refuses over-budget calls), so the ratio is the load's
            for x in loads:
                f = table["fifo"][str(x)]
                out[f"throughput_vs_fifo_load_{x}"] = round(
                    ours[str(x)]["output_tokens_per_s"] / f["output_tokens_per_s"], 4)
                out[f"priced_service_vs_fifo_load_{x}"] = round(
                    ours[str(x)]["priced_service_per_s"] / f["priced_service_per_s"], 4)
            out["throughput_vs_fifo"] = out[f"throughput_vs_fifo_load_{max(loads)}"]
        if "batched_fifo" in table:
            sp: dict[float, float] = {}
            for x in loads:
                b = table["batched_fifo"][str(x)]["program_completion_s_mean"]
                o = ours[str(x)]["program_completion_s_mean"]
                if b is not None and o:  # (a short run may see no program)
                    sp[x] = b / o
                    out[f"program_speedup_vs_batched_fifo_load_{x}"] = round(sp[x], 3)
            out["program_speedup_vs_batched_fifo"] = round(min(sp.values()), 3) if sp else None
        out["budget_overruns"] = sum(ours[str(x)]["budget_overruns"] for x in loads)
        out["deadline_miss_rate"] = max(ours[str(x)]["deadline_miss_rate"] for x in loads)
        out["jain_overload_min_window"] = ours[hi]["jain_min"]
        out["weighted_share_error_overload"] = ours[hi]["weighted_share_error"]
        out["deadline_refused"] = sum(ours[str(x)]["deadline_refused"] for x in loads)
        out["us_per_decision"] = ours[hi]["us_per_decision"]
        out["jain_overload_vtc"] = table.get("vtc", {}).get(hi, {}).get("jain_mean")
        out["jain_overload_fifo"] = table.get("fifo", {}).get(hi, {}).get("jain_mean")
    out["capacity_tokens_per_s"] = round(cap, 1)
    out["virtual_seconds"] = a.seconds
    out["policies"] = table
    if a.embedded:
        from aios.bench._llm_embedded import direct_throughput

        out["embedded_direct"] = direct_throughput((1, 4, 16))
    return out
