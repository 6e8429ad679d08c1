"""The Wasm executor: one Wasmtime store per agent, syscalls as host imports.

Sharing.  One :class:`wasmtime.Engine` per executor (its config decides fuel,
epochs and memory reservation), one :class:`wasmtime.Linker` holding the
``aios.syscall`` import (its ``FuncType`` built for *this* engine: reusing a
FuncType across engines aborts the process), and per distinct module one
compiled :class:`wasmtime.Module` with its ``InstancePre`` (imports resolved
once).  What is per agent is only a ``Store``, its instance and its limits,
which is why ten thousand agents fit in a few hundred megabytes.

The ABI (docs/wasm-agents.md)::

    (import "aios" "syscall"
      (func (param $sysno i32) (param $args_ptr i32) (param $args_len i32)
            (param $ret_ptr i32) (param $ret_cap i32) (result i32)))

Arguments are a msgpack array in the agent's linear memory.  A result
``>= 0`` is the length of the msgpack-encoded result written at ``ret_ptr``;
a negative result is ``-errno`` and the error message (a msgpack string,
truncated to fit) is at ``ret_ptr``.  Out-of-bounds pointers give -EFAULT,
undecodable arguments -EPROTO, a result larger than ``ret_cap`` -EMSGSIZE.
The agent exports ``memory`` and ``aios_main() -> i32``.

Budgets.  *Fuel* is the CPU budget: before each slice the store gets
``min(slice_fuel, remaining)`` units and the units burnt are reported in
:class:`SliceResult` so the kernel's scheduler can charge them; running dry
traps with OUT_OF_FUEL and the agent stops with cause ``out-of-fuel``.  The
*epoch deadline* bounds the wall time of one slice: a timer thread ticks the
engine's epoch every ``epoch_interval_s`` and each slice may last
``deadline_ticks`` ticks (this also catches time spent blocked in host
calls, which fuel does not see).  Linear memory is capped with
``Store.set_limits(memory_size=quota)``: ``memory.grow`` past it returns -1.
WASI preopens are given only to agents holding ACCESS_FS (the agent's home
as ``/home``), read-only unless write is granted.

Syscalls from Wasm are synchronous: the host import hands the trap to the
kernel (``Sink.trap``) and expects the answer (``deliver``) before it
returns.  A call the kernel would park gets EAGAIN: Wasm agents use the
``_nowait`` forms and return from their handler to wait.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import wasmtime

from aios.abi.errors import AgentGone, NoSuchAgent, WouldBlock
from aios.abi.faults import ExecutorKind, ExitRecord, FaultCause, SecurityEvent, Sink
from aios.abi.limits import WASM_FUEL_PER_CPU_S
from aios.sandbox.process import AgentSpec, Protections

DEFAULT_SLICE_FUEL = 10_000_000
WASM_PAGE = 65536


@dataclass(frozen=True, slots=True)
class SliceResult:
    agent_id: int
    fuel_used: int
    value: Any = None  # aios_main's return value, when the slice completed
    exit: ExitRecord | None = None  # set when the agent stopped (completed or faulted)
    wall_ns: int = 0


@dataclass(slots=True)
class _WasmAgent:
    spec: AgentSpec
    store: wasmtime.Store
    instance: wasmtime.Instance
    memory: wasmtime.Memory | None
    fuel_budget: int  # remaining lifetime fuel; -1 = unlimited
    fuel_used: int = 0
    wasi: bool = False
    pending: dict[int, tuple[int, Any]] = field(default_factory=dict)
    seq: int = 0


class WasmExecutor:
    kind = ExecutorKind.WASM

    def __init__(
        self,
        sink: Sink,
        *,
        epoch_interval_s: float = 0.01,
        memory_reservation: int = 8 << 20,
        guard_size: int = 64 << 10,
        slice_fuel: int = DEFAULT_SLICE_FUEL,
        deadline_ticks: int = 10,
    ) -> None:
        self.sink = sink
        self.slice_fuel = slice_fuel
        self.deadline_ticks = deadline_ticks
        self.epoch_interval_s = epoch_interval_s
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.memory_reservation = memory_reservation
        cfg.memory_guard_size = guard_size
        cfg.memory_reservation_for_growth = 0
        cfg.parallel_compilation = False
        self.engine = wasmtime.Engine(cfg)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        i32 = wasmtime.ValType.i32()
        ty = wasmtime.FuncType([i32, i32, i32, i32, i32], [i32])  # built for this engine only
        self.linker.define_func("aios", "syscall", ty, self._host_syscall, access_caller=True)
        self._modules: dict[str, tuple[wasmtime.Module, wasmtime.InstancePre, bool]] = {}
        self.agents: dict[int, _WasmAgent] = {}
        self._current: _WasmAgent | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self.start_ticker()

    def start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="aios-wasm-epoch", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.epoch_interval_s):
            self.engine.increment_epoch()

    async def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(1)
            self._ticker = None
        self.agents.clear()

    def load_module(
        self, source: str | bytes
    ) -> tuple[wasmtime.Module, wasmtime.InstancePre, bool]:
        """Compile (once) a module from a path (.wat/.wasm) or bytes."""
        if isinstance(source, str):
            data = Path(source).read_bytes()
            key = source
        else:
            data, key = source, hashlib.sha256(source).hexdigest()
        cached = self._modules.get(key)
        if cached is not None:
            return cached
        if isinstance(source, str) and source.endswith(".wat"):
            module = wasmtime.Module(self.engine, data.decode())
        else:
            module = wasmtime.Module(self.engine, data)
        uses_wasi = any(imp.module.startswith("wasi") for imp in module.imports)
        pre = self.linker.instantiate_pre(module)
        entry = (module, pre, uses_wasi)
        self._modules[key] = entry
        return entry

    async def spawn(self, spec: AgentSpec) -> int:
        self.spawn_now(spec)
        return 0

    def spawn_now(self, spec: AgentSpec, source: str | bytes | None = None) -> None:
        """Instantiate the agent's module in a fresh store (synchronous)."""
        if spec.agent_id in self.agents:
            raise NoSuchAgent(f"wasm agent {spec.agent_id} already exists")
        _module, pre, uses_wasi = self.load_module(source if source is not None else spec.entry)
        store = wasmtime.Store(self.engine)
        if spec.quota.memory_bytes > 0:
            store.set_limits(memory_size=spec.quota.memory_bytes, instances=1, tables=4, memories=1)
        wasi = False
        if uses_wasi:
            wc = wasmtime.WasiConfig()
            if spec.access_fs and spec.home:
                wc.preopen_dir(spec.home, "/home", fs_mutable=spec.access_fs_write)
                wasi = True
            store.set_wasi(wc)
        store.set_fuel(0)
        store.set_epoch_deadline(1 << 40)
        instance = pre.instantiate(store)
        mem = instance.exports(store).get("memory")
        budget = spec.quota.cpu_seconds * WASM_FUEL_PER_CPU_S if spec.quota.cpu_seconds else -1
        self.agents[spec.agent_id] = _WasmAgent(
            spec,
            store,
            instance,
            mem if isinstance(mem, wasmtime.Memory) else None,
            budget,
            wasi=wasi,
        )

    def protections(self, agent_id: int) -> Protections | None:
        a = self.agents.get(agent_id)
        if a is None:
            return None
        return Protections(rlimits=("fuel", "epoch", "memory"), missing=())

    def kill(self, agent_id: int, cause: FaultCause = FaultCause.KILLED) -> None:
        a = self.agents.pop(agent_id, None)
        if a is None:
            raise NoSuchAgent(f"no wasm agent {agent_id}")
        self.sink.exited(ExitRecord(agent_id, cause, 1, 0, cause.value))

    def deliver(self, agent_id: int, seq: int, errno: int, result: Any) -> None:
        a = self.agents.get(agent_id)
        if a is not None and seq == a.seq:
            a.pending[seq] = (errno, result)

    def fuel_used(self, agent_id: int) -> int:
        a = self.agents.get(agent_id)
        return a.fuel_used if a is not None else 0

    # -- running ---------------------------------------------------------------------
    def run_slice(
        self,
        agent_id: int,
        export: str = "aios_main",
        *,
        fuel: int | None = None,
        deadline_ticks: int | None = None,
    ) -> SliceResult:
        """Run ``export`` for at most one slice of fuel and wall time."""
        a = self.agents.get(agent_id)
        if a is None:
            raise NoSuchAgent(f"no wasm agent {agent_id}")
        want = fuel if fuel is not None else self.slice_fuel
        give = want if a.fuel_budget < 0 else min(want, a.fuel_budget)
        store = a.store
        store.set_fuel(give)
        store.set_epoch_deadline(
            deadline_ticks if deadline_ticks is not None else self.deadline_ticks
        )
        fn = a.instance.exports(store).get(export)
        if not isinstance(fn, wasmtime.Func):
            return self._finish(
                a,
                0,
                ExitRecord(
                    agent_id, FaultCause.EXCEPTION, 1, 0, f"no exported function {export!r}"
                ),
            )
        self._current = a
        t0 = time.perf_counter_ns()
        value: Any = None
        record: ExitRecord | None = None
        try:
            value = fn(store)
            record = (
                ExitRecord(agent_id, FaultCause.EXITED, 0, 0, "") if export == "aios_main" else None
            )
        except wasmtime.Trap as trap:
            record = self._trap_record(a, trap)
        except wasmtime.WasmtimeError as exc:
            record = ExitRecord(agent_id, FaultCause.EXCEPTION, 1, 0, str(exc)[:500])
        finally:
            self._current = None
        wall = time.perf_counter_ns() - t0
        left = store.get_fuel()
        used = give - left
        if used == 0 and record is not None and record.message == "epoch deadline":
            # Wasmtime does not write the fuel counter back to the store when a
            # slice is interrupted by the epoch; charge the wall time at the
            # nominal instruction rate instead (an estimate, documented).
            used = min(give, wall * WASM_FUEL_PER_CPU_S // 1_000_000_000)
        a.fuel_used += used
        if a.fuel_budget >= 0:
            a.fuel_budget -= used
        self._check_memory(a)
        return self._finish(a, used, record, value, wall)

    def _finish(
        self, a: _WasmAgent, used: int, record: ExitRecord | None, value: Any = None, wall: int = 0
    ) -> SliceResult:
        aid = a.spec.agent_id
        if record is not None:
            self.agents.pop(aid, None)
            self.sink.exited(record)
        return SliceResult(aid, used, value, record, wall)

    def _trap_record(self, a: _WasmAgent, trap: wasmtime.Trap) -> ExitRecord:
        aid = a.spec.agent_id
        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            self._security(aid, "limit", "fuel (CPU budget) exhausted")
            return ExitRecord(aid, FaultCause.OUT_OF_FUEL, 1, 0, "out of fuel")
        if code == wasmtime.TrapCode.INTERRUPT:
            self._security(aid, "limit", "epoch deadline (wall time per slice) passed")
            return ExitRecord(aid, FaultCause.KILLED_FOR_LIMIT, 1, 0, "epoch deadline")
        return ExitRecord(aid, FaultCause.EXCEPTION, 1, 0, f"trap: {trap.message[:300]}")

    def _check_memory(self, a: _WasmAgent) -> None:
        cap = a.spec.quota.memory_bytes
        if a.memory is None or cap <= 0 or a.spec.agent_id not in self.agents:
            return
        with contextlib.suppress(wasmtime.WasmtimeError):
            if a.memory.data_len(a.store) + WASM_PAGE > cap:
                self._security(a.spec.agent_id, "limit", f"linear memory at its {cap}-byte quota")

    def _security(self, aid: int, kind: str, detail: str) -> None:
        self.sink.security(SecurityEvent(aid, kind, detail, self.kind, True, time.monotonic_ns()))

    # -- the host import -------------------------------------------------------------
    def _host_syscall(
        self,
        caller: wasmtime.Caller,
        sysno: int,
        args_ptr: int,
        args_len: int,
        ret_ptr: int,
        ret_cap: int,
    ) -> int:
        a = self._current
        if a is None:
            return -_errno.EFAULT
        mem = caller.get("memory")
        if not isinstance(mem, wasmtime.Memory):
            return -_errno.EFAULT
        size = mem.data_len(caller)
        if args_ptr < 0 or args_len < 0 or ret_ptr < 0 or ret_cap < 0:
            return -_errno.EFAULT
        if args_ptr + args_len > size or ret_ptr + ret_cap > size:
            return -_errno.EFAULT
        try:
            args = msgpack.unpackb(
                mem.read(caller, args_ptr, args_ptr + args_len), raw=False, use_list=False
            )
        except Exception:
            return -_errno.EPROTO
        if type(args) is not tuple:
            return -_errno.EPROTO
        aid = a.spec.agent_id
        a.seq += 1
        seq = a.seq
        self.sink.trap(aid, seq, sysno, args)
        answer = a.pending.pop(seq, None)
        if answer is None:
            errno, result = (
                WouldBlock.code,
                "the call would block (Wasm agents use the _nowait forms)",
            )
        else:
            errno, result = answer
        if self.agents.get(aid) is not a:
            errno, result = AgentGone.code, "agent was killed"
        try:
            out = msgpack.packb(result, use_bin_type=True)
        except Exception:
            errno, out = _errno.EPROTO, msgpack.packb("result not encodable")
        if errno:
            mem.write(caller, out[:ret_cap], ret_ptr) if len(out) <= ret_cap else None
            return -int(errno)
        if len(out) > ret_cap:
            return -_errno.EMSGSIZE
        mem.write(caller, out, ret_ptr)
        return len(out)
