"""initd's engine, driven by calling it (a fake kernel and a virtual clock; no processes)."""

from __future__ import annotations

import random
import signal

import pytest

from aios.abi.errors import IllegalTransition, InvalidArgument, NoSuchObject
from aios.kmod.initd import core
from aios.kmod.initd.restart import ExitKind
from aios.kmod.initd.units import shipped_units

from .sim import SEC, Sim, unit

NOTIFY = {"Type": "notify"}


def test_independent_units_start_together_and_after_is_followed() -> None:
    units = [
        unit("a.service", Service=NOTIFY),
        unit("b.service", Service=NOTIFY),
        unit("c.service", Unit={"Requires": ["a.service"], "Wants": ["b.service"],
                                "After": ["a.service", "b.service"]}),
        unit("d.service", Unit={"Requires": ["c.service"], "After": ["c.service"]}),
    ]
    eng = core.Engine(units, lambda: 0)
    first = eng.start("d.service")
    starts = [a.unit.name for a in first if isinstance(a, core.StartUnit)]
    assert starts == ["a.service", "b.service"]  # both at once, before either is up
    assert eng.handle(core.Started("a.service")) == []  # notify: not active until ready
    out = eng.handle(core.Ready("a.service"))
    assert not any(isinstance(x, core.StartUnit) for x in out)  # c still waits for b
    eng.handle(core.Started("b.service"))
    out = eng.handle(core.Ready("b.service"))
    assert [x.unit.name for x in out if isinstance(x, core.StartUnit)] == ["c.service"]
    out = eng.handle(core.Started("c.service"))  # simple: active once started
    assert [x.unit.name for x in out if isinstance(x, core.StartUnit)] == ["d.service"]
    eng.handle(core.Started("d.service"))
    assert all(eng.state(n) is core.ActiveState.ACTIVE for n in eng.units())


def test_stop_is_the_exact_reverse_of_start() -> None:
    units = [
        unit("a.service"),
        unit("b.service"),
        unit("c.service", Unit={"Requires": ["a.service", "b.service"],
                                "After": ["a.service", "b.service"]}),
        unit("d.service", Unit={"Requires": ["c.service"], "After": ["c.service"]}),
        unit("e.service", Unit={"Wants": ["d.service"], "After": ["d.service"]}),
    ]
    sim = Sim(units)
    sim.do(sim.engine.start("e.service"))
    order = sim.started()
    assert order == ["a.service", "b.service", "c.service", "d.service", "e.service"]
    # the engine holds each stop until everything ordered after it has exited
    first = sim.engine.shutdown()
    assert sim.stopped(first) == ["e.service"]
    sim.do(first)
    assert sim.stopped() == ["e.service", "d.service", "c.service", "a.service", "b.service"]
    layers = sim.engine.graph.start_order(order)
    assert layers == [["a.service", "b.service"], ["c.service"], ["d.service"], ["e.service"]]
    assert [sorted(x) for x in reversed(layers)] == [
        ["e.service"], ["d.service"], ["c.service"], ["a.service", "b.service"]]
    assert all(sim.engine.state(n) is core.ActiveState.INACTIVE for n in sim.engine.units())


def test_a_stop_waits_for_the_exit_of_what_is_ordered_after_it() -> None:
    units = [unit("a.service"), unit("b.service", Unit={"Requires": ["a.service"], "After": ["a.service"]})]
    sim = Sim(units, stubborn={"b.service"})
    sim.do(sim.engine.start("b.service"))
    sim.do(sim.engine.stop("a.service"))
    assert sim.stopped() == ["b.service"]  # a is not asked while b is still running
    assert sim.state("a.service") == "active/running"
    sim.exit("b.service", ExitKind.SIGNALED, int(signal.SIGTERM))
    assert sim.stopped() == ["b.service", "a.service"]


@pytest.mark.parametrize(
    "cycle",
    [
        {"a": {"After": ["b.service"]}, "b": {"After": ["c.service"]}, "c": {"After": ["a.service"]}},
        {"a": {"Before": ["b.service"], "After": ["c.service"]}, "b": {}, "c": {"After": ["b.service"]}},
    ],
)
def test_ordering_cycles_are_rejected_at_load_naming_the_cycle(cycle: dict[str, dict[str, list[str]]]) -> None:
    units = [unit(f"{n}.service", Unit=u) for n, u in cycle.items()]
    with pytest.raises(InvalidArgument) as ei:
        core.Engine(units, lambda: 0)
    msg = str(ei.value)
    assert "ordering cycle" in msg
    assert all(f"{n}.service" in msg for n in "abc") and "a.service.toml" in msg
    cyc = ei.value.detail["cycle"]
    assert cyc[0] == cyc[-1] and set(cyc) == {"a.service", "b.service", "c.service"}


