"""Behavioral analysis: detection within bounded calls, responses, false positives."""

from __future__ import annotations

import math
import random

import pytest

from aios.abi.errors import InvalidArgument, InvalidCapability, PermissionDenied
from aios.lib.behavior import (
    NET_ATTEMPT,
    Alert,
    BehaviorConfig,
    BehaviorMonitor,
    Response,
    ResponseKind,
    Rung,
    summarize,
)

# A host network call refused by the sandbox: what the kernel feeds the monitor for each
# trusted seccomp report (not an AIOS syscall number; 40 would be IPC_SEND_NOWAIT).
NET_CONNECT = NET_ATTEMPT
SYSCALLS = [5, 6, 7, 8, 20, 21, 30, 31]
WEIGHTS = [30, 30, 10, 10, 5, 5, 5, 5]
CFG = BehaviorConfig()  # the default config counts NET_ATTEMPT as a network denial


def test_net_attempt_is_not_an_aios_syscall_and_is_on_by_default() -> None:
    from aios.abi.sysno import Sys

    assert NET_ATTEMPT not in {int(s) for s in Sys}
    assert NET_ATTEMPT in BehaviorConfig().net_sysnos
    mon = BehaviorMonitor()
    found: list = []
    for i in range(8):
        found += mon.observe(3, NET_ATTEMPT, PermissionDenied.code, 1000 * (i + 1))
    assert any(isinstance(f, Response) and f.kind is ResponseKind.REVOKE for f in found)


class ScriptedAgent:
    """A normal workload: Poisson arrivals at a slowly drifting rate, a fixed mix,
    one denied call in a thousand."""

    def __init__(self, key: int, seed: int, rate: float = 200.0) -> None:
        self.key = key
        self.rng = random.Random(seed)
        self.rate = rate

    def normal(self, mon: BehaviorMonitor, t: int, n: int) -> tuple[int, list]:
        out: list = []
        rng = self.rng
        for _ in range(n):
            r = self.rate * (1.0 + 0.3 * math.sin(t / 7e9))
            t += int(rng.expovariate(r) * 1e9)
            sysno = rng.choices(SYSCALLS, WEIGHTS)[0]
            errno = PermissionDenied.code if rng.random() < 0.001 else 0
            out += mon.observe(self.key, sysno, errno, t)
        return t, out


def attack(mon: BehaviorMonitor, key: int, t: int, calls, limit: int = 2000):
    """Run attack calls until the first finding; return (calls used, findings, t)."""
    for i in range(limit):
        t += 200_000
        sysno, errno = calls(i)
        found = mon.observe(key, sysno, errno, t)
        if found:
            return i + 1, found, t
    return None, [], t


@pytest.mark.parametrize(
    ("phase", "calls", "bound"),
    [
        ("flood", lambda i: (5, 0), 400),
        ("scan", lambda i: (SYSCALLS[i % 8], InvalidCapability.code), 20),
        ("network", lambda i: (NET_CONNECT, PermissionDenied.code), 5),
    ],
)
def test_misbehaviour_detected_within_bound_and_neighbour_quiet(phase, calls, bound) -> None:
    mon = BehaviorMonitor(CFG)
    bad, good = ScriptedAgent(1, seed=1), ScriptedAgent(2, seed=2)
    t_bad, out_bad = bad.normal(mon, 0, 6000)
    t_good, out_good = good.normal(mon, 0, 6000)
    assert out_bad == [] and out_good == []
    used, found, t_bad = attack(mon, 1, t_bad, calls)
    assert used is not None and used <= bound, (phase, used)
    alerts = [f for f in found if isinstance(f, Alert)]
    responses = [f for f in found if isinstance(f, Response)]
    assert alerts and alerts[0].agent_key == 1 and alerts[0].evidence
    assert ResponseKind.THROTTLE in {r.kind for r in responses}
    if phase == "network":
        revoke = [r for r in responses if r.kind is ResponseKind.REVOKE]
        assert revoke and revoke[0].rights == ("ACCESS_NET",)
    rec = alerts[0].record()
    assert rec["kind"] == "security.anomaly" and rec["agent"] == 1 and rec["evidence"]
    _, more = good.normal(mon, t_good, 3000)
    assert more == []


