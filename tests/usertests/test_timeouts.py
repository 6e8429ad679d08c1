"""User tests (SDK only): every blocking syscall's timeout fires on an idle kernel,
whichever executor the caller runs in.

The probe ``aios.demos.remote_agents:timeouts`` makes each blocking call with a
0.2 s timeout while nothing else happens in the kernel.  A kernel whose timers do
not wake its sleeping loop (finding 1 of the robustness review) never answers a
remote caller: the parent's own ``wait`` (30 s) then times out and the test
fails.  No assertion here is about how long anything took.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aioscli import aios
from runs import run_real

from aios.abi.errors import TimedOut
from aios.abi.sysno import Sys
from aios.demos.remote_agents import timeouts
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sandbox.channel import TrapClient, drive
from aios.sdk import Context

EXPECTED = {
    "sleep": "ok",
    "ipc_recv": "ETIMEDOUT",
    "ipc_recv_batch": "ETIMEDOUT",
    "ipc_call": "ETIMEDOUT",
    "event_recv": "ETIMEDOUT",
    "sem_down": "ETIMEDOUT",
    "cond_wait": "ETIMEDOUT",
    "mutex_lock": "ETIMEDOUT",
    "wait_child": "ETIMEDOUT",
}


@pytest.mark.parametrize("executor", ["inproc", pytest.param("isolated", marks=pytest.mark.isolation), "worker"])
def test_blocking_calls_time_out_on_an_idle_kernel(executor: str) -> None:
    async def main(ctx: Context) -> Any:
        h = await ctx.spawn("aios.demos.remote_agents:timeouts", executor=executor)
        try:
            _, st = await ctx.wait(h.aid, timeout=30)
        except TimedOut:
            await ctx.kill(h.ctl)  # a probe stuck in a call whose timeout never fired
            return "the probe never finished"
        return st

    (r,) = run_real(main).values()
    assert r["fault"] is None, r["fault"]
    assert isinstance(r["exit"], dict), r["exit"]
    assert r["exit"]["fault"] is None, r["exit"]
    assert r["exit"]["exit"] == EXPECTED


def test_async_result_times_out_on_an_idle_kernel() -> None:
    from aios.sdk import syscalls as sc

    async def main(ctx: Context) -> Any:
        k = kernel_ref[0]
        op = k.new_async(k.find(ctx.aid))  # an operation nobody completes
        try:
            await sc.get_async_result(op.handle, 0.2)
        except Exception as e:
            return type(e).__name__
        return "completed"

    kernel_ref: list[Any] = []
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24)
    kernel_ref.append(k)
    try:
        (r,) = run_sync(run_async(k, main)).values()
    finally:
        k.close()
    assert r["exit"] == "TimedOut"


WASM_PROBE = r"""
(module
  (import "aios" "syscall" (func $sys (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\91\cb\3f\c9\99\99\99\99\99\9a")      ;; [0.2]
  (data (i32.const 16) "\92\01\cb\3f\c9\99\99\99\99\99\9a")  ;; [1, 0.2]
  (func (export "aios_main") (result i32)
    (local $r i32)
    ;; SLEEP 0.2: a Wasm host call cannot park, so the kernel answers EAGAIN (-11) at once;
    ;; any other answer traps, which the test sees as a fault
    (local.set $r (call $sys (i32.const 25) (i32.const 0) (i32.const 10) (i32.const 256) (i32.const 64)))
    (if (i32.ne (local.get $r) (i32.const -11)) (then (unreachable)))
    ;; IPC_RECV(1, 0.2) on an empty mailbox: EAGAIN as well
    (local.set $r (call $sys (i32.const 6) (i32.const 16) (i32.const 11) (i32.const 256) (i32.const 64)))
    (if (i32.ne (local.get $r) (i32.const -11)) (then (unreachable)))
    (i32.const 7)))
"""


def test_wasm_blocking_calls_answer_at_once(tmp_path: Path) -> None:
    wat = tmp_path / "probe.wat"
    wat.write_text(WASM_PROBE)

    async def main(ctx: Context) -> Any:
        h = await ctx.spawn(str(wat), executor="wasm")
        _, st = await ctx.wait(h.aid, timeout=30)
        return st

    (r,) = run_real(main).values()
    assert r["fault"] is None, r
    assert r["exit"]["fault"] is None, r  # a wrong answer traps (unreachable): a fault


def test_console_blocking_calls_time_out_on_an_idle_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    aios(home, "up", "-d")
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(home / "kernel.sock"))
        client = TrapClient(s)
        s.settimeout(30)  # a reply that never comes fails the test instead of hanging it
        aid = client.call(int(Sys.AGENT_SELF), ())
        info = {"aid": aid, "name": "console", "parent": 1, "state": {}, "spec": {}}
        out = drive(timeouts(Context(info)), client)
        s.close()
    finally:
        subprocess.run([sys.executable, "-m", "aios.cli.main", "down"], env={**os.environ, "AIOS_HOME": str(home)},
                       capture_output=True, timeout=120)
    assert out.cause == "ok", out
    assert out.value == EXPECTED