def test_requirement_cycles_without_ordering_are_allowed() -> None:
    units = [unit("a.service", Unit={"Requires": ["b.service"]}),
             unit("b.service", Unit={"Requires": ["a.service"]})]
    sim = Sim(units)
    sim.do(sim.engine.start("a.service"))
    assert sorted(sim.started()) == ["a.service", "b.service"]


def test_requires_failure_keeps_dependent_from_starting_wants_does_not() -> None:
    units = [
        unit("db.service", Service={"Type": "notify", "Restart": "no"}),
        unit("app.service", Unit={"Requires": ["db.service"], "After": ["db.service"]}),
        unit("web.service", Unit={"Wants": ["db.service"], "After": ["db.service"]}),
        unit("all.target", Unit={"Wants": ["app.service", "web.service"]}),
    ]
    sim = Sim(units, silent={"db.service"})
    sim.do(sim.engine.start("all.target"))
    assert sim.started() == ["db.service"]
    sim.crash("db.service", 1)  # dies before its ready call
    assert sim.state("db.service") == "failed/failed"
    assert "app.service" not in sim.started()
    assert sim.jobs()["app.service"] == "dependency"
    assert sim.started() == ["db.service", "web.service"]
    assert sim.state("web.service") == "active/running"
    assert sim.state("all.target") == "active/active"  # Wants on the target: reached anyway


def test_spawn_failure_is_a_failure_of_the_required_unit() -> None:
    units = [unit("db.service"), unit("app.service", Unit={"Requires": ["db.service"], "After": ["db.service"]})]
    sim = Sim(units, spawn_fails={"db.service"})
    sim.do(sim.engine.start("app.service"))
    assert sim.engine.status("db.service").result.value == "resources"
    assert sim.jobs()["app.service"] == "dependency" and sim.started() == ["db.service"]


def test_requires_without_after_starts_in_parallel() -> None:
    units = [unit("db.service", Service=NOTIFY),
             unit("app.service", Unit={"Requires": ["db.service"]})]
    eng = core.Engine(units, lambda: 0)
    out = eng.start("app.service")
    assert sorted(a.unit.name for a in out if isinstance(a, core.StartUnit)) == ["app.service", "db.service"]


def test_bindsto_stops_the_dependent_on_a_crash_requires_does_not() -> None:
    units = [
        unit("b.service", Service={"Restart": "no"}),
        unit("bound.service", Unit={"BindsTo": ["b.service"], "After": ["b.service"]}),
        unit("req.service", Unit={"Requires": ["b.service"], "After": ["b.service"]}),
    ]
    sim = Sim(units)
    sim.do(sim.engine.start("bound.service"))
    sim.do(sim.engine.start("req.service"))
    out = sim.exit("b.service", ExitKind.SIGNALED, int(signal.SIGSEGV))
    assert sim.stopped(out) == ["bound.service"]
    assert sim.state("bound.service") == "inactive/dead"
    assert sim.state("req.service") == "active/running"  # Requires propagates only explicit stops
    assert sim.state("b.service") == "failed/failed"


def test_an_auto_restart_takes_bound_and_requiring_units_along() -> None:
    units = [
        unit("memoryd.service", Service={"Restart": "on-failure", "RestartSec": "1s"}),
        unit("sem.service", Unit={"BindsTo": ["memoryd.service"], "After": ["memoryd.service"]}),
    ]
    sim = Sim(units)
    sim.do(sim.engine.start("sem.service"))
    out = sim.crash("memoryd.service", 1)
    assert sim.stopped(out) == ["sem.service"]
    assert sim.state("memoryd.service") == "activating/auto-restart"
    assert sim.state("sem.service") == "inactive/dead"
    out = sim.advance(1 * SEC)
    assert sim.started(out) == ["memoryd.service", "sem.service"]  # in order, sem after memoryd
    assert sim.state("sem.service") == "active/running"


