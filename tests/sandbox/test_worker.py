from __future__ import annotations

import asyncio

import pytest
from harness import HERE, StandInKernel

from aios.abi.faults import ExecutorKind, FaultCause
from aios.sandbox.process import AgentSpec
from aios.sandbox.worker import Placement, WorkerExecutor


def test_placement_least_loaded() -> None:
    p = Placement(3)
    assert [p.place(a) for a in range(6)] == [0, 1, 2, 0, 1, 2]
    p.remove(0)
    p.remove(3)
    assert p.place(10) == 0
    assert p.load == [1, 2, 2]


def test_placement_plan_moves_from_overloaded() -> None:
    p = Placement(2)
    for a in range(10):
        p.where[a] = 0
    p.load = [10, 0]
    plan = p.plan({0: list(range(10))})
    assert len(plan) == 5 and all(src == 0 for _, src in plan)
    assert p.plan({}) == []  # nothing movable: no plan
    with pytest.raises(ValueError):
        Placement(0)


def spec(aid: int, entry: str, *args: object) -> AgentSpec:
    return AgentSpec(aid, f"agents_hostile:{entry}", tuple(args), code_paths=(HERE,))


def run(go):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        k = StandInKernel(kind=ExecutorKind.WORKER)
        ex = WorkerExecutor(k.sink(), workers=2)
        k.executor = ex
        await ex.start()
        try:
            return await asyncio.wait_for(go(k, ex), 60)
        finally:
            await ex.close()

    return asyncio.run(main())


def test_many_agents_multiplexed_over_workers() -> None:
    async def go(k: StandInKernel, ex: WorkerExecutor) -> StandInKernel:
        for aid in range(1, 201):
            await ex.spawn(spec(aid, "well_behaved", 5))
        assert ex.placement.load == [100, 100]
        for aid in range(1, 201):
            await k.wait_exit(aid)
        return k

    k = run(go)
    assert all(k.exits[a].cause is FaultCause.EXITED for a in range(1, 201))
    assert all(len(k.echoes[a]) == 5 for a in range(1, 201))


def test_errors_thrown_into_agents_and_kill() -> None:
    async def go(k: StandInKernel, ex: WorkerExecutor) -> StandInKernel:
        await ex.spawn(spec(1, "use_slot", 3))
        await ex.spawn(spec(2, "crash"))
        await ex.spawn(spec(3, "idle"))
        await k.wait_exit(1)
        await k.wait_exit(2)
        while 3 not in ex.started:
            await asyncio.sleep(0.01)
        ex.kill(3)
        await k.wait_exit(3)
        return k

    k = run(go)
    assert k.echoes[1] == [("denied:EBADCAP",)]
    assert k.exits[2].cause is FaultCause.EXCEPTION and "boom" in k.exits[2].message
    assert k.exits[3].cause is FaultCause.KILLED


def test_rebalance_moves_queued_records() -> None:
    async def go(k: StandInKernel, ex: WorkerExecutor) -> list[tuple[int, int, int]]:
        for aid in range(1, 2001):
            await ex.spawn(spec(aid, "hello"), pin=0)
        moves = await ex.rebalance()
        for aid in range(1, 2001):
            await k.wait_exit(aid)
        assert all(k.exits[a].cause is FaultCause.EXITED for a in range(1, 2001))
        assert all(k.echoes[a] == [("hello", a)] for a in range(1, 2001))
        return moves

    moves = run(go)
    assert len(moves) > 500
    assert all(src == 0 and dst == 1 for _, src, dst in moves)
