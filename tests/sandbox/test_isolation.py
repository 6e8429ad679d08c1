"""Hostile agents against the isolated executor, with a stand-in kernel.

Every attack must be denied or contained, must leave a security event, and
must not stop the kernel from serving a well-behaved agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from harness import HERE, StandInKernel

from aios.abi.faults import FaultCause
from aios.abi.faults import ProcessQuota as Quota
from aios.sandbox import landlock, seccomp
from aios.sandbox.isolated import IsolatedExecutor
from aios.sandbox.process import AgentSpec, Protections

pytestmark = [
    pytest.mark.isolation,
    pytest.mark.skipif(
        os.geteuid() != 0 or landlock.abi_version() < 1 or seccomp.native_arch() is None,
        reason="needs root (per-agent uids), Landlock and a known seccomp arch",
    ),
]


@pytest.fixture
def agent_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="aios-agents-")
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def spec(aid: int, root: str, entry: str, *args: Any, **kw: Any) -> AgentSpec:
    return AgentSpec(
        aid,
        f"agents_hostile:{entry}",
        args,
        home=os.path.join(root, f"a{aid}"),
        code_paths=(HERE,),
        **kw,
    )


def run(scenario: Callable[[StandInKernel, IsolatedExecutor], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        k = StandInKernel()
        ex = IsolatedExecutor(k.sink())
        k.executor = ex
        await ex.start()
        try:
            return await asyncio.wait_for(scenario(k, ex), 60)
        finally:
            await ex.close()

    return asyncio.run(main())


def test_well_behaved_agent_runs_with_all_protections(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> Protections | None:
        await ex.spawn(spec(1, agent_root, "idle"))
        for _ in range(200):
            if ex.protections(1) is not None:
                break
            await asyncio.sleep(0.01)
        prot = ex.protections(1)
        ex.kill(1)
        rec = await k.wait_exit(1)
        assert rec.cause is FaultCause.KILLED
        return prot

    prot = run(go)
    assert prot is not None
    assert prot.uid >= 200_000 and prot.userns and prot.mountns and prot.netns
    assert prot.caps_dropped and prot.no_new_privs and prot.seccomp and prot.seccomp_notify
    assert prot.landlock_abi >= 1 and "as" in prot.rlimits and prot.missing == ()
    assert "pids.max" in prot.cgroup


def test_hello_and_home_dir_writable(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "hello"))
        await ex.spawn(spec(2, agent_root, "write_home", os.path.join(agent_root, "a2")))
        assert (await k.wait_exit(1)).cause is FaultCause.EXITED
        assert (await k.wait_exit(2)).cause is FaultCause.EXITED
        assert k.echoes[1] == [("hello", 1)]
        assert k.echoes[2] == [("ok:'mine'",)]

    run(go)


def test_read_outside_home_denied(agent_root: str, tmp_path: Any) -> None:
    secret = os.path.join(agent_root, "secret.txt")
    with open(secret, "w") as f:
        f.write("top secret")
    os.chmod(secret, 0o644)  # readable by DAC: only Landlock stands in the way

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "read_outside", secret))
        await ex.spawn(spec(2, agent_root, "read_outside", "/etc/hostname"))
        await k.wait_exit(1)
        await k.wait_exit(2)

    k = run_collect(go)
    assert k.echoes[1][0][0] == "denied:PermissionError:13"
    assert k.echoes[2][0][0] == "denied:PermissionError:13"
    assert any(e.kind == "fs" and "secret" in e.detail for e in k.events_for(1))


def run_collect(go: Callable[[StandInKernel, IsolatedExecutor], Awaitable[Any]]) -> StandInKernel:
    box: list[StandInKernel] = []

    async def wrapper(k: StandInKernel, ex: IsolatedExecutor) -> None:
        box.append(k)
        await go(k, ex)

    run(wrapper)
    return box[0]


def test_write_into_code_dir_denied(agent_root: str) -> None:
    code = os.path.join(agent_root, "code")
    os.makedirs(code)
    os.chmod(code, 0o777)  # DAC would allow it: Landlock must refuse

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        s = spec(1, agent_root, "write_code_dir", code)
        s = AgentSpec(s.agent_id, s.entry, s.args, s.home, (HERE, code))
        await ex.spawn(s)
        await k.wait_exit(1)

    k = run_collect(go)
    assert k.echoes[1][0][0].startswith("denied:PermissionError")
    assert not os.path.exists(os.path.join(code, "evil.py"))


def test_sockets_without_access_net_denied(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "open_sockets"))
        await k.wait_exit(1)

    k = run_collect(go)
    tcp, udp = k.echoes[1][0]
    assert tcp == "denied:PermissionError:1" and udp == "denied:PermissionError:1"
    trusted = [e for e in k.events_for(1) if e.trusted and e.kind == "syscall"]
    assert [e.detail for e in trusted] == ["socket", "socket"]


def test_escape_syscalls_denied_with_events(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "escape_syscalls"))
        await k.wait_exit(1)

    k = run_collect(go)
    (results,) = k.echoes[1][0]
    assert all(r == -1 and e == 1 for _, r, e in results), results
    assert {e.detail for e in k.events_for(1) if e.trusted} >= {"unshare", "mount", "bpf", "keyctl"}


def test_fork_bomb_contained(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "fork_bomb", quota=Quota(processes=8)))
        await k.wait_echo(1)
        ex.kill(1)
        await k.wait_exit(1)

    k = run_collect(go)
    n, err = k.echoes[1][0]
    assert n < 8 and err.startswith("denied:BlockingIOError")
    assert any(e.kind == "limit" and "process" in e.detail for e in k.events_for(1))


def test_allocation_past_quota_contained(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "allocate", 2048, quota=Quota(memory_bytes=256 << 20)))
        await k.wait_exit(1)

    k = run_collect(go)
    assert k.echoes[1][0][0] == "denied:MemoryError"
    assert k.exits[1].cause is FaultCause.KILLED_FOR_LIMIT
    assert any(e.kind == "limit" for e in k.events_for(1))


def test_spin_forever_killed_by_cpu_limit(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "spin", quota=Quota(cpu_seconds=1)))
        await k.wait_exit(1, timeout=30)

    k = run_collect(go)
    assert k.exits[1].cause is FaultCause.KILLED_FOR_LIMIT
    assert any(e.kind == "limit" and "CPU" in e.detail for e in k.events_for(1))


def test_ptrace_signal_and_memory_of_kernel_and_peer_denied(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(9, agent_root, "idle"))
        await asyncio.sleep(0.05)
        peer = ex.pid(9)
        me = os.getpid()
        attacks = [("ptrace_pid", me), ("ptrace_pid", peer), ("signal_pid", me), ("signal_pid", peer),
                   ("read_mem", me), ("read_mem", peer), ("process_vm_read", peer)]  # fmt: skip
        for i, (entry, target) in enumerate(attacks, 1):
            await ex.spawn(spec(i, agent_root, entry, target))
        for i in range(1, len(attacks) + 1):
            await k.wait_exit(i)
        assert 9 not in k.exits  # the peer is still alive
        ex.kill(9)
        await k.wait_exit(9)

    k = run_collect(go)
    assert k.echoes[1][0] == (-1, 1) and k.echoes[2][0] == (-1, 1)  # ptrace: EPERM
    assert k.echoes[3][0][0] == "denied:PermissionError:1"
    assert k.echoes[4][0][0] == "denied:PermissionError:1"
    assert k.echoes[5][0][0].startswith("denied:PermissionError")
    assert k.echoes[6][0][0].startswith("denied:PermissionError")
    assert k.echoes[7][0] == (-1, 1)
    assert any(e.detail == "ptrace" and e.trusted for e in k.events_for(1))
    assert any(e.detail == "process_vm_readv" and e.trusted for e in k.events_for(7))
    assert any(e.kind == "fs" for e in k.events_for(5))


@pytest.mark.parametrize("kind", ["malformed", "oversized", "out-of-order"])
def test_bad_frames_stop_the_agent(agent_root: str, kind: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "raw_frames", kind))
        await k.wait_exit(1)

    k = run_collect(go)
    assert k.exits[1].cause is FaultCause.PROTOCOL
    assert any(e.kind == "protocol" for e in k.events_for(1))


def test_unheld_slot_refused(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "use_slot", 7))
        await ex.spawn(spec(2, agent_root, "use_slot", 0))
        await k.wait_exit(1)
        await k.wait_exit(2)

    k = run_collect(go)
    assert k.echoes[1] == [("denied:EBADCAP",)] and k.echoes[2] == [("ok",)]
    assert any(e.kind == "capability" for e in k.events_for(1))
    assert not k.events_for(2)


def test_exception_becomes_fault_record(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "crash"))
        await k.wait_exit(1)

    k = run_collect(go)
    assert k.exits[1].cause is FaultCause.EXCEPTION and "boom" in k.exits[1].message


def test_missing_mechanism_refused_unless_policy_allows(agent_root: str) -> None:
    # host_uid 0 means "no per-agent uid": refused by default ...
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        ex._free_uids.clear()
        ex._free_uids.append(0)
        await ex.spawn(spec(1, agent_root, "hello"))
        await k.wait_exit(1)
        ex._free_uids.append(0)
        await ex.spawn(spec(2, agent_root, "hello", allow_missing=frozenset({"uid"})))
        await k.wait_exit(2)
        ex._free_uids.clear()

    k = run_collect(go)
    assert k.exits[1].cause is FaultCause.SANDBOX
    assert any(e.kind == "sandbox" for e in k.events_for(1))
    assert k.exits[2].cause is FaultCause.EXITED


def test_well_behaved_agent_served_during_attacks(agent_root: str) -> None:
    lat: list[float] = []

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        # the good agent, measured from the kernel side: time between its successive traps
        await ex.spawn(spec(100, agent_root, "serve_forever"))
        await k.wait_echo(100, 50)
        t0 = time.perf_counter()
        n0 = len(k.echoes[100])
        attacks = [("fork_bomb", ()), ("spin", ()), ("allocate", (2048,)), ("open_sockets", ()),
                   ("escape_syscalls", ()), ("raw_frames", ("malformed",)), ("raw_frames", ("oversized",)),
                   ("read_outside", ("/etc/hostname",)), ("ptrace_pid", (os.getpid(),))]  # fmt: skip
        for i, (entry, args) in enumerate(attacks, 1):
            await ex.spawn(
                spec(i, agent_root, entry, *args, quota=Quota(cpu_seconds=1, processes=8))
            )
        # a spinner with no CPU limit stays until we kill it: the good agent must get 100
        # more syscalls served while it (and whatever attack is left) runs; no clock involved
        await ex.spawn(spec(50, agent_root, "spin"))
        await k.wait_echo(50)
        await k.wait_echo(100, n0 + 100, timeout=120)
        assert 50 not in k.exits and 100 not in k.exits
        ex.kill(50)
        await k.wait_exit(50)
        prev_n, prev_t = len(k.echoes[100]), time.perf_counter()
        while any(i not in k.exits for i in range(1, len(attacks) + 1)):
            await asyncio.sleep(0.01)
            ex.kill(1) if k.echoes[1] and 1 not in k.exits else None
            n, t = len(k.echoes[100]), time.perf_counter()
            if n > prev_n:
                lat.append((t - prev_t) / (n - prev_n))
            prev_n, prev_t = n, t
        served = len(k.echoes[100]) - n0
        assert 100 not in k.exits
        print(f"\ngood agent: {served} syscalls in {time.perf_counter() - t0:.2f}s during attacks; "
              f"mean interval p50 {statistics.median(lat) * 1e6 if lat else float('nan'):.0f} us")  # fmt: skip
        ex.kill(100)
        await k.wait_exit(100)

    run(go)


def test_agent_can_import_stdlib_not_preloaded(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "import_stdlib", "email.mime.text"))
        await ex.spawn(spec(2, agent_root, "import_stdlib", "colorsys"))
        await k.wait_exit(1)
        await k.wait_exit(2)

    k = run_collect(go)
    assert k.echoes[1] == [("ok:'email.mime.text'",)]
    assert k.echoes[2] == [("ok:'colorsys'",)]


def test_no_cgroup_left_behind_after_close(agent_root: str) -> None:
    from aios.sandbox import limits

    pids: list[int] = []

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "idle"))
        await ex.spawn(spec(2, agent_root, "fork_bomb", quota=Quota(processes=8)))
        await k.wait_echo(2)
        pids.extend([ex.pid(1), ex.pid(2)])  # close() with both still alive

    run(go)
    layout = limits.cgroup_layout()
    if layout is None:
        pytest.skip("no writable cgroup tree")
    left = [d for base in layout.dirs.values() for pid in pids for d in base.glob(f"agent-*-{pid}")]
    assert left == []


# -- mutants: the same attacks with their mechanism switched off must get further ------------------


def run_weakened(off: frozenset[str], go: Callable[[StandInKernel, IsolatedExecutor], Awaitable[Any]]) -> StandInKernel:
    """``run_collect`` with an executor that has ``off`` switched off (test-only constructor argument)."""
    box: list[StandInKernel] = []

    async def main() -> None:
        k = StandInKernel()
        ex = IsolatedExecutor(k.sink(), test_disable=off)
        k.executor = ex
        box.append(k)
        await ex.start()
        try:
            await asyncio.wait_for(go(k, ex), 90)
        finally:
            await ex.close()

    asyncio.run(main())
    return box[0]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.security_mutant
def test_mutant_landlock_off_reads_and_writes_outside(agent_root: str) -> None:
    secret = os.path.join(agent_root, "secret.txt")
    with open(secret, "w") as f:
        f.write("top secret")
    os.chmod(secret, 0o644)
    code = os.path.join(agent_root, "code")
    os.makedirs(code)
    os.chmod(code, 0o777)

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "read_outside", secret))
        s = spec(2, agent_root, "write_code_dir", code)
        await ex.spawn(AgentSpec(s.agent_id, s.entry, s.args, s.home, (HERE, code)))
        await k.wait_exit(1)
        await k.wait_exit(2)

    k = run_weakened(frozenset({"landlock"}), go)
    assert k.echoes[1][0][0] == "ok:'top secret'"
    assert k.echoes[2][0][0] == "ok:1" and os.path.exists(os.path.join(code, "evil.py"))


@pytest.mark.security_mutant
def test_mutant_seccomp_off_lets_sockets_and_namespaces_through(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "open_sockets"))
        await ex.spawn(spec(2, agent_root, "escape_syscalls"))
        await ex.spawn(spec(3, agent_root, "ptrace_pid", os.getpid()))
        for i in (1, 2, 3):
            await k.wait_exit(i)

    k = run_weakened(frozenset({"seccomp"}), go)
    tcp, udp = k.echoes[1][0]
    # the socket is made now; Landlock (TCP connect) and the empty network namespace (UDP) stop it
    assert tcp == "denied:PermissionError:13" and udp == "denied:OSError:101"
    (results,) = k.echoes[2][0]
    assert dict((n, (r, e)) for n, r, e in results)["unshare"] == (0, 0)
    assert k.echoes[3][0] == (-1, 1)  # ptrace: still EPERM, now from the uid check ...
    assert not [e for e in k.events if e.trusted and e.kind == "syscall"]  # ... and nobody reported it


@pytest.mark.security_mutant
def test_mutant_cgroup_off_leaves_the_fork_bomb_to_rlimit(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "fork_bomb", quota=Quota(processes=8)))
        await k.wait_echo(1)
        ex.kill(1)
        await k.wait_exit(1)

    k = run_weakened(frozenset({"cgroup"}), go)
    n, err = k.echoes[1][0]
    assert err.startswith("denied:BlockingIOError") and n >= 8  # RLIMIT_NPROC is a little looser
    assert not any(e.kind == "limit" and "process" in e.detail for e in k.events_for(1))


@pytest.mark.security_mutant
def test_mutant_rlimits_off_leaves_memory_to_the_cgroup_and_cpu_unbounded(agent_root: str) -> None:
    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "allocate", 2048, quota=Quota(memory_bytes=256 << 20)))
        await ex.spawn(spec(2, agent_root, "spin", quota=Quota(cpu_seconds=1)))
        await k.wait_exit(1, timeout=60)
        await k.wait_echo(2)
        pid = ex.pid(2)
        deadline = time.monotonic() + 60
        while cpu_seconds(pid) < 2.5 and time.monotonic() < deadline:  # RLIMIT_CPU would end it at 1-2 s
            await asyncio.sleep(0.05)
        assert cpu_seconds(pid) >= 2.5 and 2 not in k.exits
        ex.kill(2)
        await k.wait_exit(2)

    k = run_weakened(frozenset({"rlimits"}), go)
    assert k.echoes[1] == []  # no MemoryError reached the agent: the OOM killer ended it
    assert k.exits[1].cause is FaultCause.SIGNAL and k.exits[1].signal == 9
    assert any(e.kind == "limit" and "memory" in e.detail for e in k.events_for(1))
    assert k.exits[2].cause is FaultCause.KILLED


@pytest.mark.security_mutant
def test_mutant_env_off_leaks_the_kernels_environment(agent_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_KEY_PASSPHRASE", "s3cret")

    async def go(k: StandInKernel, ex: IsolatedExecutor) -> None:
        await ex.spawn(spec(1, agent_root, "read_env", "AIOS_KEY_PASSPHRASE"))
        await k.wait_exit(1)

    assert run_weakened(frozenset({"env"}), go).echoes[1] == [("s3cret",)]
    assert run_collect(go).echoes[1] == [("",)]  # and scrubbed when on
