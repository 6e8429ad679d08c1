"""``aios bench soak``: a kernel under churn and a hostile minority, for minutes.

What runs (all in one real kernel with a home: audit log with its
backpressure, policy, real clock; the behavior monitor only with
``--behavior``, since it suspends busy supervisors, which stalls the colony):

* a **colony** of ``--agents`` workers (default 10,000) kept alive by *cells*
  (supervisor agents of ``--per-cell`` workers each).  A worker lives a random
  number of rounds; each round it sleeps about ``--period`` seconds, drains its
  subscription (a topic shared with about ten others of its cell), then publishes on it, calls its cell (which
  answers) or sends it a note.  One worker in five ends by raising.  Cells reap
  their dead, delete the dead's handles and spawn replacements, so agents are
  constantly spawned, messaging, subscribing, crashing and being reaped;
* a **hostile minority** (``--hostile``, default 1% of the colony), kept alive
  by its own cell with small quotas (16 MiB, 4 agents): *flooders* fill a sink
  that never reads with 64 KiB messages, *hoarders* hold 4 deep subscriptions
  to the colony's events and never read, *cloners* clone themselves without
  ever waiting, *violators* use capability slots they do not hold in a loop;
* a **bystander** calling an echo agent every 5 ms and timing each call.

Measured (top-level keys):

* ``rss_growth_mb``: the kernel process's RSS at the end of the soak minus at
  its start (after ``--warmup`` seconds, the colony at full size).  Goal <= 10.
* ``bystander_p99_us``: p99 of the bystander's call latency during the soak;
  ``baseline_bystander_p99_us`` is the same bystander on the idle kernel in the
  same run, before the colony starts, and ``bystander_p99_ratio`` the ratio.
* ``audit_pending_max``: the audit log's pending-buffer high-water mark
  (bounded by its backpressure).
* ``leaked_objects``: after the colony and the hostiles are stopped and reaped,
  every kernel table (``Kernel.object_counts``) and the live kernel objects the
  garbage collector sees (agent records, capabilities, kernel objects, waits,
  mailboxes, ...) compared with the same counts taken before the soak; the sum
  of what grew.  Goal 0.

Nothing here asserts anything: the figures are for people and the issue notes.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aios.abi.errors import AIOSError, NoSuchAgent, QuotaExceeded, TimedOut, WouldBlock
from aios.sdk import Context

TRACKED = ("Agent", "KObject", "Capability", "CapabilitySpace", "Mailbox", "Wait", "SchedEntity",
           "Charge", "AsyncOp", "Subscription", "PageTable", "Account")
HOSTILE_KINDS = ("flooder", "hoarder", "cloner", "violator")


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def p99(samples: list[int]) -> float:
    if not samples:
        return 0.0
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))] / 1000.0


def live_objects() -> Counter[str]:
    gc.collect()
    tracked = set(TRACKED)
    return Counter(n for o in gc.get_objects() if (n := type(o).__name__) in tracked)


# -- the colony -----------------------------------------------------------------


async def worker(ctx: Context) -> int:
    rng = random.Random(ctx.aid)
    topic = f"{ctx.spec['topic']}.g{ctx.aid % ctx.spec.get('groups', 10)}"  # ~10 subscribers each
    period = ctx.spec["period"]
    sid = await ctx.subscribe(topic, depth=16)
    rounds = rng.randint(3, 12)
    for i in range(rounds):
        await ctx.sleep(period * (0.5 + rng.random()))
        while True:
            try:
                await ctx.next_event(sid, timeout=0)
            except WouldBlock:
                break
        r = rng.random()
        try:
            if r < 0.35:
                await ctx.publish(topic, n=i, who=ctx.aid)
            elif r < 0.7:
                await ctx.call(ctx.slots.parent, b"ping", timeout=10)
            else:
                await ctx.send_nowait(ctx.slots.parent, b"note")
        except AIOSError:
            pass  # a full mailbox, a busy cell: try again next round
    if rng.random() < 0.2:
        raise RuntimeError(f"worker {ctx.aid} crashes on purpose")
    return rounds


async def _reap(ctx: Context, live: dict[int, int]) -> None:
    """Reap every exited child and delete its control capability (its handle)."""
    while True:
        try:
            aid, _ = await ctx.wait(timeout=0)
        except (WouldBlock, NoSuchAgent):
            return
        ctl = live.pop(aid, None)
        if ctl is not None:
            await ctx.delete(ctl)


async def cell(ctx: Context) -> int:
    """Keeps ``workers`` agents of ``entry`` alive until ``until_ns``, answering their calls;
    the conductor then revokes the authority the whole colony was built from."""
    spec = ctx.spec
    want, until, entry = spec["workers"], spec["until_ns"], spec["entry"]
    child_spec, quota = spec.get("child_spec", {}), spec.get("child_quota")
    live: dict[int, int] = {}
    spawned = 0
    next_reap = 0
    while True:
        now = await ctx.now_ns()
        if now >= until:
            break
        if now >= next_reap:  # reap and replace twice a second, not on every message
            next_reap = now + 500_000_000
            await _reap(ctx, live)
            while len(live) < want:
                try:
                    h = await ctx.spawn(_ENTRIES[entry], spec=child_spec, **({"quota": quota} if quota else {}))
                except QuotaExceeded:
                    break
                live[h.aid] = h.ctl
                spawned += 1
        try:
            msg = await ctx.recv(timeout=0.5)
            if msg.call:
                await ctx.reply(msg, b"pong")
        except TimedOut:
            pass
        except AIOSError:
            pass
    for ctl in list(live.values()):
        try:
            await ctx.kill(ctl, tree=True)
        except AIOSError:
            pass
    while live:
        try:
            aid, _ = await ctx.wait(timeout=30)
        except (TimedOut, NoSuchAgent):
            break
        gone = live.pop(aid, None)
        if gone is not None:
            await ctx.delete(gone)
    return spawned


# -- the hostile minority ---------------------------------------------------------


async def sink(ctx: Context) -> None:
    await ctx.recv(timeout=7 * 24 * 3600.0)  # never reads again


async def flooder(ctx: Context) -> None:
    s = await ctx.spawn(sink)
    big = b"f" * 65536
    while True:
        try:
            await ctx.send_nowait(s.ep, big)
        except (QuotaExceeded, WouldBlock):
            await ctx.sleep(0.02)


async def hoarder(ctx: Context) -> None:
    for _ in range(4):  # every publish of the colony is queued 4 times, never read
        await ctx.subscribe("app.soak.**", depth=65536)
    await ctx.sleep(7 * 24 * 3600.0)


async def cloner(ctx: Context) -> None:
    for _ in range(20):
        try:
            await ctx.clone()  # never waits: zombies count against its 4-agent quota
        except QuotaExceeded:
            await ctx.sleep(0.02)
    return None


async def violator(ctx: Context) -> None:
    while True:
        for slot in (999, 777, 555):
            try:
                await ctx.send(slot, b"x")  # a slot it does not hold: security.violation, audited
            except AIOSError:
                pass
        await ctx.yield_()


_HOSTILES: dict[str, Any] = {"flooder": flooder, "hoarder": hoarder, "cloner": cloner, "violator": violator}


async def hostile(ctx: Context) -> None:
    await _HOSTILES[ctx.spec["kind"]](ctx)


_ENTRIES: dict[str, Any] = {"worker": worker, "hostile": hostile, "sink": sink}


# -- the bystander ---------------------------------------------------------------


async def echo(ctx: Context) -> None:
    while True:
        msg = await ctx.recv()
        if msg.payload == b"quit":
            return
        if msg.call:
            await ctx.reply(msg, msg.payload)


async def bystander(ctx: Context) -> list[int]:
    e = await ctx.spawn(echo)
    until = ctx.spec["until_ns"]
    lat: list[int] = []
    while await ctx.now_ns() < until:
        t0 = time.perf_counter_ns()
        try:
            await ctx.call(e.ep, b"x", timeout=30)
        except AIOSError:
            continue
        lat.append(time.perf_counter_ns() - t0)
        await ctx.sleep(0.005)
    await ctx.send(e.ep, b"quit")
    await ctx.wait(e.aid)
    await ctx.delete(e.ctl)
    return lat


# -- the conductor -----------------------------------------------------------------


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench soak")
    ap.add_argument("--agents", type=int, default=10_000, help="colony size (workers alive at once)")
    ap.add_argument("--per-cell", type=int, default=100, help="workers per cell")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of soak after the warm-up")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds before RSS is first read")
    ap.add_argument("--period", type=float, default=20.0, help="seconds between a worker's rounds")
    ap.add_argument("--hostile", type=float, default=0.01, help="hostile agents, as a fraction of the colony")
    ap.add_argument("--baseline", type=float, default=3.0, help="seconds of bystander on the idle kernel")
    ap.add_argument("--behavior", action="store_true",
                    help="run the behavior monitor too (it may suspend busy cells: false positives)")
    a = ap.parse_args(argv)
    from aios.host import run_async, run_sync, start_kernel
    from aios.kernel.clock import MonotonicClock
    from aios.kmod.security.glue import security_of

    tmp = Path(tempfile.mkdtemp(prefix="aios-soak-"))
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 28, home=tmp / "home", behavior=a.behavior)
    out: dict[str, Any] = {}

    async def conductor(ctx: Context) -> None:
        t0 = await ctx.now_ns()
        b = await ctx.spawn(bystander, spec={"until_ns": t0 + int(a.baseline * 1e9)})
        _, st = await ctx.wait(b.aid)
        await ctx.delete(b.ctl)
        base_lat = st["exit"] or []
        base_tables, base_objects = k.object_counts(), live_objects()

        start = await ctx.now_ns()
        first_id = k.agents.next_id
        until = start + int((a.warmup + a.duration) * 1e9)
        cells, per = max(1, a.agents // a.per_cell), a.per_cell
        handles = []
        for i in range(cells):
            handles.append(await ctx.spawn(cell, quota={"agents": per + 16}, spec={
                "workers": per, "until_ns": until, "entry": "worker",
                "child_spec": {"topic": f"app.soak.c{i}", "period": a.period, "groups": max(1, per // 10)}}))
        n_hostile = max(len(HOSTILE_KINDS), int(a.agents * a.hostile))
        for j, kind in enumerate(HOSTILE_KINDS):
            handles.append(await ctx.spawn(cell, quota={"agents": 8 * n_hostile}, spec={
                "workers": n_hostile // len(HOSTILE_KINDS) + (j < n_hostile % len(HOSTILE_KINDS)),
                "until_ns": until, "entry": "hostile", "child_spec": {"kind": kind},
                "child_quota": {"memory": 16 << 20, "agents": 4}}))
        by = await ctx.spawn(bystander, spec={"until_ns": until})
        await ctx.sleep(a.warmup)
        out["rss_start_kb"] = rss_kb()
        out["agents_at_start"] = k.agents.live
        peak_agents = 0
        while await ctx.now_ns() < until:
            await ctx.sleep(1.0)
            peak_agents = max(peak_agents, k.agents.live)
        out["rss_end_kb"] = rss_kb()
        out["agents_peak"] = peak_agents
        _, st = await ctx.wait(by.aid, timeout=600)
        await ctx.delete(by.ctl)
        out["soak_lat"] = st["exit"] or []
        # teardown: revoking the authority everything was built from kills all of it,
        # including clones orphaned when their cloners died (their quota envelopes,
        # ghosts in the derivation tree, are still descendants of this authority)
        await ctx.revoke(ctx.slots.authority)
        for h in handles:
            try:
                await ctx.kill(h.ctl, tree=True)  # the cells themselves: left without authority
            except AIOSError:
                pass
            await ctx.wait(h.aid, timeout=600)
            await ctx.delete(h.ctl)
        out["spawned"] = k.agents.next_id - first_id
        out["base_lat"] = base_lat
        ks = security_of(k)
        if ks is not None and ks.audit is not None:
            for _ in range(200):  # let the audit log catch up before counting
                if ks.audit.pressure.total == 0 and not k.throttled:
                    break
                await ctx.sleep(0.05)
        tables, objects = k.object_counts(), live_objects()
        grown = {name: tables[name] - base_tables.get(name, 0) for name in tables
                 if tables[name] > base_tables.get(name, 0)}
        grown.update({f"live {t}": objects[t] - base_objects.get(t, 0) for t in objects
                      if objects[t] > base_objects.get(t, 0)})
        out["grown"] = grown

    wall0 = time.perf_counter()
    try:
        run_sync(run_async(k, conductor, quota={"agents": 1_000_000, "memory": 8 << 30}))
        ks = security_of(k)
        audit = ks.audit.status() if ks is not None and ks.audit is not None else {}
        stats = dict(k.stats)
    finally:
        k.close()
        shutil.rmtree(tmp, ignore_errors=True)
    soak_p99, base_p99 = p99(out.get("soak_lat", [])), p99(out.get("base_lat", []))
    grown = out.get("grown", {})
    return {
        "rss_growth_mb": round((out.get("rss_end_kb", 0) - out.get("rss_start_kb", 0)) / 1024, 2),
        "bystander_p99_us": round(soak_p99, 1),
        "audit_pending_max": int(audit.get("pending_max", 0)),
        "leaked_objects": int(sum(grown.values())),
        "baseline_bystander_p99_us": round(base_p99, 1),
        "bystander_p99_ratio": round(soak_p99 / base_p99, 2) if base_p99 else 0.0,
        "rss_start_mb": round(out.get("rss_start_kb", 0) / 1024, 1),
        "rss_end_mb": round(out.get("rss_end_kb", 0) / 1024, 1),
        "agents": a.agents,
        "agents_peak": out.get("agents_peak", 0),
        "agents_spawned": out.get("spawned", 0),
        "bystander_calls": len(out.get("soak_lat", [])),
        "audit_recorded": int(audit.get("recorded", 0)),
        "audit_holds": int(audit.get("holds", 0)),
        "audit_pending_capacity": int(audit.get("pending_capacity", 0)),
        "syscalls": int(stats.get("syscalls", 0)),
        "faults": int(stats.get("faults", 0)),
        "panics": int(stats.get("panics", 0)),
        "duration_s": a.duration,
        "wall_s": round(time.perf_counter() - wall0, 1),
        "leaked": grown,
        "pid": os.getpid(),
    }
