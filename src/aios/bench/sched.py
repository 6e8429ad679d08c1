"""``aios bench sched``: cost of one scheduling cycle at 100, 10k and 100k runnable.

A cycle is what the kernel does at every preemption: ``pick`` the next entity,
``charge`` it one slice of runtime (which ends its slice and gives it a new
virtual deadline) and ``put_prev`` it back into the queue.  Entities have mixed
weights so the tree is not degenerate.  The baseline is the same cycle at 100
runnable entities in the same run; ``ratio_100k_to_100`` near 1 is O(log n)
with a small constant (target <= 2).
"""

from __future__ import annotations

import argparse
import random
import time

from aios.kernel.clock import VirtualClock
from aios.kernel.scheduler import SCHED_PRIO_TO_WEIGHT, Scheduler


def cycle_ns(n: int, cycles: int, seed: int = 1) -> float:
    clock = VirtualClock()
    sched = Scheduler(clock)
    rnd = random.Random(seed)
    for i in range(n):
        e = sched.new_entity(i, None, weight=rnd.choice(SCHED_PRIO_TO_WEIGHT[10:30]))
        sched.wake(e)
    tick = sched.base_slice_ns
    pick, charge, put_prev, advance = sched.pick, sched.charge, sched.put_prev, clock.advance
    for _ in range(min(cycles, 2000)):  # warm up
        e = pick()
        assert e is not None
        advance(tick)
        charge(e, tick)
        put_prev(e)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for _ in range(cycles):
            e = pick()
            assert e is not None
            advance(tick)
            charge(e, tick)
            put_prev(e)
        best = min(best, (time.perf_counter_ns() - t0) / cycles)
    return best


def run(argv: list[str]) -> dict[str, float | int]:
    ap = argparse.ArgumentParser(prog="aios bench sched")
    ap.add_argument("--cycles", type=int, default=20_000)
    ap.add_argument("--sizes", default="100,10000,100000")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, float | int] = {}
    for n in sizes:
        out[f"pick_ns_{n}"] = round(cycle_ns(n, args.cycles), 1)
    if 100 in sizes and 100000 in sizes:
        out["ratio_100k_to_100"] = round(out["pick_ns_100000"] / out["pick_ns_100"], 3)
    out["cycles"] = args.cycles
    return out
