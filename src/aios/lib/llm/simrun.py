"""Run a request scheduler against the simulated engine on virtual time.

The harness is the kernel's future device loop with the model replaced by
:class:`~aios.lib.llm.simengine.SimEngine` and agents replaced by a workload:

* **arrivals**: single calls (an agent asking the model something) and
  **programs** (multi-call agent programs: stages of calls, each stage issued
  when the previous one has finished, prompts growing with earlier answers);
* the **policy** under test receives every call (``submit``), decides what
  starts (``dispatch(fits, limit=1)``, one at a time so that ``fits`` always
  sees the engine as it is), and is told every token (``progress``) and
  every end (``complete``); a preemption it asks for is carried out on the
  engine and reported back as a snapshot (``suspend``);
* an agent whose call is refused for backpressure (``WouldBlock``) keeps it
  and retries after the next completion, as a blocked agent would; a call
  refused for a budget or a deadline (``QuotaExceeded``, ``Busy``) is dropped
  (a program whose call is refused fails).

Everything that happens is appended to an event log whose SHA-256 is the
run's fingerprint: the same workload, seed and policy give the same hash.
The :class:`Metrics` hold what the benchmark and the fairness tests need:
per-request times, per-client priced service in windows of ``window_ns``
(prompt tokens count when their first token appears, generated tokens as they
appear), and per window whether each client was *backlogged* (had a call
waiting for its first token the whole window).
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aios.abi.errors import AIOSError, WouldBlock
from aios.lib.llm.simengine import SimEngine

SEC: Final = 1_000_000_000


class _HasRid(Protocol):
    @property
    def rid(self) -> int: ...


class _Decision(Protocol):
    @property
    def start(self) -> Sequence[_HasRid]: ...

    @property
    def preempt(self) -> Sequence[int]: ...


class Policy(Protocol):
    def submit(
        self, key: int, prompt_tokens: int, max_tokens: int, *, priority: int | None = ...,
        deadline_ns: int | None = ..., program: int | None = ..., payload: object = ...,
    ) -> int: ...

    def dispatch(self, fits: Callable[[Any], bool] | None = ...,
                 limit: int | None = ...) -> _Decision: ...

    def progress(self, rid: int, output_tokens: int) -> int: ...

    def complete(self, rid: int, output_tokens: int | None = ...,
                 prompt_tokens: int | None = ...) -> object: ...

    def suspend(self, rid: int, output_tokens: int, text: str = ...) -> object: ...

    def set_weight(self, key: int, weight: int = ...) -> None: ...

    def set_budget(self, key: int, *, tokens: int | None = ..., cost: int | None = ...) -> None: ...

    def next_event_ns(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Call:
    prompt_tokens: int
    max_tokens: int
    output_tokens: int  # what the model will actually generate (capped by max_tokens)
    priority: int | None = None
    deadline_ns: int | None = None  # relative to arrival


@dataclass(frozen=True, slots=True)
class Arrival:
    t_ns: int
    key: int
    call: Call
    cls: str = ""


@dataclass(frozen=True, slots=True)
class ProgramArrival:
    t_ns: int
    key: int
    stages: tuple[tuple[Call, ...], ...]
    cls: str = "program"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    weight: int = 1024
    budget_tokens: int | None = None


@dataclass(slots=True)
class ReqRecord:
    key: int
    cls: str
    call: Call
    arrival_ns: int
    deadline_abs: int | None
    program: int | None
    rid: int = -1
    started_ns: int = -1
    first_ns: int = -1
    finish_ns: int = -1
    done: int = 0  # tokens generated before the current engine run (resume)
    generated: int = 0
    refused: str = ""
    preemptions: int = 0

    @property
    def target(self) -> int:
        return min(self.call.output_tokens, self.call.max_tokens)


@dataclass(slots=True)
class ProgramRecord:
    pid: int
    key: int
    cls: str
    start_ns: int
    stages: tuple[tuple[Call, ...], ...]
    stage: int = 0
    outstanding: int = 0
    finish_ns: int = -1
    failed: bool = False


@dataclass(slots=True)
class Metrics:
    window_ns: int
    input_price: int
    output_price: int
    requests: list[ReqRecord] = field(default_factory=list)
    programs: list[ProgramRecord] = field(default_factory=list)
    service: dict[int, dict[int, int]] = field(default_factory=dict)  # key -> window -> cost
    idle: dict[int, dict[int, int]] = field(default_factory=dict)  # key -> window -> ns idle
    tokens_out: dict[int, int] = field(default_factory=dict)  # window -> generated tokens
    charged: dict[int, int] = field(default_factory=dict)  # key -> tokens actually used
    decisions: int = 0
    decision_ns: int = 0  # wall time spent in the policy's dispatch (filled by callers)
    preemptions: int = 0
    engine_preemptions: int = 0
    recomputed_tokens: int = 0
    end_ns: int = 0
    drain_end_ns: int = 0
    log_hash: str = ""

    def add_service(self, key: int, t: int, cost: int) -> None:
        w = self.service.setdefault(key, {})
        i = t // self.window_ns
        w[i] = w.get(i, 0) + cost

    def add_idle(self, key: int, a: int, b: int) -> None:
        """``key`` had nothing waiting during [a, b)."""
        w = self.idle.setdefault(key, {})
        while a < b:
            i = a // self.window_ns
            end = min(b, (i + 1) * self.window_ns)
            w[i] = w.get(i, 0) + end - a
            a = end


class Simulation:
    """One run: a policy, an engine, a workload, virtual time."""

    def __init__(
        self,
        policy: Policy,
        engine: SimEngine,
        *,
        clients: dict[int, ClientConfig] | None = None,
        window_ns: int = 10 * SEC,
        input_price: int = 1,
        output_price: int = 2,
        clock: Callable[[], int] | None = None,
        set_clock: Callable[[int], None] | None = None,
        on_decision: Callable[[Simulation], None] | None = None,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.now = 0
        self._set_clock = set_clock
        self.clients = clients or {}
        self.m = Metrics(window_ns, input_price, output_price)
        self.by_rid: dict[int, ReqRecord] = {}
        self.pending: dict[int, deque[ReqRecord]] = {}  # agent-side, after WouldBlock
        self.waiting: dict[int, int] = {}  # key -> calls without a first token
        self.empty_since: dict[int, int] = {}
        self._log = hashlib.sha256()
        self._pids = 0
        self.on_decision = on_decision
        for key, cfg in self.clients.items():
            policy.set_weight(key, cfg.weight)
            if cfg.budget_tokens is not None:
                policy.set_budget(key, tokens=cfg.budget_tokens)

    # -- bookkeeping ---------------------------------------------------------------

    def log(self, kind: int, a: int, b: int = 0) -> None:
        self._log.update(struct.pack("<qiqq", self.now, kind, a, b))

    def _tick(self, t: int) -> None:
        self.now = t
        if self._set_clock is not None:
            self._set_clock(t)

    def _waiting_delta(self, key: int, d: int) -> None:
        n = self.waiting.get(key, 0)
        if n == 0 and d > 0:
            since = self.empty_since.pop(key, 0)
            self.m.add_idle(key, since, self.now)
        n += d
        self.waiting[key] = n
        if n == 0:
            self.empty_since[key] = self.now

    # -- arrivals ------------------------------------------------------------------

    def _arrive(self, key: int, cls: str, call: Call, program: int | None) -> None:
        dl = None if call.deadline_ns is None else self.now + call.deadline_ns
        rec = ReqRecord(key, cls, call, self.now, dl, program)
        self.m.requests.append(rec)
        self._waiting_delta(key, 1)
        q = self.pending.get(key)
        if q:
            q.append(rec)
            return
        self._submit(rec)

    def _submit(self, rec: ReqRecord) -> bool:
        """False: backpressure (the agent keeps the call)."""
        try:
            rid = self.policy.submit(
                rec.key, rec.call.prompt_tokens, rec.call.max_tokens,
                priority=rec.call.priority, deadline_ns=rec.deadline_abs,
                program=rec.program, payload=None,
            )
        except WouldBlock:
            self.pending.setdefault(rec.key, deque()).append(rec)
            return False
        except AIOSError as e:
            rec.refused = e.name
            self.log(2, rec.key, e.code)
            self._waiting_delta(rec.key, -1)
            if rec.program is not None:
                p = self.m.programs[rec.program]
                p.failed = True
                p.outstanding -= 1
                if p.outstanding == 0:
                    p.finish_ns = self.now
            return True
        rec.rid = rid
        self.by_rid[rid] = rec
        self.log(1, rid, rec.key)
        return True

    def _retry_pending(self) -> None:
        for key in list(self.pending):
            q = self.pending[key]
            while q:
                rec = q.popleft()
                if not self._submit(rec):
                    # _submit put it at the back: restore order and stop
                    q.appendleft(q.pop())
                    break
            if not q:
                del self.pending[key]

    def _start_program(self, pa: ProgramArrival) -> None:
        pid = len(self.m.programs)
        p = ProgramRecord(pid, pa.key, pa.cls, self.now, pa.stages)
        self.m.programs.append(p)
        self._issue_stage(p)

    def _issue_stage(self, p: ProgramRecord) -> None:
        calls = p.stages[p.stage]
        p.outstanding = len(calls)
        for c in calls:
            if p.failed:
                p.outstanding -= 1
                continue
            self._arrive(p.key, p.cls, c, p.pid)
        if p.outstanding == 0 and p.finish_ns < 0:
            p.finish_ns = self.now

    # -- the engine side -------------------------------------------------------------

    def _fits(self, r: Any) -> bool:
        rec = self.by_rid[r.rid]
        return self.engine.can_admit(rec.call.prompt_tokens + rec.done)

    def _dispatch(self) -> None:
        while True:
            d = self.policy.dispatch(self._fits, 1)
            self.m.decisions += len(d.start)
            for rid in d.preempt:
                rec = self.by_rid[rid]
                ev = self.engine.evict(rid)
                rec.done += ev.generated
                rec.generated = rec.done
                rec.preemptions += 1
                self.m.preemptions += 1
                self.m.recomputed_tokens += rec.call.prompt_tokens + rec.done
                self.policy.suspend(rid, rec.done, "")
                self.log(5, rid, rec.done)
            for r in d.start:
                rec = self.by_rid[r.rid]
                left = rec.call.max_tokens - rec.done
                self.engine.submit(
                    r.rid, rec.call.prompt_tokens + rec.done, left, rec.target - rec.done
                )
                if rec.started_ns < 0:
                    rec.started_ns = self.now
                self.log(3, r.rid, rec.done)
            if self.on_decision is not None:
                self.on_decision(self)
            if not d.start and not d.preempt:
                return

    def _apply_step(self, res: Any) -> None:
        m = self.m
        m.engine_preemptions += len(res.preempted)
        for rid in res.first:
            rec = self.by_rid[rid]
            if rec.first_ns < 0:
                rec.first_ns = self.now
                self._waiting_delta(rec.key, -1)
                m.add_service(rec.key, self.now, m.input_price * rec.call.prompt_tokens)
                m.charged[rec.key] = m.charged.get(rec.key, 0) + rec.call.prompt_tokens
                self.log(4, rid)
        window = self.now // m.window_ns
        for rid, gen in res.progress:
            rec = self.by_rid[rid]
            total = rec.done + gen
            new = total - rec.generated
            if new > 0:
                rec.generated = total
                m.add_service(rec.key, self.now, m.output_price * new)
                m.tokens_out[window] = m.tokens_out.get(window, 0) + new
                m.charged[rec.key] = m.charged.get(rec.key, 0) + new
                self.policy.progress(rid, total)
        for f in res.finished:
            rec = self.by_rid[f.rid]
            rec.finish_ns = self.now
            self.policy.complete(f.rid, rec.done + f.generated)
            self.log(6, f.rid, rec.generated)
            if rec.program is not None:
                p = m.programs[rec.program]
                p.outstanding -= 1
                if p.outstanding == 0:
                    if p.failed or p.stage + 1 == len(p.stages):
                        p.finish_ns = self.now
                    else:
                        p.stage += 1
                        self._issue_stage(p)

    # -- the loop --------------------------------------------------------------------

    def run(
        self,
        arrivals: Sequence[Arrival],
        programs: Sequence[ProgramArrival] = (),
        until_ns: int = 60 * SEC,
        drain_ns: int = 0,
    ) -> Metrics:
        """Run to ``until_ns``; then, for up to ``drain_ns`` more, only until every
        program started has finished (their later calls keep arriving; nothing
        else does).  Window metrics cover ``[0, until_ns)``."""
        arr = sorted(arrivals, key=lambda a: a.t_ns)
        progs = sorted(programs, key=lambda p: p.t_ns)
        ia = ip = 0
        step_end: int | None = None
        step_res: Any = None
        for key in self.clients:
            self.waiting.setdefault(key, 0)
            self.empty_since.setdefault(key, 0)
        while True:
            # everything due now
            if step_end is not None and step_end <= self.now:
                self._apply_step(step_res)
                step_end = step_res = None
                self._retry_pending()
            while ia < len(arr) and arr[ia].t_ns <= self.now:
                a = arr[ia]
                self._arrive(a.key, a.cls, a.call, None)
                ia += 1
            while ip < len(progs) and progs[ip].t_ns <= self.now:
                self._start_program(progs[ip])
                ip += 1
            if step_end is None:
                # the engine takes new work between steps: decide then
                self._dispatch()
                res = self.engine.step()
                if res is not None:
                    step_res, step_end = res, self.now + res.duration_ns
            stop = until_ns
            if drain_ns and self.now >= until_ns:
                if all(p.finish_ns >= 0 for p in self.m.programs):
                    break
                stop = until_ns + drain_ns
            elif drain_ns and ia >= len(arr) and ip >= len(progs):
                stop = until_ns + drain_ns
            times = [stop]
            if step_end is not None:
                times.append(step_end)
            if ia < len(arr):
                times.append(arr[ia].t_ns)
            if ip < len(progs):
                times.append(progs[ip].t_ns)
            wake = self.policy.next_event_ns() if step_end is None else None
            if wake is not None:  # (while a step runs, its end is the next decision)
                times.append(max(wake, self.now + 1))
            t = min(times)
            if t >= stop:
                break
            self._tick(t)
        self.m.drain_end_ns = max(self.now, until_ns)
        for key, since in self.empty_since.items():
            self.m.add_idle(key, since, self.m.drain_end_ns)
        self.m.end_ns = until_ns
        self.m.log_hash = self._log.hexdigest()
        return self.m


def jain(xs: Sequence[float]) -> float:
    s = sum(xs)
    q = sum(x * x for x in xs)
    return 1.0 if q == 0 else s * s / (len(xs) * q)


def backlogged(m: Metrics, window: int, keys: Sequence[int], slack: float = 0.01) -> list[int]:
    """Clients with a call waiting for its first token (nearly) all of ``window``."""
    lim = slack * m.window_ns
    return [k for k in keys if m.idle.get(k, {}).get(window, 0) <= lim]


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]
