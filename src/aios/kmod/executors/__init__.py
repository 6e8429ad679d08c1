"""The executors kernel module: how agents run outside the kernel process.

The kernel's executor host (``aios.kernel.executor_host``) keeps the mechanism:
which remote agents are alive, their traps and replies, their exits.  What
is specific to each way of running an agent lives here, behind the
registry's :class:`~aios.kernel.registry.ExecutorFactory` protocol, one
factory per kind:

* ``isolated``: one sandboxed process per agent, forked from a zygote
  (namespaces, Landlock, seccomp, rlimits, cgroup; :mod:`aios.sandbox.isolated`);
* ``worker``: many agents per worker process (:mod:`aios.sandbox.worker`);
* ``wasm``: a Wasmtime store per agent, run in fuel-bounded slices on the
  kernel thread (:mod:`aios.sandbox.wasm`).

:func:`install` registers the three.  The sandbox modules are imported when
an executor of that kind is first created, not at boot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.abi.faults import SANDBOX_SWITCHES

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

REMOTE_START = "aios.sdk.agent:remote_start"  # the agent-side driver of a Python agent


def _spec(aid: int, entry: str, args: tuple[Any, ...], sandbox: dict[str, Any]) -> Any:
    from aios.sandbox.process import AgentSpec

    return AgentSpec(aid, entry, args, **sandbox)


class IsolatedFactory:
    sliced = False

    def create(self, sink: Any, disabled: frozenset[str]) -> Any:
        from aios.sandbox.isolated import IsolatedExecutor

        return IsolatedExecutor(sink, test_disable=frozenset(disabled & set(SANDBOX_SWITCHES)))

    def spec(self, aid: int, entry: str, info: dict[str, Any], sandbox: dict[str, Any]) -> Any:
        return _spec(aid, REMOTE_START, (entry, info), sandbox)

    def usage(self, consumed: int) -> dict[str, Any] | None:
        return None


class WorkerFactory(IsolatedFactory):
    def create(self, sink: Any, disabled: frozenset[str]) -> Any:
        from aios.sandbox.worker import WorkerExecutor

        return WorkerExecutor(sink, scrub_env="env" not in disabled)


class WasmFactory:
    sliced = True  # the kernel runs it in slices of fuel (it is not a process that traps on its own)

    def create(self, sink: Any, disabled: frozenset[str]) -> Any:
        from aios.sandbox.wasm import WasmExecutor

        return WasmExecutor(sink)

    def spec(self, aid: int, entry: str, info: dict[str, Any], sandbox: dict[str, Any]) -> Any:
        return _spec(aid, entry, (), sandbox)

    def usage(self, consumed: int) -> dict[str, Any] | None:
        from aios.abi.limits import WASM_FUEL_PER_CPU_S

        return {"class": "wasm", "fuel": consumed,
                "runtime_ns": consumed * 1_000_000_000 // WASM_FUEL_PER_CPU_S}


def install(k: Kernel, cfg: Any = None) -> None:
    """Register the ``isolated``, ``worker`` and ``wasm`` executor factories."""
    reg = k.registry.executors
    reg.add("isolated", IsolatedFactory())
    reg.add("worker", WorkerFactory())
    reg.add("wasm", WasmFactory())
