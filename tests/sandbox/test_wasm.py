from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import wasmtime
from harness import StandInKernel

from aios.abi.faults import ExecutorKind, FaultCause
from aios.abi.faults import ProcessQuota as Quota
from aios.sandbox.process import AgentSpec
from aios.sandbox.wasm import WasmExecutor

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "aios" / "sandbox" / "examples"


@pytest.fixture
def kx() -> Iterator[tuple[StandInKernel, WasmExecutor]]:
    k = StandInKernel(kind=ExecutorKind.WASM)
    ex = WasmExecutor(k.sink(), epoch_interval_s=0.005)
    k.executor = ex
    ex.start_ticker()
    yield k, ex
    ex.shutdown()


def ex_spec(aid: int, name: str, **kw: object) -> AgentSpec:
    return AgentSpec(aid, str(EXAMPLES / name), **kw)  # type: ignore[arg-type]


def test_hello_makes_syscalls_through_host_import(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    ex.spawn_now(ex_spec(42, "hello.wat"))
    r = ex.run_slice(42)
    assert r.value == 42  # sysno 20 answered with the agent id
    assert k.echoes[42] == [("hello", 1)]
    assert r.exit is not None and r.exit.cause is FaultCause.EXITED
    assert r.fuel_used > 0


def test_module_compiled_once_for_many_agents(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    _k, ex = kx
    for aid in range(1, 51):
        ex.spawn_now(ex_spec(aid, "hello.wat"))
    assert len(ex._modules) == 1
    assert all(ex.run_slice(aid).value == aid for aid in range(1, 51))


def test_spinner_runs_out_of_fuel(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    ex.spawn_now(ex_spec(1, "spinner.wat"))
    r = ex.run_slice(1, fuel=200_000, deadline_ticks=1 << 30)
    assert r.exit is not None and r.exit.cause is FaultCause.OUT_OF_FUEL
    assert r.fuel_used == 200_000
    assert any(e.kind == "limit" and "fuel" in e.detail for e in k.events_for(1))
    assert 1 not in ex.agents


def test_lifetime_fuel_budget_from_quota(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    _k, ex = kx
    ex.spawn_now(ex_spec(1, "hello.wat", quota=Quota(cpu_seconds=1)))
    assert ex.agents[1].fuel_budget > 0
    ex.run_slice(1)
    assert ex.fuel_used(1) == 0  # agent finished and left
    assert 1 not in ex.agents


def test_spinner_stopped_by_epoch_deadline(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    ex.spawn_now(ex_spec(1, "spinner.wat"))
    r = ex.run_slice(1, fuel=1 << 62, deadline_ticks=2)
    assert r.exit is not None and r.exit.cause is FaultCause.KILLED_FOR_LIMIT
    assert r.fuel_used > 0  # the spin burnt fuel before the deadline hit
    assert any("epoch" in e.detail for e in k.events_for(1))


def test_memory_capped_by_quota(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    ex.spawn_now(ex_spec(1, "memhog.wat", quota=Quota(memory_bytes=1 << 20)))
    r = ex.run_slice(1, deadline_ticks=1 << 30)
    assert r.value == 15  # 1 initial page + 15 grown = 16 pages = 1 MiB
    ex.spawn_now(ex_spec(2, "memhog.wat", quota=Quota(memory_bytes=4 << 20)))
    assert ex.run_slice(2, deadline_ticks=1 << 30).value == 63
    assert any(e.kind == "limit" and "memory" in e.detail for e in k.events_for(1))


def test_wasi_preopen_only_with_access_fs(
    kx: tuple[StandInKernel, WasmExecutor], tmp_path: Path
) -> None:
    _k, ex = kx
    home = tmp_path / "home"
    home.mkdir()
    ex.spawn_now(ex_spec(1, "fsprobe.wat", home=str(home)))
    assert ex.run_slice(1).value == 8000  # fd 3 is not a preopen: EBADF
    ex.spawn_now(ex_spec(2, "fsprobe.wat", home=str(home), access_fs=True))
    ro = ex.run_slice(2).value
    assert ro != 0 and not (home / "probe.txt").exists()  # read-only preopen refuses create
    ex.spawn_now(ex_spec(3, "fsprobe.wat", home=str(home), access_fs=True, access_fs_write=True))
    assert ex.run_slice(3).value == 0
    assert (home / "probe.txt").exists()


def _agent_calling(
    sysno: int, args_hex: str, args_len: int, ret_cap: int, args_ptr: int = 0
) -> bytes:
    wat = f"""(module
      (import "aios" "syscall" (func $sys (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "{args_hex}")
      (func (export "aios_main") (result i32)
        (call $sys (i32.const {sysno}) (i32.const {args_ptr}) (i32.const {args_len}) (i32.const 1024) (i32.const {ret_cap}))))"""
    return wasmtime.wat2wasm(wat)


def _hex(b: bytes) -> str:
    return "".join(f"\\{x:02x}" for x in b)


def test_syscall_errors_and_bad_pointers(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    cases = [
        (_agent_calling(99, _hex(msgpack.packb([])), 1, 64), -38),  # ENOSYS from the kernel
        (_agent_calling(22, _hex(msgpack.packb([5])), 2, 64), -1001),  # slot not held
        (_agent_calling(20, "", 1, 64, args_ptr=70000), -14),  # EFAULT: out of bounds
        (_agent_calling(20, _hex(b"\xc1"), 1, 64), -71),  # EPROTO: malformed msgpack
        (_agent_calling(21, _hex(msgpack.packb(["x" * 100])), 103, 8), -90),  # EMSGSIZE
    ]
    for aid, (wasm, want) in enumerate(cases, 1):
        ex.spawn_now(AgentSpec(aid, "inline"), source=wasm)
        assert ex.run_slice(aid).value == want, aid
    assert any(e.kind == "capability" for e in k.events_for(2))


def test_kill_and_exit_record(kx: tuple[StandInKernel, WasmExecutor]) -> None:
    k, ex = kx
    ex.spawn_now(ex_spec(5, "hello.wat"))
    ex.kill(5)
    assert k.exits[5].cause is FaultCause.KILLED


def test_examples_present() -> None:
    assert {p.name for p in EXAMPLES.glob("*.wat")} >= {"hello.wat", "spinner.wat", "memhog.wat"}
    assert os.path.getsize(EXAMPLES / "hello.wat") > 0
