"""Confinement is inherited and monotone: the order, the derivation, and a property test.

The property test drives random sequences of lifecycle operations (spawn,
clone, split, specialize, upgrade, merge, kill, crash-and-restart) from
agents of every executor kind through the real syscall table of a real
kernel, and after every step compares every live agent with its creator and
its source.  It does not start processes: the kernel's executor host is
replaced by a recorder that attaches each out-of-process agent as if its
process had started and keeps the sandbox spec the executor would have been
given (:meth:`ExecutorHost.spec_for`).  That spec is what the isolated
executor enforces (Landlock paths, seccomp network filter, rlimits, cgroup
limits), so comparing specs is comparing sandboxes; the real processes are
covered by ``tests/usertests/test_containment.py``.  The comparison here is
written independently of :mod:`aios.kernel.confinement`: its own executor
order, its own reading of "no weaker" on each axis.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aios.sandbox as sandbox_pkg
from aios.abi.errors import AIOSError, KernelPanic, PermissionDenied
from aios.abi.faults import ExitRecord, FaultCause
from aios.abi.rights import Rights
from aios.abi.sysno import Sys
from aios.host import spawn_root, start_kernel
from aios.kernel import confinement
from aios.kernel.agents import AgentState
from aios.kernel.clock import VirtualClock
from aios.kernel.confinement import Confinement, executor_at_least, strictest, weaker_axes
from aios.sandbox.environment import agent_environment, allowed
from aios.sdk import Context

HELLO_WAT = str(Path(sandbox_pkg.__file__).parent / "examples" / "hello.wat")
STEADY = "aios.demos.hostile:steady"

# the order, written independently: rank, and which pairs are incomparable
RANK = {"inproc": 0, "worker": 1, "isolated": 2, "wasm": 2}


def no_weaker_executor(child: str, bound: str) -> bool:
    if bound in ("isolated", "wasm"):
        return child == bound
    return RANK[child] >= RANK[bound]


async def _idle(ctx: Context) -> None:
    await ctx.recv()


# -- the order (pure) --------------------------------------------------------------


def test_executor_order() -> None:
    for a in RANK:
        for b in RANK:
            assert executor_at_least(a, b) == no_weaker_executor(a, b), (a, b)
    assert strictest(["inproc", "worker"]) == "worker"
    assert strictest(["worker", "isolated", "inproc"]) == "isolated"
    assert strictest(["isolated", "wasm"]) is None
    assert strictest([]) == "inproc"


def test_weaker_axes_names_every_axis() -> None:
    base = Confinement("isolated", Rights.SPAWN_AGENT, 1 << 20, 8, 5, 100, ("/img",))
    assert weaker_axes(base, base) == []
    wide = Confinement("inproc", Rights.SPAWN_AGENT | Rights.ACCESS_NET, 0, 0, 0, 200, ("/img", "/etc"))
    got = " | ".join(weaker_axes(wide, base))
    for axis in ("executor", "ACCESS_NET", "memory", "processes", "cpu_seconds", "cpu_weight",
                 "code paths", "environment"):
        assert axis in got, axis
    assert weaker_axes(wide, confinement.OPERATOR) == []  # the operator bounds nothing


def test_environment_allowlist_has_no_secrets() -> None:
    host = {"AIOS_KEY_PASSPHRASE": "s", "OPENAI_API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "a",
            "HOME": "/root", "PATH": "/opt/secret/bin:/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C",
            "AIOS_HOME": "/root/.aios", "AIOS_EMBEDDER": "minilm", "SSH_AUTH_SOCK": "/tmp/agent"}
    env = agent_environment(host)
    assert set(env) == {"LANG", "LC_ALL", "AIOS_EMBEDDER", "PATH", "PYTHONPATH",
                        "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE"}
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert all(allowed(n) for n in env)
    assert agent_environment(host, scrub=False)["AIOS_KEY_PASSPHRASE"] == "s"  # the mutant's


# -- the kernel, without processes ---------------------------------------------------------


class Recorder:
    """Stands in for ExecutorHost.start: attach as if started, keep the spec it would enforce."""

    def __init__(self, k: Any) -> None:
        self.k = k
        self.specs: dict[int, dict[str, Any]] = {}

    def start(self, a: Any, done: Any) -> None:
        self.specs[a.aid] = self.k.executors.spec_for(a)
        self.k.executors.remote.attach(a, lambda *_x: None, lambda _a: None, a.confinement.executor)


def boot() -> tuple[Any, Recorder]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 22)
    rec = Recorder(k)
    k.executors.start = rec.start  # type: ignore[method-assign]
    return k, rec


def call(k: Any, a: Any, sysno: Sys, *args: Any) -> Any:
    """Run one handler as ``a`` (never left blocked)."""
    h = k.table[sysno]
    if a.executor is not None:  # a remote agent traps while RUNNING
        k.current = a
        try:
            return h(k, a, *args)
        finally:
            k.current = None
    k.agents.transition(a, "dispatch")
    try:
        return h(k, a, *args)
    finally:
        if a.status is AgentState.RUNNING:
            k.agents.transition(a, "preempt")
        elif a.status is AgentState.BLOCKED and a.wait is not None:
            k.end_wait(a.wait)
            k.agents.transition(a, "wake")


def roots(k: Any) -> list[Any]:
    """One agent of every executor kind, with different rights and limits."""
    out = [
        spawn_root(k, _idle, rights=["SPAWN_AGENT", "KILL_AGENT", "ACCESS_NET"], quota={"memory": 64 << 20}),
        spawn_root(k, STEADY, executor="worker", rights=["SPAWN_AGENT", "KILL_AGENT", "ACCESS_FS"]),
        spawn_root(k, STEADY, executor="isolated", rights=["SPAWN_AGENT", "KILL_AGENT"],
                   quota={"memory": 32 << 20, "cpu_weight": 300}),
        spawn_root(k, STEADY, executor="isolated", rights=["SPAWN_AGENT", "KILL_AGENT", "ACCESS_NET"]),
        spawn_root(k, HELLO_WAT, executor="wasm", rights=["SPAWN_AGENT", "KILL_AGENT"]),
    ]
    for a in out:
        if a.sched is not None:
            k.sched.remove(a.sched)
            a.status = AgentState.READY
    return out


def enforced(k: Any, rec: Recorder, a: Any) -> dict[str, Any]:
    """What confines ``a``: its executor and the sandbox spec it was (or would be) given."""
    spec = rec.specs.get(a.aid) or k.executors.spec_for(a)
    q = spec["quota"]
    return {
        "executor": a.confinement.executor,
        "rights": a.cspace.get(2).rights if a.cspace is not None else Rights.NONE,
        "memory": q.memory_bytes, "processes": q.processes, "cpu_seconds": q.cpu_seconds,
        "cpu_weight": q.cpu_weight, "net": spec["access_net"], "fs": spec["access_fs"],
        "fs_write": spec["access_fs_write"], "code": set(spec["code_paths"]),
        "env": "kernel" if a.confinement.executor == "inproc" else "allowlist",
    }


def not_weaker(c: dict[str, Any], b: dict[str, Any]) -> list[str]:
    bad = []
    if not no_weaker_executor(c["executor"], b["executor"]):
        bad.append("executor")
    if c["rights"] & ~b["rights"]:
        bad.append("rights")
    for lim in ("memory", "processes", "cpu_seconds"):
        if b[lim] and not (c[lim] and c[lim] <= b[lim]):
            bad.append(lim)
    if c["cpu_weight"] > b["cpu_weight"]:
        bad.append("cpu_weight")
    for flag in ("net", "fs", "fs_write"):
        if c[flag] and not b[flag]:
            bad.append(flag)
    if not c["code"] <= b["code"]:
        bad.append("code paths")
    if c["env"] == "kernel" and b["env"] != "kernel":
        bad.append("environment")
    return bad


actor = st.integers(0, 30)
executor_opt = st.sampled_from([None, None, "inproc", "worker", "isolated", "wasm"])
rights_opt = st.lists(st.sampled_from(["SPAWN_AGENT", "KILL_AGENT", "ACCESS_NET", "ACCESS_FS", "ADMIN"]),
                      max_size=3, unique=True)
quota_opt = st.sampled_from([None, {"memory": 1 << 20}, {"memory": 1 << 34}, {"cpu_weight": 50000}])
op_st = st.one_of(
    st.tuples(st.just("spawn"), actor, executor_opt, rights_opt, quota_opt, st.booleans()),
    st.tuples(st.just("clone"), actor, executor_opt, rights_opt),
    st.tuples(st.just("split"), actor, executor_opt),
    st.tuples(st.just("specialize"), actor, executor_opt, st.booleans()),
    st.tuples(st.just("upgrade"), actor, actor),
    st.tuples(st.just("merge"), actor, actor),
    st.tuples(st.just("crash"), actor),
    st.tuples(st.just("kill"), actor, actor),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, min_size=1, max_size=25))
def test_no_agent_is_less_confined_than_its_source_or_creator(ops: list[tuple[Any, ...]]) -> None:
    k, rec = boot()
    try:
        agents = roots(k)
        source: dict[int, int] = {}  # aid -> the agent it was copied from or replaces
        creator: dict[int, int] = {}  # aid -> the agent that made it (parents change on adoption)
        seen: dict[int, dict[str, Any]] = {}  # every agent's confinement, kept after it dies

        def on_lifecycle(ev: Any) -> None:
            if ev.topic.rsplit(".", 1)[1] in ("spawned", "cloned", "split", "specialized"):
                creator[ev.data["agent"]] = ev.data["parent"]
            elif ev.topic.endswith(".restarted"):
                source[ev.data["agent"]] = ev.data["previous"]

        k.bus.subscribe("agent.lifecycle.*", callback=on_lifecycle)
        made_by_op = {"clone": Sys.AGENT_CLONE, "split": Sys.AGENT_SPLIT, "specialize": Sys.AGENT_SPECIALIZE}
        for op in ops:
            live = [a for a in k.agents if a.alive and a is not k.init and a.confinement is not None]
            who = live[op[1] % len(live)] if live else None
            if who is None:
                break
            entry: Any = _idle if who.confinement.executor == "inproc" else STEADY
            try:
                if op[0] == "spawn":
                    opts: dict[str, Any] = {"rights": op[3]}
                    if op[2] is not None:
                        opts["executor"] = op[2]
                    if op[4] is not None:
                        opts["quota"] = op[4]
                    if op[5]:
                        opts["restart"] = "always"
                    if op[2] == "wasm":
                        entry = HELLO_WAT
                    call(k, who, Sys.AGENT_SPAWN, 2, entry, opts)
                elif op[0] in made_by_op:
                    opts = {} if op[2] is None else {"executor": op[2]}
                    if op[0] == "clone":
                        opts["rights"] = op[3]
                        aid = call(k, who, Sys.AGENT_CLONE, 2, opts)[0]
                    elif op[0] == "split":
                        aid = call(k, who, Sys.AGENT_SPLIT, 2, {"keys": []}, None, opts)[0]
                    else:
                        if op[3]:
                            opts["entry"] = entry
                        aid = call(k, who, Sys.AGENT_SPECIALIZE, 2, {"role": "x"}, opts)[0]
                    source[aid] = who.aid
                elif op[0] == "upgrade":
                    target = live[op[2] % len(live)]
                    ctl = k.cdt.root(who.cspace, k.agent_object(target), Rights.READ | Rights.SUPERVISOR)
                    call(k, who, Sys.AGENT_UPGRADE, ctl.slot, entry)
                elif op[0] == "merge":
                    other = live[op[2] % len(live)]
                    ctl = k.cdt.root(who.cspace, k.agent_object(other), Rights.KILL_AGENT)
                    call(k, who, Sys.AGENT_MERGE, 0, ctl.slot, None)
                elif op[0] == "crash":
                    if who.executor is not None:
                        k.executors._exited(ExitRecord(who.aid, FaultCause.EXCEPTION, 1, 0, "boom"))
                    else:
                        k.fault(who, RuntimeError("boom"))
                    k.clock.advance(10**10)  # past any restart backoff
                    k._fire_timers()
                elif op[0] == "kill":
                    target = live[op[2] % len(live)]
                    ctl = k.cdt.root(who.cspace, k.agent_object(target), Rights.KILL_AGENT)
                    call(k, who, Sys.AGENT_KILL, ctl.slot, False)
            except AIOSError as e:
                assert not isinstance(e, KernelPanic), e
            for a in k.agents:
                if a.confinement is not None and a.alive:
                    seen[a.aid] = enforced(k, rec, a)
            for a in k.agents:
                if not a.alive or a.confinement is None or a.confinement.operator:
                    continue
                mine = seen[a.aid]
                bounds = []
                maker = k.find(creator.get(a.aid, 0))
                if a.aid in creator and creator[a.aid] != k.init.aid and not (
                        maker is not None and maker.confinement.operator):
                    bounds.append(("creator", creator[a.aid]))
                if a.aid in source:
                    bounds.append(("source", source[a.aid]))
                for role, bid in bounds:
                    if bid in seen:
                        bad = not_weaker(mine, seen[bid])
                        assert not bad, f"{a.aid} weaker than its {role} {bid} on {bad} after {op}"
        assert agents  # the roots were made
    finally:
        k.close()


# -- the same decisions, told apart ----------------------------------------------------------


def test_derived_executor_defaults_to_the_strictest_and_weaker_is_refused() -> None:
    k, rec = boot()
    try:
        _inproc, worker, iso, _iso_net, wasm = roots(k)
        aid, _c, _e = call(k, iso, Sys.AGENT_CLONE, 2, None)
        assert k.find(aid).confinement.executor == "isolated"
        h = call(k, worker, Sys.AGENT_SPAWN, 2, STEADY, None)
        assert h and max(rec.specs) > aid
        assert k.find(max(rec.specs)).confinement.executor == "worker"
        for ex in ("inproc", "worker", "wasm"):
            with pytest.raises(PermissionDenied, match=f"'{ex}' is weaker than 'isolated'|no executor"):
                call(k, iso, Sys.AGENT_CLONE, 2, {"executor": ex})
        with pytest.raises(PermissionDenied, match="'isolated' is weaker than 'wasm'"):
            call(k, wasm, Sys.AGENT_CLONE, 2, {"executor": "isolated"})
        before = len(list(k.agents))
        with pytest.raises(PermissionDenied):
            call(k, iso, Sys.AGENT_SPAWN, 2, STEADY, {"executor": "inproc"})
        assert len(list(k.agents)) == before  # a refused spawn leaves nothing behind
    finally:
        k.close()


def test_limits_and_code_paths_are_inherited_not_reset() -> None:
    k, rec = boot()
    try:
        iso = spawn_root(k, STEADY, executor="isolated", quota={"memory": 32 << 20, "cpu_weight": 300})
        # as an image would have set them: a CPU-seconds limit, few processes, its own code dir
        iso.confinement = Confinement("isolated", iso.confinement.rights, 32 << 20, 4, 7, 300, ("/images/x",))
        aid, _c, _e = call(k, iso, Sys.AGENT_CLONE, 2, {"quota": {"memory": 1 << 34}})
        spec = rec.specs[aid]
        q = spec["quota"]
        assert (q.memory_bytes, q.processes, q.cpu_seconds, q.cpu_weight) == (32 << 20, 4, 7, 300)
        assert spec["code_paths"] == ("/images/x",)
        assert spec["access_net"] is False
    finally:
        k.close()


def test_upgrade_cannot_put_a_sandboxed_callers_code_in_a_less_confined_agent() -> None:
    k, _rec = boot()
    try:
        victim, _w, iso, _n, _wasm = roots(k)
        ctl = k.cdt.root(iso.cspace, k.agent_object(victim), Rights.READ | Rights.SUPERVISOR)
        with pytest.raises(PermissionDenied, match="less confined than the caller"):
            call(k, iso, Sys.AGENT_UPGRADE, ctl.slot, "aios.demos.hostile:upgraded")
        assert victim.upgrade_to is None
    finally:
        k.close()


def test_sandboxed_agents_cannot_name_paths_but_clones_keep_their_code() -> None:
    k, _rec = boot()
    try:
        _i, _w, iso, _n, wasm = roots(k)
        with pytest.raises(PermissionDenied, match="cannot have the kernel read a path"):
            call(k, wasm, Sys.AGENT_SPAWN, 2, HELLO_WAT, {"executor": "wasm"})
        with pytest.raises(PermissionDenied, match="cannot have the kernel read a path"):
            call(k, iso, Sys.AGENT_SPAWN, 2, "image:/etc", None)
        aid, _c, _e = call(k, wasm, Sys.AGENT_CLONE, 2, None)  # its own, vetted entry
        assert k.find(aid).entry == HELLO_WAT and k.find(aid).confinement.executor == "wasm"
    finally:
        k.close()


def test_restart_is_at_least_as_strict_as_the_agent_it_replaces() -> None:
    k, rec = boot()
    try:
        _i, _w, iso, _n, _wasm = roots(k)
        call(k, iso, Sys.AGENT_SPAWN, 2, STEADY, {"restart": "always", "quota": {"memory": 8 << 20}})
        first = k.find(max(rec.specs))
        assert first.confinement.executor == "isolated"
        k.executors._exited(ExitRecord(first.aid, FaultCause.EXCEPTION, 1, 0, "boom"))
        k.clock.advance(10**10)
        k._fire_timers()
        second = k.find(max(rec.specs))
        assert second.aid != first.aid
        assert second.confinement == first.confinement
    finally:
        k.close()


def test_weaken_for_tests_is_not_reachable_through_spawn_options() -> None:
    k, _rec = boot()
    try:
        with pytest.raises(AIOSError):
            call(k, roots(k)[2], Sys.AGENT_SPAWN, 2, STEADY, {"test_disable": ["landlock"]})
        assert k.executors.test_disable == frozenset() and k.cdt.enforce_rights
        with pytest.raises(AIOSError):
            confinement.weaken_for_tests(k, "no-such-mechanism")
    finally:
        k.close()
    assert "AIOS_TEST_DISABLE" not in os.environ


@pytest.mark.parametrize("switched_off", [False, True])
def test_sandboxed_agents_cannot_have_the_kernel_load_a_python_file(tmp_path: Path, switched_off: bool) -> None:
    marker = tmp_path / "loaded"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n\nasync def main(ctx):\n    return 1\n")
    k, _rec = boot()
    try:
        _i, _w, iso, _n, _wasm = roots(k)
        if switched_off:  # the mechanism is this check: without it the file runs in the kernel
            confinement.weaken_for_tests(k, "confinement")
            call(k, iso, Sys.AGENT_SPAWN, 2, f"{evil}:main", {"executor": "inproc"})
            assert marker.exists()
        else:
            with pytest.raises(PermissionDenied, match="cannot have the kernel read a path"):
                call(k, iso, Sys.AGENT_SPAWN, 2, f"{evil}:main", {"executor": "inproc"})
            assert not marker.exists()
    finally:
        k.close()
