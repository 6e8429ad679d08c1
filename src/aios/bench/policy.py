"""``aios bench policy``: Cedar decisions, token verification, behavior cost.

Figures:

* ``decisions_per_s``: :meth:`PolicyEngine.check_spawn` of a typical spawn
  request against the shipped policies (pre-parsed ``PolicySet``, cached
  entities, audit callback connected), with ``decide_us`` its cost per call:
  the number the kernel adds to a policy-marked syscall.  Baseline in the
  same run: ``uncached_decisions_per_s``, the same request through
  ``cedarpy.is_authorized`` with policies and entities as strings (parsed per
  call); ``cache_speedup`` is the ratio.
* ``marks_ns``: the cost of ``engine.marks(action)`` paid by every syscall.
* ``token_verify_per_s``: :func:`tokens.verify` of a two-block token (root
  grant plus one attenuation); baseline ``mldsa65_verify_per_s`` (one raw
  ML-DSA-65 verification) and ``token_verify_cost_in_sigs``.
* ``behavior_observe_per_s``: :meth:`BehaviorMonitor.observe` on a normal mix.

* ``syscall_overhead_ratio``: ``CAP_GRANT`` through real in-process agents on
  a kernel whose policy gate guards grants (the shipped ``grant-default``
  permit marks the action: one cached Cedar batch decision plus its audit
  event per call), divided by the same syscall on a kernel booted without
  policy, same run.  ``grant_guarded_us`` / ``grant_plain_us`` are the two
  costs per call (grant + the receiver's delete, median of batches).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any


def _rate(fn: Callable[[], object], seconds: float, min_calls: int = 20) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time."""
    fn()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    batch = 1
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline and n >= min_calls:
            return n / (now - t0)
        batch = min(batch * 2, 1024)


def _grant_cost_us(policy: bool, batches: int, batch: int) -> float:
    """Median cost of one CAP_GRANT (plus the receiver's CAP_DELETE) between two agents."""
    import statistics

    from aios.host import run_async, run_sync, start_kernel
    from aios.sdk import Context
    from aios.sdk import syscalls as sc

    samples: list[float] = []

    async def sink(ctx: Context) -> None:
        while True:
            msgs = await ctx.recv_many(4096)
            for m in msgs:
                if m.payload == b"stop":
                    return
                await sc.cap_delete(m.cap)

    async def granter(ctx: Context) -> None:
        h = await ctx.spawn(sink)
        src = await ctx.mint(ctx.slots.mailbox, ["WRITE", "GRANT"])
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                await sc.cap_grant(src, h.ep, ["WRITE"])
            samples.append((time.perf_counter_ns() - t0) / batch / 1000)
            await ctx.yield_()
        await ctx.send(h.ep, b"stop")
        await ctx.wait(h.aid)

    k = start_kernel(arena_bytes=1 << 24, policy=policy, behavior=False)
    try:
        run_sync(run_async(k, granter))
    finally:
        k.close()
    return statistics.median(samples)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench policy")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--grant-batches", type=int, default=40, help="batches of CAP_GRANT per kernel")
    ap.add_argument("--grant-batch", type=int, default=200, help="grants per batch (< mailbox depth)")
    args = ap.parse_args(argv)
    secs = args.seconds

    import cedarpy

    from aios.lib import tokens
    from aios.lib.behavior import BehaviorMonitor
    from aios.lib.policy.engine import AgentInfo, ImageRef, PolicyEngine
    from aios.lib.policy.files import DEFAULTS_DIR, read_sources

    sources = read_sources([DEFAULTS_DIR])
    audit: list[object] = []
    engine = PolicyEngine.from_sources(
        sources, emit=lambda _t, r: audit.append(r) if len(audit) < 1000 else None
    )
    parent = AgentInfo(7, type="worker", publisher="acme", image="acme/worker:1")
    image = ImageRef("acme/summarizer:2", publisher="acme")

    def cached() -> object:
        return engine.check_spawn(
            parent, image, child_type="summarizer", child_publisher="acme", rights=("READ", "WRITE")
        )

    text = "\n".join(sources[k] for k in sorted(sources))
    ents = json.dumps(parent.entities() + image.entities())
    req = {
        "principal": parent.uid(),
        "action": {"type": "Action", "id": "spawn"},
        "resource": image.uid(),
        "context": {
            "child_type": "summarizer",
            "child_publisher": "acme",
            "rights": ["READ", "WRITE"],
        },
    }

    def uncached() -> object:
        return cedarpy.is_authorized(req, text, ents)

    assert cedarpy.is_authorized(req, text, ents).allowed
    dps = _rate(cached, secs)
    ups = _rate(uncached, secs)
    marks = _rate(lambda: engine.marks("ipc_send"), secs / 2, 1000)

    root = tokens.load_seed_key(bytes(range(32)))
    pub = root.public_key()
    tok = tokens.attenuate(
        tokens.mint(root, object="agent:7/mailbox", rights={"READ", "WRITE"}, expiry=4_000_000_000),
        rights={"READ"},
        audience="node-b",
    )
    revoked: set[str] = set()
    now = time.time()

    def verify() -> object:
        return tokens.verify(tok, pub, now=now, audience="node-b", is_revoked=revoked.__contains__)

    sig = root.sign(b"x" * 1000, tokens.CONTEXT)
    tvs = _rate(verify, secs)
    raw = _rate(lambda: pub.verify(sig, b"x" * 1000, tokens.CONTEXT), secs)

    mon = BehaviorMonitor()
    clock = [0]
    mix = [5, 6, 5, 7, 5, 6, 8, 20]

    def observe() -> object:
        clock[0] += 5_000_000
        return mon.observe(1, mix[clock[0] % 8], 0, clock[0])

    obs = _rate(observe, secs / 2, 1000)
    plain = _grant_cost_us(False, args.grant_batches, args.grant_batch)
    guarded = _grant_cost_us(True, args.grant_batches, args.grant_batch)
    return {
        "syscall_overhead_ratio": round(guarded / plain, 2),
        "grant_guarded_us": round(guarded, 2),
        "grant_plain_us": round(plain, 2),
        "decisions_per_s": round(dps, 1),
        "decide_us": round(1e6 / dps, 2),
        "uncached_decisions_per_s": round(ups, 1),
        "cache_speedup": round(dps / ups, 2),
        "marks_ns": round(1e9 / marks, 1),
        "token_verify_per_s": round(tvs, 1),
        "mldsa65_verify_per_s": round(raw, 1),
        "token_verify_cost_in_sigs": round(raw / tvs, 2),
        "token_bytes": len(tok),
        "behavior_observe_per_s": round(obs, 1),
    }