def test_escalation_to_suspend_and_kill_then_release() -> None:
    mon = BehaviorMonitor(CFG)
    a = ScriptedAgent(1, seed=3)
    t, _ = a.normal(mon, 0, 4000)
    seen: list = []
    for _ in range(200):
        t += 100_000
        seen += mon.observe(1, NET_CONNECT, PermissionDenied.code, t)
    kinds = [f.kind for f in seen if isinstance(f, Response)]
    # each rung fires once per incident, in ladder order
    assert kinds == [
        ResponseKind.THROTTLE,
        ResponseKind.REVOKE,
        ResponseKind.SUSPEND,
        ResponseKind.KILL,
    ]
    back = mon.release(1, t)
    assert [r.kind for r in back] == [
        ResponseKind.RESUME,
        ResponseKind.REGRANT,
        ResponseKind.UNTHROTTLE,
    ]
    unthrottle = back[-1]
    assert unthrottle.weight_factor == pytest.approx(4.0)
    assert back[1].rights == ("ACCESS_NET",)
    assert mon.active_responses(1) == ()


def test_reversal_records() -> None:
    r = Response(1, 5, ResponseKind.THROTTLE, 0.5, (), "x")
    rev = r.reversal(9)
    assert rev is not None and rev.kind is ResponseKind.UNTHROTTLE and rev.weight_factor == 2.0
    assert Response(1, 5, ResponseKind.KILL).reversal(9) is None
    assert Response(1, 5, ResponseKind.SUSPEND).reversal(9).kind is ResponseKind.RESUME


def test_configured_ladder_is_used() -> None:
    cfg = BehaviorConfig.from_mapping(
        {"net_sysnos": [NET_CONNECT], "ladder": [{"min_score": 1.0, "kind": "suspend"}]}
    )
    mon = BehaviorMonitor(cfg)
    t = 0
    found: list = []
    for _ in range(10):
        t += 1000
        found += mon.observe(7, NET_CONNECT, PermissionDenied.code, t)
    assert [f.kind for f in found if isinstance(f, Response)] == [ResponseKind.SUSPEND]
    with pytest.raises(InvalidArgument):
        BehaviorConfig.from_mapping({"ladder": [{"min_score": 1, "kind": "explode"}]})
    with pytest.raises(InvalidArgument):
        BehaviorConfig.from_mapping({"no_such_knob": 1})
    with pytest.raises(InvalidArgument):
        BehaviorConfig(alpha=0.0)


def test_warmup_suppresses_rate_and_mix_but_not_denials() -> None:
    mon = BehaviorMonitor(CFG)
    t = 0
    for _ in range(150):  # a burst of one syscall straight away: no baseline yet
        t += 1000
        assert mon.observe(3, 5, 0, t) == []
    found: list = []
    for _ in range(20):
        t += 1000
        found += mon.observe(3, 6, InvalidCapability.code, t)
    assert summarize(found).get("alert") == 1


def test_memory_is_bounded() -> None:
    cfg = BehaviorConfig(max_sysnos=8, max_agents=50)
    mon = BehaviorMonitor(cfg)
    t = 0
    for i in range(5000):
        t += 10_000_000
        mon.observe(i % 100, i % 997, 0, t)
    assert mon.tracked() == 50
    for prof in mon._agents.values():
        assert len(prof.counts) <= 9 and len(prof.mix) <= 9


def test_forget_drops_state() -> None:
    mon = BehaviorMonitor(CFG)
    mon.observe(1, 5, 0, 0)
    mon.forget(1)
    assert mon.tracked() == 0 and mon.score(1, 0) == (0.0, {})


def _false_positives(calls: int) -> int:
    mon = BehaviorMonitor(CFG)
    agents = [ScriptedAgent(k, seed=100 + k, rate=100.0 + 50 * k) for k in range(4)]
    ts = [0] * len(agents)
    alerts = 0
    per = 5000
    for _ in range(calls // (per * len(agents))):
        for i, a in enumerate(agents):
            ts[i], out = a.normal(mon, ts[i], per)
            alerts += sum(isinstance(f, Alert) for f in out)
    return alerts


def test_false_positives_long_run() -> None:
    # 1M calls across four agents with drifting rates (a few seconds): the figure
    # in docs/policy.md
    assert _false_positives(1_000_000) == 0


def test_rung_validation() -> None:
    r = Rung(1.0, ResponseKind.REVOKE, rights=("ACCESS_NET",), needs="net")
    assert r.needs == "net"