def test_explicit_stop_propagates_along_requires_bindsto_partof() -> None:
    units = [
        unit("b.service"),
        unit("req.service", Unit={"Requires": ["b.service"]}),
        unit("part.service", Unit={"PartOf": ["b.service"]}),
        unit("want.service", Unit={"Wants": ["b.service"]}),
    ]
    sim = Sim(units)
    for n in ("req.service", "part.service", "want.service"):
        sim.do(sim.engine.start(n))
    sim.do(sim.engine.stop("b.service"))
    assert sorted(sim.stopped()) == ["b.service", "part.service", "req.service"]
    assert sim.state("want.service") == "active/running"


def test_partof_propagates_restart() -> None:
    units = [unit("b.service"), unit("part.service", Unit={"PartOf": ["b.service"], "After": ["b.service"]})]
    sim = Sim(units)
    sim.do(sim.engine.start("b.service"))
    sim.do(sim.engine.start("part.service"))
    out = sim.do(sim.engine.restart("b.service"))
    assert sim.stopped(out) == ["part.service", "b.service"]
    assert sim.started(out) == ["b.service", "part.service"]
    assert sim.jobs(out) == {"b.service": "done", "part.service": "done"}


def test_starting_a_conflicting_unit_stops_the_other_first() -> None:
    units = [unit("a.service", Unit={"Conflicts": ["b.service"]}), unit("b.service")]
    sim = Sim(units, stubborn={"b.service"})
    sim.do(sim.engine.start("b.service"))
    out = sim.do(sim.engine.start("a.service"))
    assert sim.stopped(out) == ["b.service"] and sim.started(out) == []  # a waits for b's exit
    out = sim.exit("b.service", ExitKind.SIGNALED, int(signal.SIGTERM))
    assert sim.started(out) == ["a.service"]


def test_conflict_inside_one_transaction_is_refused_and_changes_nothing() -> None:
    units = [unit("a.service", Unit={"Conflicts": ["b.service"]}), unit("b.service"),
             unit("both.target", Unit={"Requires": ["a.service", "b.service"]})]
    eng = core.Engine(units, lambda: 0)
    with pytest.raises(InvalidArgument, match="conflicts"):
        eng.start("both.target")
    assert all(s.job is None and s.state is core.ActiveState.INACTIVE for s in eng.snapshot())


# -- Restart= against each exit, cell by cell against systemd.service(5) ---------------------

# "Table 2. Exit causes and the effect of the Restart= settings", systemd.service(5); rows are
# the exits the issue names: exit 0 and SIGTERM are "clean exit code or signal", exit 1 an
# "unclean exit code", SIGKILL an "unclean signal".
MAN_PAGE = """
                no  always  on-success  on-failure  on-abnormal  on-abort  on-watchdog
exit-0          -   X       X           -           -            -         -
exit-1          -   X       -           X           -            -         -
SIGTERM         -   X       X           -           -            -         -
SIGKILL         -   X       -           X           X            X         -
start-timeout   -   X       -           X           X            -         -
watchdog        -   X       -           X           X            -         X
"""


def _cells() -> list[tuple[str, str, bool]]:
    lines = [ln.split() for ln in MAN_PAGE.strip().splitlines()]
    policies = lines[0]
    return [(row[0], pol, mark == "X") for row in lines[1:] for pol, mark in zip(policies, row[1:], strict=True)]


def _end_a_run(sim: Sim, how: str) -> None:
    name = "svc.service"
    if how == "exit-0":
        sim.crash(name, 0)
    elif how == "exit-1":
        sim.crash(name, 1)
    elif how == "SIGTERM":
        sim.exit(name, ExitKind.SIGNALED, int(signal.SIGTERM))
    elif how == "SIGKILL":
        sim.exit(name, ExitKind.SIGNALED, int(signal.SIGKILL))
    elif how == "start-timeout":
        out = sim.advance(5 * SEC)
        assert sim.killed(out) == [name]
    elif how == "watchdog":
        out = sim.advance(3 * SEC)
        assert sim.killed(out) == [name]


