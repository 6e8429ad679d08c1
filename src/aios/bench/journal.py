"""``aios bench journal``: the kernel journal on the wired path, against the same kernel unjournaled.

Every figure is measured through a real kernel (``aios.host.start_kernel``) running
in-process agents that make ordinary syscalls; the journaled kernel has the journal module
opened on a temporary file (``synchronous=FULL``, group commit by the flusher thread, every
operation answered only once its records are on disk), the baseline is the same kernel and the
same agents without it.

* ``spawn_per_s``, ``grant_per_s``, ``durable_sends_per_s``: operations per second with the
  journal, ``--parallel`` agents making them at once (the concurrency group commit feeds on),
  and ``*_memory_per_s`` the same operations unjournaled; durable sends go ``--batch`` (64)
  messages of 128 bytes per syscall (``ctx.send_many(ep, payloads, durable=True)``), their
  baseline ``IPC_SEND_BATCH`` of the same; ``durable_sends_single_per_s`` one message per
  syscall, against ``sends_single_memory_per_s`` (``IPC_SEND``); receivers drain their
  mailboxes all along;
* ``journal_ratio``: journaled over unjournaled for the three kinds together (total operations
  over total time), and a ratio per kind;
* ``recovery_s_10k_agents``: a journaled kernel spawns ``--agents`` agents with
  ``restart="always"`` and grants until the derivation tree holds ``--caps`` capabilities; its
  journal is abandoned as a crash leaves it; then a new kernel boots on it: replay (verify and
  fold), restore (every agent spawned again with its id, every capability derived again) and the
  boot snapshot, until the kernel could run.  ``replay_s`` and ``restore_s`` split it;
* ``journal_bytes_per_agent``: that journal's size on disk (WAL included) per agent, as
  written, and ``journal_bytes_per_agent_compacted`` after the boot snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aios.abi.errors import WouldBlock
from aios.host import spawn_root, start_kernel
from aios.kernel.kernel import Kernel
from aios.kmod.journal.service import JOURNAL
from aios.kmod.journal.store import Journal
from aios.kmod.journal.syscalls import open_journal
from aios.sdk import Context

PAYLOAD = bytes(range(128))
KEEPER = "aios.demos.journaled:keeper"
GRANTING = {"events": ["READ", "WRITE", "GRANT"]}
PHASES = {"spawn": "spawn", "grant": "grant", "durable_sends": "send"}


def _kernel(path: Path | None) -> Kernel:
    k = start_kernel(arena_bytes=1 << 26)
    if path is not None:
        open_journal(k, Journal(path, batch_max=1 << 16))
    return k


def _drive(k: Kernel, done: Callable[[], bool], timeout: float = 600.0) -> None:
    async def main() -> None:
        task = asyncio.create_task(k.run())
        deadline = time.monotonic() + timeout
        while not done() and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        k.stop()
        await task

    asyncio.run(main())
    if not done():
        raise RuntimeError("the benchmark's agents did not finish")


def _close(k: Kernel) -> None:
    svc = k.ext.get(JOURNAL)
    if svc is not None:
        svc.close()
    k.close()


async def _drain(ctx: Context) -> None:
    """Receives everything, deleting the capabilities that come with grants."""
    while True:
        for m in await ctx.recv_many(1024):
            if m.cap >= 0:
                await ctx.delete(m.cap)


def _phase(kind: str, n: int, parallel: int, journaled: bool, tmp: Path, batch: int = 1) -> float:
    """Seconds for ``n`` operations of ``kind`` by ``parallel`` agents, from the first to the
    last answer."""
    k = _kernel(tmp / f"{kind}-{batch}.db" if journaled else None)
    per = max(1, n // parallel)
    marks: dict[str, float] = {}
    finished: list[int] = []
    ready: list[int] = []

    async def worker(ctx: Context) -> None:
        sink = await ctx.spawn(_drain, name="sink")
        ready.append(1)
        while len(ready) < parallel:  # start together
            await ctx.yield_()
        marks.setdefault("t0", time.perf_counter())
        if kind == "spawn":
            for _ in range(per):
                await ctx.spawn(KEEPER)
        elif kind == "grant":
            for _ in range(per):
                await ctx.grant(4, sink.ep, ["READ"])
        elif batch > 1:
            for _ in range(per // batch):
                await ctx.send_many(sink.ep, [PAYLOAD] * batch, durable=journaled)
        else:
            for _ in range(per):
                while True:
                    try:
                        await ctx.send(sink.ep, PAYLOAD, durable=journaled)
                        break
                    except WouldBlock:
                        await ctx.yield_()
        finished.append(1)
        if len(finished) == parallel:
            marks["t1"] = time.perf_counter()
        await ctx.sleep(3600)

    try:
        for _ in range(parallel):
            spawn_root(k, worker, quota={"agents": per + 8}, **GRANTING)
        _drive(k, lambda: "t1" in marks)
    finally:
        _close(k)
    return marks["t1"] - marks["t0"]


def _throughput(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    totals = {True: 0.0, False: 0.0}
    counts = {"spawn": args.spawns, "grant": args.grants, "durable_sends": args.sends}
    for journaled in (False, True):
        for kind, n in counts.items():
            n = max(args.parallel, n // args.parallel * args.parallel)
            s = _phase(PHASES[kind], n, args.parallel, journaled, tmp,
                       args.batch if kind == "durable_sends" else 1)
            out[f"{kind}{'' if journaled else '_memory'}_per_s"] = round(n / s)
            totals[journaled] += s
    ops = sum(max(args.parallel, n // args.parallel * args.parallel) for n in counts.values())
    out["journal_ratio"] = round((ops / totals[True]) / (ops / totals[False]), 3)
    for kind in counts:
        out[f"{kind}_ratio"] = round(out[f"{kind}_per_s"] / out[f"{kind}_memory_per_s"], 3)
    # one message per syscall: every sender waits for the commit of each message
    n = max(args.parallel, args.single_sends // args.parallel * args.parallel)
    out["durable_sends_single_per_s"] = round(n / _phase("send", n, args.parallel, True, tmp))
    out["sends_single_memory_per_s"] = round(n / _phase("send", n, args.parallel, False, tmp))
    return out


def _recovery(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = tmp / "recovery" / "journal.db"
    k = _kernel(path)
    spawners = 16
    per = args.agents // spawners
    grants = max(0, args.caps // args.agents - 8)  # a spawn makes eight capabilities
    finished: list[int] = []

    async def spawner(ctx: Context) -> None:
        for _ in range(per):
            c = await ctx.spawn(KEEPER, restart="always")
            for _ in range(grants):
                await ctx.grant(4, c.ep, ["READ"])
        finished.append(1)
        await ctx.sleep(3600)

    for _ in range(spawners):
        spawn_root(k, spawner, quota={"agents": per + 8}, **GRANTING)
    _drive(k, lambda: len(finished) == spawners)
    svc = k.ext[JOURNAL]
    svc.flush()
    caps = sum(len(cs) for cs in k.cdt.spaces())
    svc.j.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = svc.j.size_bytes()
    svc.abandon()  # the crash: nothing more reaches the disk
    k.close()

    t0 = time.perf_counter()
    k2 = _kernel(path)
    recovery_s = time.perf_counter() - t0
    try:
        rec = k2.ext[JOURNAL].recovered
        if len(rec["agents"]) != spawners * per:
            raise RuntimeError(f"recovery restored {len(rec['agents'])} of {spawners * per} agents")
        compacted = k2.ext[JOURNAL].j.size_bytes()
    finally:
        _close(k2)
    return {
        "agents": spawners * per,
        "capabilities": caps,
        "recovery_s_10k_agents": round(recovery_s, 3),
        "replay_s": rec["replay_s"],
        "restore_s": rec["restore_s"],
        "records": rec["replayed_records"],
        "capabilities_restored": rec["capabilities"],
        "journal_bytes_per_agent": round(size / (spawners * per)),
        "journal_bytes_per_agent_compacted": round(compacted / (spawners * per)),
    }


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench journal")
    ap.add_argument("--spawns", type=int, default=4_000)
    ap.add_argument("--grants", type=int, default=40_000)
    ap.add_argument("--sends", type=int, default=100_000)
    ap.add_argument("--parallel", type=int, default=256, help="agents making operations at once")
    ap.add_argument("--batch", type=int, default=64,
                    help="messages per durable-send syscall (ctx.send_many(..., durable=True))")
    ap.add_argument("--single-sends", type=int, default=20_000,
                    help="durable sends of one message per syscall (durable_sends_single_per_s)")
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--caps", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to put the journals (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        tput = _throughput(tmp, args)
        rec = _recovery(tmp, args)
    head = {
        "durable_sends_per_s": tput["durable_sends_per_s"],
        "journal_ratio": tput["journal_ratio"],
        "recovery_s_10k_agents": rec["recovery_s_10k_agents"],
        "journal_bytes_per_agent": rec["journal_bytes_per_agent"],
        "parallel": args.parallel,
        "batch": args.batch,
    }
    return {**head, **tput, **rec}
