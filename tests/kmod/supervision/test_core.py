from __future__ import annotations

import pytest

from aios.abi.errors import AlreadyExists, IllegalTransition, NoSuchAgent
from aios.abi.faults import FaultCause
from aios.kmod.supervision.core import (
    SECOND,
    ChildSpec,
    DomainSpec,
    Escalate,
    Exited,
    Fault,
    MarkFailed,
    Reset,
    RestartAt,
    RestartPolicy,
    Start,
    Started,
    State,
    Stop,
    StopAgent,
    Strategy,
    Supervisor,
    Tick,
)

MS = SECOND // 1000


def boot(sup: Supervisor, agent: int, now: int = 0, **kw: object) -> None:
    sup.add_child(ChildSpec(agent, **kw))  # type: ignore[arg-type]
    assert sup.start(agent, now) == [Start(agent)]
    sup.handle(Started(agent, now))


def crash(
    sup: Supervisor, agent: int, now: int, cause: FaultCause = FaultCause.EXCEPTION
) -> list[object]:
    return list(sup.handle(Exited(agent, now, cause, 1, "boom")))


def test_policy_no_never_restarts() -> None:
    sup = Supervisor()
    boot(sup, 1, policy=RestartPolicy.NO)
    out = crash(sup, 1, 5 * MS)
    assert out == [Fault(1, "root", FaultCause.EXCEPTION, 1, "boom", 5 * MS)]
    assert sup.state(1) is State.STOPPED
    assert sup.handle(Tick(100 * SECOND)) == []


def test_on_failure_restarts_failures_but_not_clean_exit() -> None:
    sup = Supervisor()
    boot(sup, 1, policy=RestartPolicy.ON_FAILURE)
    out = crash(sup, 1, 0, FaultCause.OUT_OF_FUEL)
    assert isinstance(out[0], Fault) and out[0].cause is FaultCause.OUT_OF_FUEL
    assert out[1] == RestartAt(1, 100 * MS, 1)
    assert sup.handle(Tick(99 * MS)) == []
    assert sup.handle(Tick(100 * MS)) == [Start(1)]
    sup.handle(Started(1, 100 * MS))
    assert sup.handle(Exited(1, 200 * MS, FaultCause.EXITED, 0)) == []
    assert sup.state(1) is State.STOPPED


def test_always_restarts_even_clean_exit_without_backoff() -> None:
    sup = Supervisor()
    boot(sup, 1, policy=RestartPolicy.ALWAYS)
    out = sup.handle(Exited(1, 50 * MS, FaultCause.EXITED, 0))
    assert out == [RestartAt(1, 50 * MS, 0)]
    assert sup.handle(Tick(50 * MS)) == [Start(1)]


def test_exponential_backoff_and_reset_after_stable_run() -> None:
    sup = Supervisor()
    boot(sup, 1, start_limit_burst=100)
    now, delays = 0, []
    for _ in range(5):
        out = crash(sup, 1, now)
        at = next(a for a in out if isinstance(a, RestartAt)).at_ns
        delays.append(at - now)
        now = at
        assert sup.handle(Tick(now)) == [Start(1)]
        sup.handle(Started(1, now))
    assert delays == [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS]
    # stays up 10 s: counter resets
    out = crash(sup, 1, now + 10 * SECOND)
    assert next(a for a in out if isinstance(a, RestartAt)).attempt == 1


def test_start_limit_then_failed_until_reset() -> None:
    sup = Supervisor()
    boot(sup, 1, backoff_base_ns=0)
    now = 0
    results = []
    for _ in range(6):
        now += 100 * MS
        crash(sup, 1, now)
        results = sup.handle(Tick(now))
        if results and isinstance(results[0], MarkFailed):
            break
        sup.handle(Started(1, now))
    assert isinstance(results[0], MarkFailed) and "start limit" in results[0].reason
    assert sup.state(1) is State.FAILED
    assert sup.handle(Tick(now + 60 * SECOND)) == []  # stays failed
    assert sup.handle(Reset(1), now + 60 * SECOND) == [Start(1)]
    assert sup.state(1) is State.STARTING


