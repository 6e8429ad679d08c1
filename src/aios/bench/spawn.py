"""Agent spawn rate and per-agent memory, per executor kind.

* ``isolated_spawn_per_s``: fully confined isolated agents (zygote fork,
  user/mount/net namespaces, Landlock, seccomp, rlimits, cgroup) started
  until each has made its first syscall, spawned ``--isolated`` at a time
  concurrently.  Baseline in the same run: ``cold_python_spawn_per_s``, a
  plain ``python -c pass`` subprocess, and the ratio between them.
* ``isolated_pss_kb``: mean PSS of an idle isolated agent
  (``/proc/PID/smaps_rollup``), and ``isolated_uss_kb``, its private pages
  (memory that would be freed if it exited).
* ``wasm_spawn_per_s`` and ``wasm_bytes_per_agent``: ``--wasm`` (default
  10,000) Wasm agents instantiated from one pre-linked module; bytes are the
  growth of this process's RSS divided by the count.
* ``worker_spawn_per_s``: agents placed on worker processes until each has
  made its first syscall.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NULL, REPORT, PARK = 0, 1, 2


def _rollup(pid: int | str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0].rstrip(":")] = int(parts[1])
    return out


def cold_python(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    return n / (time.perf_counter() - t0)


async def isolated(n: int, idle_for_pss: int) -> dict[str, float]:
    from aios.abi.faults import Sink
    from aios.sandbox.isolated import IsolatedExecutor
    from aios.sandbox.process import AgentSpec

    first: dict[int, asyncio.Future[None]] = {}
    exited: dict[int, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()
    ex: IsolatedExecutor

    def trap(aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        if sysno == NULL:
            ex.deliver(aid, seq, 0, None)
            f = first.get(aid)
            if f is not None and not f.done():
                f.set_result(None)

    def on_exit(rec: Any) -> None:
        f = exited.get(rec.agent_id)
        if f is not None and not f.done():
            f.set_result(None)

    ex = IsolatedExecutor(Sink(trap, on_exit, lambda e: None))
    await ex.start()
    root = tempfile.mkdtemp(prefix="aios-bench-")
    os.chmod(root, 0o711)
    try:
        ids = list(range(1, n + 1))
        for aid in ids:
            first[aid] = loop.create_future()
            exited[aid] = loop.create_future()
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                ex.spawn(
                    AgentSpec(
                        aid, "aios.bench._agents:idle", (), home=os.path.join(root, f"a{aid}")
                    )
                )
                for aid in ids
            )
        )
        await asyncio.wait_for(asyncio.gather(*first.values()), 120)
        rate = n / (time.perf_counter() - t0)
        await asyncio.sleep(0.2)
        sample = ids[:idle_for_pss]
        rolls = [_rollup(ex.pid(a)) for a in sample]
        rolls = [r for r in rolls if r]
        pss = sum(r.get("Pss", 0) for r in rolls) / max(1, len(rolls))
        uss = sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rolls) / max(
            1, len(rolls)
        )
        for aid in ids:
            ex.kill(aid)
        await asyncio.wait_for(asyncio.gather(*exited.values()), 60)
    finally:
        await ex.close()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "isolated_spawn_per_s": rate,
        "isolated_pss_kb": pss,
        "isolated_uss_kb": uss,
        "isolated_agents": float(n),
    }


def wasm(n: int) -> dict[str, float]:
    import gc

    from aios.abi.faults import ProcessQuota as Quota
    from aios.abi.faults import Sink
    from aios.sandbox.process import AgentSpec
    from aios.sandbox.wasm import WasmExecutor

    src = str(Path(__file__).resolve().parent.parent / "sandbox" / "examples" / "hello.wat")

    def trap(aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        ex.deliver(aid, seq, 0, aid if sysno == 20 else None)

    ex = WasmExecutor(Sink(trap, lambda r: None, lambda e: None))
    ex.load_module(src)
    ex.spawn_now(AgentSpec(0, src, quota=Quota(memory_bytes=1 << 20)))  # warm
    gc.collect()
    rss0 = _rollup("self").get("Rss", 0)
    t0 = time.perf_counter()
    for aid in range(1, n + 1):
        ex.spawn_now(AgentSpec(aid, src, quota=Quota(memory_bytes=1 << 20)))
    dt = time.perf_counter() - t0
    rss1 = _rollup("self").get("Rss", 0)
    ok = ex.run_slice(1).value == 1  # the agents work: hello returns its id
    ex.shutdown()
    return {
        "wasm_spawn_per_s": n / dt,
        "wasm_bytes_per_agent": (rss1 - rss0) * 1024 / n,
        "wasm_agents": float(n),
        "wasm_ok": float(ok),
    }


async def worker(n: int, workers: int) -> dict[str, float]:
    from aios.abi.faults import Sink
    from aios.sandbox.process import AgentSpec
    from aios.sandbox.worker import WorkerExecutor

    first: dict[int, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()
    ex: WorkerExecutor

    def trap(aid: int, seq: int, sysno: int, args: tuple[Any, ...]) -> None:
        ex.deliver(aid, seq, 0, None)
        f = first.get(aid)
        if f is not None and not f.done():
            f.set_result(None)

    ex = WorkerExecutor(Sink(trap, lambda r: None, lambda e: None), workers=workers)
    await ex.start()
    try:
        # warm the workers' imports
        first[0] = loop.create_future()
        await ex.spawn(AgentSpec(0, "aios.bench._agents:hello"))
        await first[0]
        for aid in range(1, n + 1):
            first[aid] = loop.create_future()
        t0 = time.perf_counter()
        for aid in range(1, n + 1):
            await ex.spawn(AgentSpec(aid, "aios.bench._agents:hello"))
        await asyncio.wait_for(asyncio.gather(*first.values()), 120)
        rate = n / (time.perf_counter() - t0)
    finally:
        await ex.close()
    return {"worker_spawn_per_s": rate, "worker_agents": float(n)}


def run(argv: list[str]) -> dict[str, float]:
    ap = argparse.ArgumentParser(prog="aios bench spawn")
    ap.add_argument("--isolated", type=int, default=200, help="isolated agents spawned")
    ap.add_argument(
        "--pss-sample", type=int, default=50, help="idle isolated agents whose PSS is read"
    )
    ap.add_argument("--wasm", type=int, default=10_000, help="Wasm agents instantiated")
    ap.add_argument("--worker", type=int, default=5000, help="worker agents spawned")
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0 = one per core)")
    ap.add_argument("--cold", type=int, default=10, help="cold python starts for the baseline")
    a = ap.parse_args(argv)
    out: dict[str, float] = {}
    cold = cold_python(a.cold)
    out["cold_python_spawn_per_s"] = cold
    from aios.bench.xproc import new_loop

    loop = new_loop()
    try:
        out.update(loop.run_until_complete(isolated(a.isolated, a.pss_sample)))
        out.update(loop.run_until_complete(worker(a.worker, a.workers or (os.cpu_count() or 1))))
    finally:
        loop.close()
    out["isolated_vs_cold_ratio"] = out["isolated_spawn_per_s"] / cold
    out.update(wasm(a.wasm))
    return out
