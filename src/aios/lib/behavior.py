"""Behavioral analysis: per-agent baselines, anomaly scores, automated response.

Whitepaper 5.1, layer 4.  The kernel calls :meth:`BehaviorMonitor.observe`
after every syscall with ``(agent, sysno, errno, now)``; the monitor answers
with zero or more records: an :class:`Alert` (publish on ``security.anomaly``)
and the :class:`Response` records the kernel must carry out (publish on
``security.response``, audit, execute).  The monitor itself does nothing to
the agent and never reads a clock: it is a pure function of what it is told.

The model
---------
Time is cut into windows of ``window_ns`` (1 s by default).  Per agent the
monitor keeps

* the **rate baseline**: an exponentially weighted mean and variance of calls
  per window (``alpha`` per window, idle windows count as zero);
* the **mix baseline**: an exponentially weighted distribution over syscall
  numbers, folded in at each window close;
* a **denial score**: every call refused with a capability or policy error
  (EPERM 1, EBADCAP 1001, EACCES 13) adds ``deny_weight``, a network call so
  refused (an attempt without ACCESS_NET) adds ``net_deny_weight``; the score
  decays with half-life ``deny_half_life_ns``.  Agents do hit the odd denial;
  scanning for capabilities you do not hold is a stream of them.

Network attempts are not AIOS syscalls: an agent without ACCESS_NET reaches
for the host's network directly (``socket(AF_INET, ...)``), and the isolated
executor's seccomp filter refuses it and reports it through the zygote's
user-notification listener (a ``security.sandbox`` event the agent cannot
forge or suppress).  The kernel feeds each such report to :meth:`observe` as
the pseudo-syscall :data:`NET_ATTEMPT` refused with EPERM, which is in the
default ``net_sysnos``; so the ladder's ``REVOKE ACCESS_NET`` rung is reached
from the real kernel path (see ``aios.kmod.security.policy``).

Three normalized components are computed in-window, so an attack is seen
within a bounded number of calls rather than at the next window edge:

* rate: ``(n - mean) / max(std, sqrt(mean), 1) / rate_z`` where ``n`` is the
  calls so far in the window: a flood passes the threshold after about
  ``mean + rate_z * std`` calls;
* mix: the KL divergence ``D(window || baseline)`` (baseline smoothed so an
  unseen syscall costs ``log(1/eps)``), once the window holds at least
  ``mix_min_calls`` calls, re-checked every ``mix_every`` calls, divided by
  ``kl_threshold``;
* denials: ``deny_score / deny_threshold``.

The anomaly score is their sum; at ``score >= 1`` an alert goes out with each
component as evidence.  During warm-up (``warmup_windows`` windows with
``warmup_calls`` calls in all) rate and mix are not judged, because there is
no baseline yet; denials are judged from the first call.  A window that
raised an alert is not folded into the baseline, so an attacker cannot teach
the monitor that flooding is normal.

Responses
---------
A ladder from :class:`BehaviorConfig` maps score thresholds to responses,
each rung fired at most once per incident: by default throttle (scale the
agent's weight by 1/4) at 1, revoke ``ACCESS_NET`` when the evidence includes
network denials, suspend at 3, kill at 8.  Every response but kill has a
reversal record (unthrottle, resume, regrant) which :meth:`release` hands out
when an operator runs ``aios agent resume``; the incident then ends and the
agent starts a fresh warm-up.

Bounded memory
--------------
At most ``max_sysnos`` distinct syscall numbers are tracked per agent (the
rest share one "other" bucket) and at most ``max_agents`` agents (least
recently seen dropped first); per agent that is O(max_sysnos) numbers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aios.abi.errors import InvalidArgument, InvalidCapability, PermissionDenied, PolicyDenied

ANOMALY_TOPIC: Final = "security.anomaly"
RESPONSE_TOPIC: Final = "security.response"
OTHER: Final = -1  # the shared bucket for syscall numbers beyond max_sysnos
NET_ATTEMPT: Final = -2  # a host network call the sandbox refused (not an AIOS syscall)
NET_SYSCALL_NAMES: Final = frozenset({"socket", "socketpair", "connect", "bind", "sendto", "sendmsg"})
DENY_ERRNOS: Final = frozenset({PermissionDenied.code, InvalidCapability.code, PolicyDenied.code})


class ResponseKind(StrEnum):
    THROTTLE = "throttle"
    UNTHROTTLE = "unthrottle"
    SUSPEND = "suspend"
    RESUME = "resume"
    REVOKE = "revoke"
    REGRANT = "regrant"
    KILL = "kill"


REVERSAL: Final[dict[ResponseKind, ResponseKind | None]] = {
    ResponseKind.THROTTLE: ResponseKind.UNTHROTTLE,
    ResponseKind.SUSPEND: ResponseKind.RESUME,
    ResponseKind.REVOKE: ResponseKind.REGRANT,
    ResponseKind.KILL: None,
}


@dataclass(frozen=True, slots=True)
class Rung:
    """One step of the response ladder."""

    min_score: float
    kind: ResponseKind
    weight_factor: float = 1.0  # THROTTLE: multiply the agent's weight (and budget)
    rights: tuple[str, ...] = ()  # REVOKE: capabilities holding any of these rights
    needs: str = ""  # fire only if this evidence component is non-zero ("net", "deny", ...)


DEFAULT_LADDER: Final = (
    Rung(1.0, ResponseKind.THROTTLE, weight_factor=0.25),
    Rung(1.0, ResponseKind.REVOKE, rights=("ACCESS_NET",), needs="net"),
    Rung(3.0, ResponseKind.SUSPEND),
    Rung(8.0, ResponseKind.KILL),
)


@dataclass(frozen=True, slots=True)
class BehaviorConfig:
    window_ns: int = 1_000_000_000
    alpha: float = 0.1  # EWMA weight of one window
    warmup_windows: int = 10
    warmup_calls: int = 200
    rate_z: float = 6.0
    kl_threshold: float = 1.0  # nats
    kl_eps: float = 1e-3  # smoothing floor of the baseline mix
    mix_min_calls: int = 32
    mix_every: int = 16
    deny_weight: float = 1.0
    net_deny_weight: float = 4.0
    deny_threshold: float = 16.0
    deny_half_life_ns: int = 10_000_000_000
    net_sysnos: frozenset[int] = frozenset({NET_ATTEMPT})
    alert_threshold: float = 1.0
    max_sysnos: int = 64
    max_agents: int = 1_000_000
    ladder: tuple[Rung, ...] = DEFAULT_LADDER

    def __post_init__(self) -> None:
        if self.window_ns <= 0 or not 0.0 < self.alpha <= 1.0:
            raise InvalidArgument("behavior: window_ns must be > 0 and alpha in (0, 1]")
        if self.max_sysnos < 1 or self.max_agents < 1 or self.mix_every < 1:
            raise InvalidArgument("behavior: max_sysnos, max_agents and mix_every must be >= 1")
        if min(self.rate_z, self.kl_threshold, self.deny_threshold, self.alert_threshold) <= 0:
            raise InvalidArgument("behavior: thresholds must be positive")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> BehaviorConfig:
        """Build from a parsed TOML table (``[behavior]`` with ``[[behavior.ladder]]``)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidArgument(f"behavior: unknown settings {sorted(unknown)}")
        kw: dict[str, Any] = {k: v for k, v in data.items() if k not in ("ladder", "net_sysnos")}
        if "net_sysnos" in data:
            kw["net_sysnos"] = frozenset(int(x) for x in data["net_sysnos"])
        if "ladder" in data:
            rungs = []
            for r in data["ladder"]:
                try:
                    rungs.append(
                        Rung(
                            float(r["min_score"]),
                            ResponseKind(r["kind"]),
                            weight_factor=float(r.get("weight_factor", 1.0)),
                            rights=tuple(r.get("rights", ())),
                            needs=str(r.get("needs", "")),
                        )
                    )
                except (KeyError, ValueError) as exc:
                    raise InvalidArgument(f"behavior: bad ladder rung {r!r}: {exc}") from exc
                if rungs[-1].kind not in REVERSAL:
                    raise InvalidArgument(f"behavior: {r['kind']!r} is not a response")
            kw["ladder"] = tuple(rungs)
        try:
            return cls(**kw)
        except TypeError as exc:
            raise InvalidArgument(f"behavior: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Alert:
    agent_key: int
    at_ns: int
    score: float
    reasons: tuple[str, ...]
    evidence: tuple[tuple[str, float], ...]
    topic: str = ANOMALY_TOPIC

    def record(self) -> dict[str, Any]:
        return {
            "kind": ANOMALY_TOPIC,
            "agent": self.agent_key,
            "at_ns": self.at_ns,
            "score": round(self.score, 4),
            "reasons": list(self.reasons),
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Response:
    """An action for the kernel to execute (and to audit)."""

    agent_key: int
    at_ns: int
    kind: ResponseKind
    weight_factor: float = 1.0
    rights: tuple[str, ...] = ()
    reason: str = ""
    topic: str = RESPONSE_TOPIC

    def reversal(self, at_ns: int, reason: str = "operator release") -> Response | None:
        """The record that undoes this one, ``None`` for kill."""
        back = REVERSAL.get(self.kind)
        if back is None:
            return None
        factor = 1.0 / self.weight_factor if self.kind is ResponseKind.THROTTLE else 1.0
        return Response(self.agent_key, at_ns, back, factor, self.rights, reason)

    def record(self) -> dict[str, Any]:
        return {
            "kind": RESPONSE_TOPIC,
            "agent": self.agent_key,
            "at_ns": self.at_ns,
            "response": self.kind.value,
            "weight_factor": self.weight_factor,
            "rights": list(self.rights),
            "reason": self.reason,
        }


Finding = Alert | Response


@dataclass(slots=True)
class _Profile:
    window_start: int
    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0
    windows: int = 0
    calls: int = 0
    rate_mean: float = 0.0
    rate_var: float = 0.0
    mix: dict[int, float] = field(default_factory=dict)
    deny: float = 0.0
    net_deny: float = 0.0
    deny_at: int = 0
    window_flagged: bool = False
    incident_score: float = 0.0
    fired: set[int] = field(default_factory=set)  # ladder rung indexes fired this incident
    active: list[Response] = field(default_factory=list)


class BehaviorMonitor:
    """Per-agent baselines and anomaly detection, fed one syscall at a time."""

    def __init__(self, config: BehaviorConfig | None = None) -> None:
        self.config = config or BehaviorConfig()
        self._agents: OrderedDict[int, _Profile] = OrderedDict()
        self.alerts_raised = 0

    # -- public ------------------------------------------------------------

    def observe(self, agent_key: int, sysno: int, errno: int, now_ns: int) -> list[Finding]:
        cfg = self.config
        p = self._agents.get(agent_key)
        if p is None:
            p = _Profile(window_start=now_ns, deny_at=now_ns)
            self._agents[agent_key] = p
            if len(self._agents) > cfg.max_agents:
                self._agents.popitem(last=False)
        else:
            self._agents.move_to_end(agent_key)
        if now_ns - p.window_start >= cfg.window_ns:
            self._close_windows(p, now_ns)

        bucket = sysno if (sysno in p.counts or len(p.counts) < cfg.max_sysnos) else OTHER
        p.counts[bucket] = p.counts.get(bucket, 0) + 1
        p.n += 1
        p.calls += 1

        if errno in DENY_ERRNOS:
            self._decay(p, now_ns)
            if sysno in cfg.net_sysnos:
                p.net_deny += cfg.net_deny_weight
            else:
                p.deny += cfg.deny_weight

        # cheap gate: judge only when something could have moved
        denied = errno in DENY_ERRNOS
        warm = p.windows >= cfg.warmup_windows and p.calls >= cfg.warmup_calls
        if not denied and not (warm and (p.n % cfg.mix_every == 0 or p.n > self._rate_edge(p))):
            return []
        return self._judge(agent_key, p, now_ns, warm)

    def score(self, agent_key: int, now_ns: int) -> tuple[float, dict[str, float]]:
        """The current anomaly score of an agent and its components."""
        p = self._agents.get(agent_key)
        if p is None:
            return 0.0, {}
        cfg = self.config
        warm = p.windows >= cfg.warmup_windows and p.calls >= cfg.warmup_calls
        comps = self._components(p, now_ns, warm)
        return sum(v for k, v in comps.items() if k in ("rate", "mix", "deny")), comps

    def release(self, agent_key: int, now_ns: int) -> list[Response]:
        """Operator release (``aios agent resume``): the reversals of every
        response still in force, newest first; the incident ends and the agent
        starts a fresh warm-up."""
        p = self._agents.get(agent_key)
        if p is None:
            return []
        out = [r for r in (x.reversal(now_ns) for x in reversed(p.active)) if r is not None]
        self._agents[agent_key] = _Profile(window_start=now_ns, deny_at=now_ns)
        return out

    def forget(self, agent_key: int) -> None:
        """Drop an agent's state (it exited)."""
        self._agents.pop(agent_key, None)

    def tracked(self) -> int:
        return len(self._agents)

    def active_responses(self, agent_key: int) -> tuple[Response, ...]:
        p = self._agents.get(agent_key)
        return tuple(p.active) if p else ()

    # -- internals ----------------------------------------------------------

    def _rate_edge(self, p: _Profile) -> float:
        std = max(math.sqrt(max(p.rate_var, 0.0)), math.sqrt(p.rate_mean), 1.0)
        return p.rate_mean + self.config.rate_z * std * 0.5

    def _decay(self, p: _Profile, now_ns: int) -> None:
        dt = now_ns - p.deny_at
        if dt > 0:
            f = 0.5 ** (dt / self.config.deny_half_life_ns)
            p.deny *= f
            p.net_deny *= f
            p.deny_at = now_ns

    def _close_windows(self, p: _Profile, now_ns: int) -> None:
        cfg = self.config
        elapsed = (now_ns - p.window_start) // cfg.window_ns
        if not p.window_flagged:
            self._fold(p, float(p.n), p.counts)
            # idle windows in between count as zero calls (bounded work)
            for _ in range(min(int(elapsed) - 1, 64)):
                self._fold(p, 0.0, None)
        p.window_start += elapsed * cfg.window_ns
        p.counts = {}
        p.n = 0
        if p.window_flagged:
            p.window_flagged = False
        elif not p.active:
            p.incident_score = 0.0
            p.fired.clear()

    def _fold(self, p: _Profile, n: float, counts: Mapping[int, int] | None) -> None:
        a = self.config.alpha if p.windows >= 1 else 1.0
        diff = n - p.rate_mean
        incr = a * diff
        p.rate_mean += incr
        p.rate_var = (1.0 - a) * (p.rate_var + diff * incr)
        p.windows += 1
        if counts and n > 0:
            keys = set(p.mix) | set(counts)
            p.mix = {k: (1.0 - a) * p.mix.get(k, 0.0) + a * counts.get(k, 0) / n for k in keys}
            if len(p.mix) > self.config.max_sysnos + 1:
                drop = sorted(p.mix, key=p.mix.__getitem__)[
                    : len(p.mix) - self.config.max_sysnos - 1
                ]
                for k in drop:
                    del p.mix[k]

    def _components(self, p: _Profile, now_ns: int, warm: bool) -> dict[str, float]:
        cfg = self.config
        self._decay(p, now_ns)
        comps: dict[str, float] = {
            "deny": (p.deny + p.net_deny) / cfg.deny_threshold,
            "net": p.net_deny,
            "denied_weighted": p.deny,
            "calls_in_window": float(p.n),
        }
        if warm:
            std = max(math.sqrt(max(p.rate_var, 0.0)), math.sqrt(p.rate_mean), 1.0)
            z = (p.n - p.rate_mean) / std
            comps["rate_z"] = z
            comps["rate"] = max(0.0, z) / cfg.rate_z
            comps["baseline_rate"] = p.rate_mean
            if p.n >= cfg.mix_min_calls and p.mix:
                kl = 0.0
                for k, c in p.counts.items():
                    q = c / p.n
                    base = p.mix.get(k, 0.0) * (1.0 - cfg.kl_eps) + cfg.kl_eps / (len(p.mix) + 1)
                    kl += q * math.log(q / base)
                comps["kl"] = kl
                comps["mix"] = max(0.0, kl) / cfg.kl_threshold
        return comps

    def _judge(self, agent_key: int, p: _Profile, now_ns: int, warm: bool) -> list[Finding]:
        cfg = self.config
        comps = self._components(p, now_ns, warm)
        total = comps["deny"] + comps.get("rate", 0.0) + comps.get("mix", 0.0)
        if total < cfg.alert_threshold:
            return []
        p.window_flagged = True
        out: list[Finding] = []
        escalated = total >= p.incident_score * 2.0 or not p.incident_score
        new_rungs = [
            i
            for i, r in enumerate(cfg.ladder)
            if i not in p.fired
            and total >= r.min_score
            and (not r.needs or comps.get(r.needs, 0.0) > 0.0)
        ]
        if escalated or new_rungs:
            reasons = tuple(
                name
                for name, key in (("rate", "rate"), ("mix", "mix"), ("denials", "deny"))
                if comps.get(key, 0.0) >= 0.25
            )
            out.append(Alert(agent_key, now_ns, total, reasons, tuple(sorted(comps.items()))))
            self.alerts_raised += 1
            p.incident_score = max(p.incident_score, total)
        why = f"anomaly score {total:.2f}"
        for i in new_rungs:
            r = cfg.ladder[i]
            p.fired.add(i)
            resp = Response(agent_key, now_ns, r.kind, r.weight_factor, r.rights, why)
            p.active.append(resp)
            out.append(resp)
        return out


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts by kind, for reports and tests."""
    out: dict[str, int] = {}
    for f in findings:
        key = "alert" if isinstance(f, Alert) else f.kind.value
        out[key] = out.get(key, 0) + 1
    return out