def test_start_limit_window_slides() -> None:
    sup = Supervisor()
    sup.add_domain(DomainSpec("d", max_restarts=1000))
    boot(sup, 1, backoff_base_ns=0, domain="d")
    now = 0
    for _ in range(20):  # one crash every 2.5 s: never 5 starts within 10 s
        now += 2500 * MS
        crash(sup, 1, now)
        assert sup.handle(Tick(now)) == [Start(1)]
        sup.handle(Started(1, now))


def test_stop_is_not_restarted() -> None:
    sup = Supervisor()
    boot(sup, 1, policy=RestartPolicy.ALWAYS)
    assert sup.handle(Stop(1)) == [StopAgent(1, "stop requested")]
    assert sup.handle(Exited(1, 1, FaultCause.KILLED, 0)) == []
    assert sup.state(1) is State.STOPPED


def test_crash_in_one_domain_leaves_others_running() -> None:
    sup = Supervisor()
    sup.add_domain(
        DomainSpec("web", strategy=Strategy.ONE_FOR_ALL, max_restarts=2, within_ns=60 * SECOND)
    )
    sup.add_domain(DomainSpec("db"))
    for a, d in ((1, "web"), (2, "web"), (3, "db"), (4, "db")):
        boot(sup, a, domain=d, backoff_base_ns=0)
    out = crash(sup, 1, 10)
    assert StopAgent(2, "one_for_all: sibling 1 failed") in out
    assert {a.agent for a in out if isinstance(a, RestartAt)} == {1, 2}
    sup.handle(Exited(2, 11, FaultCause.KILLED))  # the stop we asked for: ignored
    assert sup.state(3) is State.RUNNING and sup.state(4) is State.RUNNING
    # web exceeds its intensity: whole domain fails and escalates; db untouched
    now = 10
    for _ in range(3):
        sup.handle(Tick(now))
        for a in (1, 2):
            if sup.state(a) is State.STARTING:
                sup.handle(Started(a, now))
        now += 1
        out = crash(sup, 1, now)
        if any(isinstance(a, Escalate) for a in out):
            break
    assert any(isinstance(a, Escalate) and a.domain == "web" and a.parent == "root" for a in out)
    assert sup.state(1) is State.FAILED and sup.state(2) is State.FAILED
    assert sup.state(3) is State.RUNNING and sup.state(4) is State.RUNNING
    out = crash(sup, 3, now + 1)
    assert any(isinstance(a, RestartAt) and a.agent == 3 for a in out)


def test_fault_names_each_cause() -> None:
    sup = Supervisor()
    for i, cause in enumerate(
        [
            FaultCause.EXCEPTION,
            FaultCause.SIGNAL,
            FaultCause.OUT_OF_FUEL,
            FaultCause.KILLED_FOR_LIMIT,
        ],
        1,
    ):
        boot(sup, i, policy=RestartPolicy.NO)
        (f,) = crash(sup, i, 1, cause)
        assert isinstance(f, Fault) and f.cause is cause


def test_illegal_transitions_change_nothing() -> None:
    sup = Supervisor()
    sup.add_child(ChildSpec(1))
    with pytest.raises(IllegalTransition):
        sup.handle(Started(1, 0))  # never asked to start
    assert sup.state(1) is State.STOPPED
    with pytest.raises(IllegalTransition):
        sup.handle(Exited(1, 0, FaultCause.EXCEPTION))
    with pytest.raises(IllegalTransition):
        sup.handle(Reset(1))
    with pytest.raises(AlreadyExists):
        sup.add_child(ChildSpec(1))
    with pytest.raises(NoSuchAgent):
        sup.handle(Started(9, 0))
    assert sup.state(1) is State.STOPPED
