"""The registry: blocks refuse foreign and taken numbers, typed state, hooks in order."""

from __future__ import annotations

from typing import Any

import pytest

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject
from aios.abi.sysno import Sys
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.kernel.registry import Key, Registry


def _noop(k: Any, a: Any) -> None:
    return None


def test_a_block_refuses_numbers_outside_it_and_numbers_taken() -> None:
    r = Registry()
    mem = r.syscalls.block("memoryd")
    mem.add(Sys.MEMD_CREATE, _noop)
    with pytest.raises(InvalidArgument, match="outside the 'memoryd' block"):
        mem.add(Sys.SEMANTIC_OPEN, _noop)
    with pytest.raises(AlreadyExists, match="already registered by 'memoryd'"):
        mem.add(Sys.MEMD_CREATE, _noop)
    with pytest.raises(AlreadyExists):
        r.syscalls.block("memoryd")  # one block object per owner
    with pytest.raises(InvalidArgument, match="no syscall block"):
        r.syscalls.block("nobody")
    assert r.syscalls.table[Sys.MEMD_CREATE] is _noop and r.syscalls.count() == 1


def test_the_kernel_registers_only_its_own_blocks() -> None:
    k = Kernel(clock=VirtualClock(), arena_bytes=1 << 20)
    try:
        owners = set(k.registry.syscalls.owners.values())
        assert owners == {"kernel"}
        assert k.table[Sys.MEMD_PUT] is None and k.table[Sys.PQC_OPERATION] is None
        with pytest.raises(AlreadyExists, match="already registered by 'kernel'"):
            k.registry.syscalls.put("intruder", int(Sys.IPC_SEND), _noop)
    finally:
        k.close()


def test_extension_state_is_typed_and_missing_is_a_clear_error() -> None:
    k = Kernel(clock=VirtualClock(), arena_bytes=1 << 20)
    key: Key[list[int]] = Key("example")
    try:
        with pytest.raises(NoSuchObject, match="'example' is not installed"):
            k.ext[key]
        k.ext[key] = [1]
        assert k.ext[key] == [1] and key in k.ext
        with pytest.raises(AlreadyExists):
            k.ext[key] = [2]
    finally:
        k.close()


def test_unknown_executor_kind_is_invalid_argument() -> None:
    r = Registry()
    with pytest.raises(InvalidArgument, match="no executor of kind 'microvm'"):
        r.executors["microvm"]


def test_shutdown_hooks_run_in_order_and_all_run() -> None:
    k = Kernel(clock=VirtualClock(), arena_bytes=1 << 20)
    ran: list[str] = []

    def boom() -> None:
        ran.append("boom")
        raise RuntimeError("hook failed")

    k.registry.on_shutdown(lambda: ran.append("late"), order=100)
    k.registry.on_shutdown(boom, order=10)
    k.registry.on_shutdown(lambda: ran.append("early"), order=0)
    with pytest.raises(RuntimeError, match="hook failed"):
        k.close()
    assert ran == ["early", "boom", "late"]


def test_exit_hooks_see_every_agent_that_ends(kernel: Kernel, run_agents: Any) -> None:
    seen: list[tuple[int, str]] = []
    early: list[int] = []
    kernel.registry.on_agent_exit(lambda a: seen.append((a.aid, a.how)))
    kernel.registry.on_agent_exit(lambda a: early.append(a.aid), before_event=True)

    async def ok(ctx: Any) -> int:
        return 0

    async def bad(ctx: Any) -> int:
        raise ValueError("no")

    res = run_agents(ok, bad)
    assert sorted(seen) == sorted((aid, "exited" if r["fault"] is None else "faulted")
                                  for aid, r in res.items())
    assert sorted(early) == sorted(res)
