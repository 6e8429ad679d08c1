"""Hypothesis properties: authority confinement, and bad input never hurts the kernel."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.abi.errors import AIOSError, KernelPanic
from aios.abi.rights import ObjKind, Rights
from aios.abi.sysno import Sys
from aios.abi.trap import trap
from aios.host import run_async, run_sync, spawn_root, start_kernel
from aios.kernel.clock import VirtualClock
from aios.sdk import Context

from .invariants import check_invariants

RIGHT_NAMES = ["READ", "WRITE", "GRANT"]
rights_st = st.lists(st.sampled_from(RIGHT_NAMES), max_size=3, unique=True)
slot_st = st.integers(min_value=0, max_value=14)

op_st = st.one_of(
    st.tuples(st.just("mint"), st.integers(0, 2), slot_st, rights_st),
    st.tuples(st.just("copy"), st.integers(0, 2), slot_st),
    st.tuples(st.just("grant"), st.integers(0, 2), slot_st, slot_st, rights_st),
    st.tuples(st.just("revoke"), st.integers(0, 2), slot_st),
    st.tuples(st.just("delete"), st.integers(0, 2), slot_st),
    st.tuples(st.just("send"), st.integers(0, 2), slot_st),
    st.tuples(st.just("write"), st.integers(0, 2), slot_st),
    st.tuples(st.just("map"), st.integers(0, 2), slot_st, rights_st),
)


async def _idle(ctx: Context) -> None:
    await ctx.recv()


def _call(k: Any, a: Any, sysno: Sys, *args: Any) -> Any:
    """Run one handler as if ``a`` trapped (it is never left blocked)."""
    k.agents.transition(a, "dispatch")
    try:
        return k.table[sysno](k, a, *args)
    finally:
        if a.status.value == "running":
            k.agents.transition(a, "preempt")
        elif a.status.value == "blocked" and a.wait is not None:
            k.end_wait(a.wait)
            k.agents.transition(a, "wake")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, max_size=40))
def test_authority_confinement(ops: list[tuple[Any, ...]]) -> None:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 22)
    try:
        agents = [spawn_root(k, _idle, rights=["ALLOC_MEMORY"]) for _ in range(3)]
        for a in agents:
            k.sched.remove(a.sched)
            a.status = a.status.__class__.READY
        # initial grants: a0 can send+grant to a1, a1 to a2; each owns a region
        ep01 = k.cdt.derive(k.cap_of(agents[1], 1), agents[0].cspace, Rights.WRITE | Rights.GRANT)
        ep12 = k.cdt.derive(k.cap_of(agents[2], 1), agents[1].cspace, Rights.WRITE | Rights.GRANT)
        assert ep01 and ep12
        for a in agents:
            _call(k, a, Sys.AGENT_MEM_ALLOC, 2, 4096)
        # the model: rights each agent may legitimately hold on each object
        allowed: dict[int, dict[int, Rights]] = {a.aid: {} for a in agents}
        for a in agents:
            for cap in a.cspace.caps():
                allowed[a.aid][cap.obj.oid] = allowed[a.aid].get(cap.obj.oid, Rights.NONE) | cap.rights

        for op in ops:
            kind, who = op[0], agents[op[1]]
            try:
                if kind == "mint":
                    _call(k, who, Sys.CAP_MINT, op[2], op[3])
                elif kind == "copy":
                    _call(k, who, Sys.CAP_COPY, op[2])
                elif kind == "grant":
                    src = who.cspace.get(op[2])
                    had_grant = bool(src.rights & Rights.GRANT)
                    rslot = _call(k, who, Sys.CAP_GRANT, op[2], op[3], op[4])
                    assert had_grant, "grant succeeded without GRANT"
                    ep = who.cspace.get(op[3])
                    receiver = k.find(ep.obj.payload.owner)
                    got = receiver.cspace.get(rslot)
                    assert got.rights & ~src.rights == 0
                    table = allowed[receiver.aid]
                    table[got.obj.oid] = table.get(got.obj.oid, Rights.NONE) | got.rights
                elif kind == "revoke":
                    _call(k, who, Sys.CAP_REVOKE, op[2])
                elif kind == "delete":
                    _call(k, who, Sys.CAP_DELETE, op[2])
                elif kind == "send":
                    cap = who.cspace.get(op[2])
                    _call(k, who, Sys.IPC_SEND_NOWAIT, op[2], b"x")
                    assert cap.obj.kind is ObjKind.ENDPOINT and cap.rights & Rights.WRITE
                elif kind == "write":
                    maps = who.pt.mappings()
                    if maps:
                        m = maps[op[2] % len(maps)]
                        _call(k, who, Sys.MEM_WRITE, m.vpn * 4096, b"w")
                        assert m.cap.valid and m.cap.rights & Rights.WRITE, "wrote without WRITE"
                elif kind == "map":
                    _call(k, who, Sys.PAGE_MAP, op[2], None, op[3] or ["READ"])
            except AIOSError as e:
                assert not isinstance(e, KernelPanic)
            # confinement: nobody holds more than the closure of legitimate grants
            for a in agents:
                for cap in a.cspace.caps():
                    legit = allowed[a.aid].get(cap.obj.oid)
                    if cap.obj.kind is ObjKind.MEMORY and legit is None:
                        legit = Rights.NONE
                    assert legit is not None or cap.obj.kind is not ObjKind.ENDPOINT or cap.slot < 6, (
                        f"agent {a.aid} holds an endpoint it was never granted"
                    )
                    if legit is not None and cap.slot >= 2:
                        assert cap.rights & ~legit == 0 or cap.obj.oid not in allowed[a.aid], (
                            f"agent {a.aid} holds rights outside its closure"
                        )
            check_invariants(k)
    finally:
        k.close()


values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.binary(max_size=70_000),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
fuzz_sys = [s for s in Sys if s not in (Sys.EXIT, Sys.AGENT_SUSPEND, Sys.PQC_OPERATION)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(fuzz_sys), st.lists(values, max_size=5)), min_size=1, max_size=12))
def test_random_arguments_get_only_taxonomy_errors(calls: list[tuple[Sys, list[Any]]]) -> None:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 22)
    bad: list[str] = []

    async def fuzzer(ctx: Context) -> None:
        for sysno, args in calls:
            try:
                await trap(int(sysno), *args)
            except AIOSError as e:
                if isinstance(e, KernelPanic):
                    bad.append(f"panic in {sysno.name}{tuple(args)!r}: {e}")
            except BaseException as e:
                bad.append(f"{sysno.name}: {type(e).__name__}: {e}")

    try:
        run_sync(run_async(k, fuzzer, rights=["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT"]))
        assert not bad, bad
        assert k.stats["panics"] == 0
        check_invariants(k)
    finally:
        k.close()
