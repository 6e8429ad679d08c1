"""The hostile-agent suite, against the real kernel (SDK only), and its mutants.

Isolated agents attack: they read and write outside their directory, reach
for the host's network, make namespaces, fork-bomb, allocate past their
quota, signal the kernel, read a mailbox they may only write, read the
daemon's secrets from their environment, copy themselves into the kernel
with a lifecycle operation, upgrade an in-process agent with their own code.
Each attack's outcome is *classified*: the verdict names the call that was
refused and its errno (``EACCES@open``), or the evidence that only one
mechanism leaves (a seccomp report, a cgroup counter), or ``succeeded``
when the test itself observed the attack's effect (the listener got the
token, the file is on disk, the secret was read).

Every attack lists the mechanisms that stand in its way, outermost first
(:attr:`Attack.layers`).  The normal run (everything on) must see the first
layer's verdict.  The *mutant* runs (``make test-security-mutants``) switch
mechanisms off with :func:`aios.kernel.confinement.weaken_for_tests` - one
more layer per run - and must see the next layer's verdict, and finally the
attack succeed.  So each test shows that it can fail, and which mechanism
it depends on.  Targets are chosen so that only the listed mechanisms stop
them: a world-readable file, a world-writable directory, a listener the test
opens on the host's loopback, a secret planted in the kernel's environment.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import WouldBlock
from aios.abi.faults import SANDBOX_SWITCHES as SWITCHES
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.kernel.confinement import KERNEL_SWITCHES, weaken_for_tests
from aios.sdk import Context

pytestmark = pytest.mark.isolation
H = "aios.demos.hostile:"
SECRET = "hunter2-planted-in-the-daemon"
MAILBOX_SECRET = "parent's private message"
SUCCEEDED = "succeeded"


# -- the world the attacks aim at ------------------------------------------------------------


@dataclass
class World:
    """Targets only the mechanisms under test protect, and what the test saw of the attacks."""

    root: Path
    kernel_pid: int = field(default_factory=os.getpid)
    tcp_got: list[bytes] = field(default_factory=list)
    udp_got: list[bytes] = field(default_factory=list)
    tcp_port: int = 0
    udp_port: int = 0

    @property
    def readable(self) -> Path:
        return self.root / "public" / "notes.txt"  # 0644 in 0755: every uid may read it

    @property
    def open_dir(self) -> Path:
        return self.root / "drop"  # 0777: every uid may write it

    @property
    def root_dir(self) -> Path:
        return self.root / "rootonly"  # root's 0755: only root may write it

    def written(self, name: str, aid: int) -> bool:
        return (getattr(self, name) / f"planted-by-{aid}").exists()


@pytest.fixture
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="aios-hostile-"))
    root.chmod(0o755)
    w = World(root)
    w.readable.parent.mkdir(mode=0o755)
    w.readable.write_text("not for agents")
    w.readable.chmod(0o644)
    w.open_dir.mkdir()
    w.open_dir.chmod(0o777)
    w.root_dir.mkdir(mode=0o755)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    w.tcp_port, w.udp_port = tcp.getsockname()[1], udp.getsockname()[1]

    def serve_tcp() -> None:
        while True:
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(256)
                if data:
                    w.tcp_got.append(data)

    def serve_udp() -> None:
        while True:
            try:
                data, _ = udp.recvfrom(256)
            except OSError:
                return
            w.udp_got.append(data)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_tcp, serve_udp)]
    for t in threads:
        t.start()
    yield w
    for s in (tcp, udp):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
    shutil.rmtree(root, ignore_errors=True)


# -- the attacks and their layers ---------------------------------------------------------------

Outcome = dict[str, Any]


@dataclass(frozen=True)
class Attack:
    name: str
    entry: str
    layers: tuple[tuple[str, str], ...]  # (mechanism, the verdict while it is the outermost one on)
    spec: Callable[[World], dict[str, Any]] = lambda w: {}
    opts: dict[str, Any] = field(default_factory=dict)
    nest: str = ""  # an in-process parent that sets the scene (see NESTS)

    def expected(self, off: frozenset[str]) -> str:
        """The verdict with ``off`` switched off (off must be a prefix of the layers)."""
        for mech, verdict in self.layers:
            if mech not in off:
                return verdict
        return SUCCEEDED

    def mutant_sets(self) -> list[frozenset[str]]:
        return [frozenset(m for m, _ in self.layers[: i + 1]) for i in range(len(self.layers))]


def refused(o: Outcome) -> str:
    import errno

    return f"{errno.errorcode.get(o.get('errno', 0), o.get('error'))}@{o.get('op')}"


ATTACKS = (
    Attack("read_outside", H + "read_outside", (("landlock", "EACCES@open"),),
           spec=lambda w: {"path": str(w.readable)}),
    Attack("write_outside", H + "write_outside", (("landlock", "EACCES@open"),),
           spec=lambda w: {"dir": str(w.open_dir)}),
    Attack("write_root_dir", H + "write_outside", (("landlock", "EACCES@open"), ("uid", "EACCES@open")),
           spec=lambda w: {"dir": str(w.root_dir)}),
    Attack("net_tcp", H + "net_tcp",
           (("seccomp", "EPERM@socket"), ("landlock", "EACCES@connect"), ("namespaces", "ENETUNREACH@connect")),
           spec=lambda w: {"port": w.tcp_port, "token": "tcp-from-agent"}),
    Attack("net_udp", H + "net_udp", (("seccomp", "EPERM@socket"), ("namespaces", "ENETUNREACH@sendto")),
           spec=lambda w: {"port": w.udp_port, "token": "udp-from-agent"}),
    Attack("escape_unshare", H + "escape_unshare", (("seccomp", "EPERM@unshare+reported"),)),
    Attack("fork_bomb", H + "fork_bomb", (("cgroup", "EAGAIN@fork+pids.max"), ("rlimits", "EAGAIN@fork")),
           spec=lambda w: {"forks": 48}),
    Attack("hog_memory", H + "hog_memory", (("rlimits", "ENOMEM@malloc"), ("cgroup", "oom-killed")),
           spec=lambda w: {"mb": 512}, opts={"quota": {"memory": 256 << 20}}),
    Attack("signal_kernel", H + "signal_pid", (("uid", "EPERM@kill"), ("landlock", "EPERM@kill")),
           spec=lambda w: {"pid": w.kernel_pid}),
    Attack("read_parent_mailbox", H + "read_parent_mailbox", (("capabilities", "EPERM@recv"),),
           nest="mailbox"),
    Attack("read_environment", H + "read_environment", (("env", "no-secret"),),
           spec=lambda w: {"secret_value": SECRET}),
    Attack("clone_into_kernel", H + "escape_by_lifecycle", (("confinement", "isolated-copy"),),
           spec=lambda w: {"how": "clone", "kernel_pid": w.kernel_pid}),
    Attack("upgrade_in_kernel", H + "upgrade_victim", (("confinement", "EPERM@upgrade"),), nest="upgrade"),
)
BY_NAME = {a.name: a for a in ATTACKS}


def classify(att: Attack, st: dict[str, Any], events: list[dict[str, Any]], w: World) -> str:
    """The verdict: what stopped the attack (call and errno, and the evidence), or ``succeeded``."""
    out, fault = st["exit"], st["fault"]
    name = att.name
    if name in ("read_outside",):
        return SUCCEEDED if out["ok"] and "not for agents" in out["value"] else refused(out)
    if name in ("write_outside", "write_root_dir"):
        d = "open_dir" if name == "write_outside" else "root_dir"
        return SUCCEEDED if out["ok"] and w.written(d, st["agent"]) else refused(out)
    if name == "net_tcp":
        return SUCCEEDED if out["ok"] and b"tcp-from-agent" in w.tcp_got else refused(out)
    if name == "net_udp":
        if out["ok"]:
            return SUCCEEDED if _eventually(lambda: b"udp-from-agent" in w.udp_got) else "sent-not-received"
        return refused(out)
    if name == "escape_unshare":
        if out["ok"]:
            return SUCCEEDED
        reported = any(e["data"].get("trusted") and e["data"].get("detail") == "unshare" for e in events)
        return refused(out) + ("+reported" if reported else "")
    if name == "fork_bomb":
        if out["forked"] == int(att.spec(w)["forks"]):
            return SUCCEEDED
        pids = any(e["data"].get("kind") == "limit" and "process limit" in e["data"].get("detail", "")
                   for e in events)
        return refused({"op": "fork", "errno": out["errno"]}) + ("+pids.max" if pids else "")
    if name == "hog_memory":
        if fault:
            mem = any(e["data"].get("kind") == "limit" and "memory limit" in e["data"].get("detail", "")
                      for e in events)
            return "oom-killed" if mem and "SIGKILL" in fault else f"fault:{fault}"
        return SUCCEEDED if out["ok"] else refused(out)
    if name == "signal_kernel":
        return SUCCEEDED if out["ok"] else refused(out)
    if name == "read_parent_mailbox":
        return SUCCEEDED if out["ok"] and out["value"] == MAILBOX_SECRET else refused(out)
    if name == "read_environment":
        return SUCCEEDED if out["secret_seen"] else "no-secret"
    if name == "clone_into_kernel":
        copy = out["copy"]
        if copy["in_kernel"]:
            return SUCCEEDED
        return "isolated-copy" if copy["inet"].get("errno") == 1 else f"copy:{copy}"
    if name == "upgrade_in_kernel":
        victim = out["victim"]
        if isinstance(victim, dict) and victim.get("in_kernel"):
            return SUCCEEDED
        return refused(out["attack"])
    raise AssertionError(name)


def _eventually(cond: Callable[[], bool], deadline_s: float = 10.0) -> bool:
    """Poll a condition the kernel cannot signal (a datagram in the host's socket buffer)."""
    import time

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# -- scenes set by an in-process parent -------------------------------------------------------------


async def _victim(ctx: Context) -> Any:
    await ctx.recv()  # between two messages: where an upgrade would take effect
    return "victim's own code"


async def _mailbox_nest(ctx: Context) -> Any:
    await ctx.send(ctx.slots.mailbox, MAILBOX_SECRET.encode())
    a = await ctx.spawn(H + "read_parent_mailbox", executor="isolated")
    _, st = await ctx.wait(a.aid, timeout=60)
    return st


async def _upgrade_nest(ctx: Context) -> Any:
    v = await ctx.spawn(_victim, spec={"kernel_pid": ctx.spec["kernel_pid"]})
    a = await ctx.spawn(H + "upgrade_victim", executor="isolated", caps=[[v.ctl, ["READ", "SUPERVISOR"]]],
                        spec={"victim": 6})
    _, st = await ctx.wait(a.aid, timeout=60)
    try:
        await ctx.send(v.ep, b"go")
    except Exception:
        pass  # swapped at once and already gone
    _, vst = await ctx.wait(v.aid, timeout=60)
    return {"agent": st["agent"], "exit": {"attack": st["exit"], "victim": vst["exit"]}, "fault": st["fault"]}


NESTS = {"mailbox": _mailbox_nest, "upgrade": _upgrade_nest}


def run_attacks(attacks: list[Attack], w: World, off: frozenset[str] = frozenset(),
                extra: Callable[[Context], Any] | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """Boot a real kernel with ``off`` switched off, run ``attacks`` as isolated agents;
    returns their verdicts and what ``extra`` (run alongside, by the same parent) returned."""

    async def main(ctx: Context) -> Any:
        sid = await ctx.subscribe("security.**", depth=8192)
        running = {}
        for att in attacks:
            spec = {"kernel_pid": w.kernel_pid, **att.spec(w)}
            if att.nest:
                h = await ctx.spawn(NESTS[att.nest], spec=spec)
            else:
                h = await ctx.spawn(att.entry, executor="isolated", spec=spec, **att.opts)
            running[att.name] = h
        side = await extra(ctx) if extra is not None else None
        statuses = {}
        for name, h in running.items():
            _, st = await ctx.wait(h.aid, timeout=120)
            statuses[name] = st["exit"] if NESTS.get(BY_NAME[name].nest) else st
        events = []
        while True:
            try:  # every report of an agent is published before its exit: nothing is in flight
                events.append(await ctx.next_event(sid, timeout=0))
            except WouldBlock:
                break
        return statuses, events, side

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 24)
    if off:
        weaken_for_tests(k, *off)
    try:
        res = run_sync(run_async(k, main, rights=["SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY"]))
    finally:
        k.close()
    (r,) = res.values()
    assert r["fault"] is None, r["fault"]
    statuses, events, side = r["exit"]
    verdicts = {}
    for att in attacks:
        st = statuses[att.name]
        mine = [e for e in events if e["data"].get("agent") == st["agent"]]
        verdicts[att.name] = classify(att, st, mine, w)
    return verdicts, {"events": events, "side": side}


# -- the normal run: everything on ----------------------------------------------------------------


def test_hostile_agents_are_contained_and_the_kernel_keeps_serving(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIOS_KEY_PASSPHRASE", SECRET)

    async def alongside(ctx: Context) -> Any:
        good = await ctx.spawn(H + "steady", executor="isolated", spec={"n": 4000})
        forged = await ctx.spawn(H + "forged_slot", executor="isolated")
        kernel = await ctx.spawn(H + "attack_kernel", executor="isolated", spec={"kernel_pid": world.kernel_pid})
        frames = await ctx.spawn(H + "malformed_frames", executor="isolated")
        spinner = await ctx.spawn(H + "spin", executor="isolated")
        await ctx.recv(timeout=60)  # it is spinning now: only the host can stop it
        out = {}
        for name, h in (("forged", forged), ("kernel", kernel), ("frames", frames), ("good", good)):
            out[name] = (await ctx.wait(h.aid, timeout=120))[1]
        await ctx.kill(spinner.ctl)
        out["spin"] = (await ctx.wait(spinner.aid, timeout=60))[1]
        return out

    verdicts, more = run_attacks(list(ATTACKS), world, extra=alongside)
    want = {a.name: a.expected(frozenset()) for a in ATTACKS}
    assert verdicts == want
    side, events = more["side"], more["events"]
    assert side["forged"]["exit"] == {"ok": False, "op": "send", "errno": 1001, "error": "EBADCAP"}
    assert side["frames"]["fault"] and "protocol" in side["frames"]["fault"].lower()
    ak = side["kernel"]["exit"]  # ptrace: seccomp (then uid); /proc/PID/mem: Landlock and uid
    assert ak["ptrace"] == {"ok": False, "op": "ptrace", "errno": 1}
    assert ak["signal"]["errno"] == 1 and ak["read_mem"]["errno"] == 13
    assert side["spin"]["fault"] and "killed" in side["spin"]["fault"]
    good = side["good"]
    assert good["fault"] is None and good["exit"]["calls"] == 4000
    kinds = {(e["topic"], e["data"].get("kind") or e["data"].get("error")) for e in events}
    assert ("security.sandbox", "syscall") in kinds  # seccomp's reports reached the bus
    assert any(e["data"].get("detail") == "ptrace" and e["data"].get("trusted") for e in events)
    assert ("security.violation", "EBADCAP") in kinds
    assert not any(os.path.exists(world.open_dir / n) for n in os.listdir(world.open_dir))
    assert world.tcp_got == [] and world.udp_got == []
    with capsys.disabled():
        print(f"\nwell-behaved isolated agent during the attacks: p50 {good['exit']['p50_ns'] / 1000:.1f} µs, "
              f"p99 {good['exit']['p99_ns'] / 1000:.1f} µs per syscall; {len(events)} security events")


def test_every_mechanism_has_an_attack_that_needs_it() -> None:
    """The mutant suite covers every switch, and every attack can be switched through."""
    layered = {m for a in ATTACKS for m, _ in a.layers}
    assert layered == set(SWITCHES) | set(KERNEL_SWITCHES)
    for a in ATTACKS:
        verdicts = [v for _, v in a.layers]
        assert SUCCEEDED not in verdicts and a.expected(frozenset(m for m, _ in a.layers)) == SUCCEEDED


# -- the mutants: each layer off in turn, the attack must get further ------------------------------

MUTANT_SETS = sorted({s for a in ATTACKS for s in a.mutant_sets()}, key=lambda s: (len(s), sorted(s)))


@pytest.mark.security_mutant
@pytest.mark.parametrize("off", MUTANT_SETS, ids=lambda s: "+".join(sorted(s)))
def test_attack_gets_through_when_its_mechanism_is_off(
    off: frozenset[str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOS_KEY_PASSPHRASE", SECRET)
    attacks = [a for a in ATTACKS if off in a.mutant_sets()]
    verdicts, _ = run_attacks(attacks, world, off)
    want = {a.name: a.expected(off) for a in attacks}
    assert verdicts == want, f"with {sorted(off)} off"