@pytest.mark.parametrize(("how", "policy", "restarts"), _cells())
def test_restart_table_cell(how: str, policy: str, restarts: bool) -> None:
    svc = {"Type": "notify", "Restart": policy, "RestartSec": "100ms", "TimeoutStartSec": "5s"}
    if how == "watchdog":
        svc["WatchdogSec"] = "3s"
    sim = Sim([unit("svc.service", Service=svc)],
              silent={"svc.service"} if how == "start-timeout" else set())
    sim.do(sim.engine.start("svc.service"))
    assert sim.state("svc.service") == ("activating/start" if how == "start-timeout" else "active/running")
    _end_a_run(sim, how)
    expected_result = {"exit-0": "success", "SIGTERM": "success", "exit-1": "exit-code",
                       "SIGKILL": "signal", "start-timeout": "timeout", "watchdog": "watchdog"}[how]
    assert sim.engine.status("svc.service").result.value == expected_result
    if restarts:
        assert sim.state("svc.service") == "activating/auto-restart"
        out = sim.advance(SEC // 10)
        assert sim.started(out) == ["svc.service"]
    else:
        assert sim.state("svc.service") == (
            "inactive/dead" if expected_result == "success" else "failed/failed")
        assert sim.started(sim.advance(60 * SEC)) == []


def test_restart_prevent_exit_status_wins_over_the_table() -> None:
    svc = {"Restart": "always", "RestartPreventExitStatus": [3, "SIGUSR1"]}
    sim = Sim([unit("svc.service", Service=svc)])
    sim.do(sim.engine.start("svc.service"))
    sim.crash("svc.service", 3)
    assert sim.state("svc.service") == "failed/failed"
    sim.do(sim.engine.start("svc.service"))
    sim.exit("svc.service", ExitKind.SIGNALED, int(signal.SIGUSR1))
    assert sim.state("svc.service") == "failed/failed"
    sim.do(sim.engine.start("svc.service"))
    sim.crash("svc.service", 4)
    assert sim.state("svc.service") == "activating/auto-restart"


def test_success_exit_status_counts_as_clean() -> None:
    sim = Sim([unit("svc.service", Service={"Restart": "on-failure", "SuccessExitStatus": [7]})])
    sim.do(sim.engine.start("svc.service"))
    sim.crash("svc.service", 7)
    assert sim.state("svc.service") == "inactive/dead"


def test_an_operator_stop_is_never_restarted() -> None:
    sim = Sim([unit("svc.service", Service={"Restart": "always"})])
    sim.do(sim.engine.start("svc.service"))
    sim.do(sim.engine.stop("svc.service"))
    assert sim.state("svc.service") == "inactive/dead"
    assert sim.started(sim.advance(60 * SEC)) == []
    assert sim.started() == ["svc.service"]  # only the first start


# -- start limits -------------------------------------------------------------------------------


def test_sixth_crash_in_ten_seconds_leaves_the_unit_failed_until_reset_failed() -> None:
    sim = Sim([unit("svc.service", Service={"Restart": "always", "RestartSec": "100ms"})])
    sim.do(sim.engine.start("svc.service"))
    sim.advance(60 * SEC)  # a long healthy run: the first start is out of the window
    for i in range(1, 6):
        sim.crash("svc.service", 1)
        sim.advance(SEC // 10)
        assert sim.state("svc.service") == "active/running", f"crash {i}"
    sim.crash("svc.service", 1)  # the sixth within ten seconds
    sim.advance(SEC // 10)
    st = sim.engine.status("svc.service")
    assert (st.state, st.result.value) == (core.ActiveState.FAILED, "start-limit-hit")
    n = len(sim.started())
    sim.advance(3600 * SEC)
    assert len(sim.started()) == n and sim.state("svc.service") == "failed/failed"
    sim.do(sim.engine.reset_failed("svc.service"))
    assert sim.started(sim.do(sim.engine.start("svc.service"))) == ["svc.service"]


def test_a_manual_start_inside_the_window_is_refused_until_reset_failed() -> None:
    sim = Sim([unit("svc.service", Service={"Restart": "always", "RestartSec": "100ms"})])
    sim.do(sim.engine.start("svc.service"))
    for _ in range(4):  # the initial start and four restarts: five starts
        sim.crash("svc.service", 1)
        sim.advance(SEC // 10)
    sim.crash("svc.service", 1)
    sim.advance(SEC // 10)
    assert sim.engine.status("svc.service").result.value == "start-limit-hit"
    n = len(sim.started())
    out = sim.do(sim.engine.start("svc.service"))
    assert sim.started(out) == [] and sim.jobs(out) == {"svc.service": "failed"}
    assert sim.state("svc.service") == "failed/failed"
    sim.do(sim.engine.reset_failed("svc.service"))
    assert sim.state("svc.service") == "inactive/dead"
    assert sim.engine.status("svc.service").starts_in_window == 0
    out = sim.do(sim.engine.start("svc.service"))
    assert sim.started(out) == ["svc.service"] and len(sim.started()) == n + 1
    assert sim.state("svc.service") == "active/running"


# -- readiness and watchdog ------------------------------------------------------------------------


def test_a_missing_ready_call_times_out() -> None:
    svc = {"Type": "notify", "TimeoutStartSec": "5s", "Restart": "no"}
    sim = Sim([unit("svc.service", Service=svc),
               unit("dep.service", Unit={"Requires": ["svc.service"], "After": ["svc.service"]})],
              silent={"svc.service"})
    sim.do(sim.engine.start("dep.service"))
    assert sim.killed(sim.advance(5 * SEC - 1)) == []
    assert sim.state("svc.service") == "activating/start"
    out = sim.advance(1)
    assert sim.killed(out) == ["svc.service"]
    st = sim.engine.status("svc.service")
    assert (st.state, st.result.value) == (core.ActiveState.FAILED, "timeout")
    assert sim.jobs()["dep.service"] == "dependency" and "dep.service" not in sim.started()


def test_a_late_ready_call_after_the_kill_changes_nothing() -> None:
    sim = Sim([unit("svc.service", Service={"Type": "notify", "TimeoutStartSec": "1s"})],
              silent={"svc.service"}, stubborn={"svc.service"})
    sim.do(sim.engine.start("svc.service"))
    sim.alive.add("svc.service")
    eng = sim.engine
    eng.handle(core.TimerFired("svc.service", core.TimerKind.START_TIMEOUT, sim.timers[0][1]))
    assert eng.handle(core.Ready("svc.service")) == []
    assert eng.state("svc.service") is core.ActiveState.DEACTIVATING


def test_a_silent_watchdog_gets_a_kill_and_a_restart() -> None:
    svc = {"Type": "notify", "WatchdogSec": "2s", "Restart": "on-failure", "RestartSec": "500ms"}
    sim = Sim([unit("svc.service", Service=svc)])
    sim.do(sim.engine.start("svc.service"))
    for _ in range(10):  # petted every second: never killed
        assert sim.killed(sim.advance(SEC)) == []
        sim.pet("svc.service")
    out = sim.advance(2 * SEC)  # silent
    assert sim.killed(out) == ["svc.service"]
    assert sim.engine.status("svc.service").result.value == "watchdog"
    out = sim.advance(SEC // 2)
    assert sim.started(out) == ["svc.service"]
    assert sim.state("svc.service") == "active/running"
    assert sim.engine.status("svc.service").restarts == 1


def test_a_stubborn_unit_is_killed_after_the_stop_timeout() -> None:
    sim = Sim([unit("svc.service", Service={"TimeoutStopSec": "3s"})], stubborn={"svc.service"})
    sim.do(sim.engine.start("svc.service"))
    sim.do(sim.engine.stop("svc.service"))
    assert sim.state("svc.service") == "deactivating/stop"
    out = sim.advance(3 * SEC)
    assert sim.killed(out) == ["svc.service"]
    assert sim.state("svc.service") == "failed/failed"
    assert sim.engine.status("svc.service").result.value == "timeout"


def test_restart_delay_grows_over_restart_steps() -> None:
    svc = {"Restart": "always", "RestartSec": "1s", "RestartSteps": 3, "RestartMaxDelaySec": "8s"}
    u = unit("svc.service", Service=svc)
    assert [u.restart_delay_ns(n) // 10**6 for n in range(6)] == [1000, 2000, 4000, 8000, 8000, 8000]
    sim = Sim([unit("svc.service", Unit={"StartLimitBurst": 0}, Service=svc)])
    sim.do(sim.engine.start("svc.service"))
    for want in (1000, 2000, 4000, 8000):
        out = sim.crash("svc.service", 1)
        arm = next(a for a in out if isinstance(a, core.ArmTimer) and a.timer is core.TimerKind.RESTART)
        assert (arm.at_ns - sim.now) // 10**6 == want
        sim.advance(arm.at_ns - sim.now)


# -- bad events change nothing ---------------------------------------------------------------------


def test_events_that_make_no_sense_raise_and_change_nothing() -> None:
    eng = core.Engine([unit("svc.service")], lambda: 0)
    before = eng.snapshot()
    with pytest.raises(IllegalTransition):
        eng.handle(core.Exited("svc.service", ExitKind.EXITED, 0))
    with pytest.raises(IllegalTransition):
        eng.handle(core.Started("svc.service"))
    with pytest.raises(NoSuchObject):
        eng.handle(core.Ready("nope.service"))
    with pytest.raises(NoSuchObject):
        eng.start("nope.service")
    assert eng.snapshot() == before
    assert eng.handle(core.Pet("svc.service")) == [] and eng.handle(core.Ready("svc.service")) == []


def test_a_stale_timer_is_ignored() -> None:
    sim = Sim([unit("svc.service", Service={"Type": "notify", "WatchdogSec": "2s"})])
    sim.do(sim.engine.start("svc.service"))
    stale = sim.timers[-1]
    sim.pet("svc.service")  # re-arms: the first token is now stale
    assert sim.engine.handle(core.TimerFired("svc.service", stale[3], stale[1])) == []
    assert sim.state("svc.service") == "active/running"


# -- the boot sequence (whitepaper 4.1) over the shipped units ------------------------------------


def test_boot_reaches_the_whitepaper_targets_in_order_with_services_in_parallel() -> None:
    eng = core.Engine(shipped_units(), lambda: 0)
    first = eng.boot()
    assert [a.unit.name for a in first if isinstance(a, core.StartUnit)] == [
        "identityd.service", "memoryd.service"]  # independent: together
    reached: list[str] = []
    pending = list(first)
    while pending:
        act = pending.pop(0)
        if isinstance(act, core.Changed) and act.state is core.ActiveState.ACTIVE and act.unit.endswith(".target"):
            reached.append(act.unit)
        if isinstance(act, core.StartUnit):
            pending += eng.handle(core.Started(act.unit.name))
            pending += eng.handle(core.Ready(act.unit.name))
    assert reached == list(core.BOOT_TARGETS)
    assert all(s.state is core.ActiveState.ACTIVE for s in eng.snapshot())


def test_boot_start_order_of_shipped_services() -> None:
    sim = Sim(shipped_units())
    sim.do(sim.engine.boot())
    order = sim.started()
    assert order.index("semantic-ipcd.service") > order.index("memoryd.service")
    assert order[-1] == "agentsupervisor.service"
    sim.do(sim.engine.shutdown())
    assert sim.stopped()[0] == "agentsupervisor.service"
    assert sim.stopped().index("semantic-ipcd.service") < sim.stopped().index("memoryd.service")


# -- random sequences: the engine never wedges ---------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_random_commands_and_crashes_always_settle(seed: int) -> None:
    rng = random.Random(seed)
    units = [
        *shipped_units(),
        unit("x.service", Unit={"Conflicts": ["y.service"], "PartOf": ["memoryd.service"]},
             Service={"Restart": rng.choice(["no", "always", "on-failure"]), "WatchdogSec": 5,
                      "Type": "notify"}),
        unit("y.service", Unit={"After": ["identityd.service"]}, Service={"Restart": "on-abort"}),
    ]  # fmt: skip
    sim = Sim(units, silent={"x.service"} if seed % 3 == 0 else set())
    names = sim.engine.units()
    sim.do(sim.engine.boot())
    for _ in range(150):
        r = rng.random()
        name = rng.choice(names)
        if r < 0.15:
            try:
                sim.do(sim.engine.start(name))
            except InvalidArgument:
                pass  # a conflict inside the transaction: refused, nothing changed
        elif r < 0.25:
            sim.do(sim.engine.stop(name))
        elif r < 0.32:
            sim.do(sim.engine.restart(name))
        elif r < 0.36:
            sim.do(sim.engine.reset_failed(name))
        elif r < 0.6 and sim.alive:
            victim = rng.choice(sorted(sim.alive))
            st = sim.engine.status(victim)
            if st.state in (core.ActiveState.ACTIVE, core.ActiveState.ACTIVATING):
                sim.exit(victim, rng.choice([ExitKind.EXITED, ExitKind.SIGNALED]), rng.choice([0, 1, 9, 15]))
        else:
            sim.advance(rng.choice([SEC // 10, SEC, 10 * SEC]))
        for st in sim.engine.snapshot():  # an agent exists exactly when the engine thinks so
            running = sim.engine._runs[st.name].running
            assert running == (st.name in sim.alive), st
        assert not (sim.alive & {"x.service"} and sim.alive & {"y.service"}
                    and sim.engine.state("x.service") is core.ActiveState.ACTIVE
                    and sim.engine.state("y.service") is core.ActiveState.ACTIVE)
    sim.advance(120 * SEC)
    sim.do(sim.engine.shutdown())
    sim.advance(120 * SEC)
    assert sim.alive == set()
    for st in sim.engine.snapshot():
        assert st.state in (core.ActiveState.INACTIVE, core.ActiveState.FAILED), st
        assert st.job is None, st
