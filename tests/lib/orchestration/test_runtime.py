"""The workflow runtime core, driven by hand: the expected traces of fan-out/in,
branches and bounded loops; retries then surfacing; timeouts; approvals;
cancellation; checkpoints and resume from any point."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.abi.errors import (
    Cancelled,
    DeviceError,
    IllegalTransition,
    InvalidArgument,
    NoSuchObject,
    QuotaExceeded,
    TimedOut,
    Vetoed,
)
from aios.lib.orchestration.runtime import (
    NS,
    ArmTimer,
    CancelTask,
    StartTask,
    Status,
    WorkflowRun,
)
from aios.lib.orchestration.workflow import (
    approval,
    branch,
    loop,
    par,
    parse,
    seq,
    task,
    when,
    workflow,
)

from .sim import HANG, Sim


def echo(args: dict[str, Any]) -> Any:
    return {k: v for k, v in args.items() if not k.startswith("_")}


def sim(root: dict[str, Any], handlers: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None, output: Any = None) -> Sim:
    wf = parse(workflow("w", root, output))
    return Sim(WorkflowRun(wf, inputs), {"echo": echo, **(handlers or {})}).start()


def test_a_sequence_runs_in_order() -> None:
    s = sim(seq("s", task("a", "echo", {"v": 1}), task("b", "echo", {"prev": "${a.v}"})))
    assert [c.key for c in s.pending] == ["a"]
    fin = s.run_to_end()
    assert fin is not None and fin.status is Status.DONE and fin.output == {"prev": 1}
    assert s.kinds() == [("workflow.started", "w"), ("task.started", "a"),
                         ("task.finished", "a"), ("task.started", "b"),
                         ("task.finished", "b"), ("workflow.finished", "w")]


def test_fan_out_fan_in_trace() -> None:
    s = sim(seq("s", task("plan", "echo", {"topic": "x"}),
                par("fan", task("a", "echo", {"n": 1}), task("b", "echo", {"n": 2}),
                    task("c", "echo", {"n": 3})),
                task("join", "echo", {"all": ["${a.n}", "${b.n}", "${c.n}"]})))
    s.complete("plan")
    assert [c.key for c in s.pending] == ["a", "b", "c"]  # all three at once
    s.complete("c")
    s.complete("a")
    assert [c.key for c in s.pending] == ["b"]  # join waits for the last one
    s.complete("b")
    s.run_to_end()
    assert s.finish is not None and s.finish.output == {"all": [1, 2, 3]}
    assert s.kinds() == [
        ("workflow.started", "w"), ("task.started", "plan"), ("task.finished", "plan"),
        ("parallel.fanout", "fan"), ("task.started", "a"), ("task.started", "b"),
        ("task.started", "c"), ("task.finished", "c"), ("task.finished", "a"),
        ("task.finished", "b"), ("parallel.joined", "fan"), ("task.started", "join"),
        ("task.finished", "join"), ("workflow.finished", "w")]
    assert s.run.latest["fan"] == {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}


@pytest.mark.parametrize(("score", "path"), [(0.9, "publish"), (0.5, "revise"),
                                             (0.1, "discard")])
def test_conditional_branch_trace(score: float, path: str) -> None:
    root = seq("s", task("grade", "echo", {"score": "${input.score}"}),
               branch("route", (when("${grade.score}", ">=", 0.8), task("publish", "echo")),
                      (when("${grade.score}", ">=", 0.4), task("revise", "echo")),
                      otherwise=task("discard", "echo")))
    s = sim(root, inputs={"score": score})
    s.run_to_end()
    case = {"publish": 0, "revise": 1, "discard": "else"}[path]
    assert s.kinds() == [("workflow.started", "w"), ("task.started", "grade"),
                         ("task.finished", "grade"), ("branch.chosen", "route"),
                         ("task.started", path), ("task.finished", path),
                         ("workflow.finished", "w")]
    assert s.run.trace[3].data["case"] == case


def test_bounded_loop_trace() -> None:
    scores = iter([0.2, 0.5, 0.9, 1.0])

    def improve(args: dict[str, Any]) -> Any:
        return {"round": args["round"], "score": next(scores)}

    root = loop("refine", task("draft", "improve", {"round": "${iteration}"}),
                until=when("${draft.score}", ">=", 0.8), max_iterations=5)
    s = sim(root, {"improve": improve})
    fin = s.run_to_end()
    assert fin is not None and fin.output == {"round": 2, "score": 0.9}
    assert s.kinds() == [
        ("workflow.started", "w"),
        ("loop.iteration", "refine"), ("task.started", "refine[0]/draft"),
        ("task.finished", "refine[0]/draft"),
        ("loop.iteration", "refine"), ("task.started", "refine[1]/draft"),
        ("task.finished", "refine[1]/draft"),
        ("loop.iteration", "refine"), ("task.started", "refine[2]/draft"),
        ("task.finished", "refine[2]/draft"),
        ("loop.exited", "refine"), ("workflow.finished", "w")]


def test_a_loop_that_never_meets_its_condition_is_bounded() -> None:
    root = loop("l", task("t", "echo", {"i": "${iteration}"}), until=when("${t.i}", ">", 99),
                max_iterations=3)
    s = sim(root)
    fin = s.run_to_end()
    assert fin is not None and fin.status is Status.FAILED
    assert isinstance(fin.error, QuotaExceeded) and "3 iterations" in fin.error.message
    assert [k for k, _ in s.started] == ["l[0]/t", "l[1]/t", "l[2]/t"]
    s2 = sim(dict(root, on_exhausted="exit"))
    fin2 = s2.run_to_end()
    assert fin2 is not None and fin2.status is Status.DONE and fin2.output == {"i": 2}


def flaky(failures: int) -> Any:
    def run(args: dict[str, Any]) -> Any:
        if args["_attempt"] <= failures:
            raise DeviceError(f"attempt {args['_attempt']} hit a flaky device")
        return {"ok": args["_attempt"]}

    return run


def test_a_failing_step_is_retried_with_backoff_then_succeeds() -> None:
    s = sim(task("t", "flaky", retries=3, backoff_s=1.5), {"flaky": flaky(2)})
    fin = s.run_to_end()
    assert fin is not None and fin.status is Status.DONE and fin.output == {"ok": 3}
    retries = [c for c in s.commands if isinstance(c, ArmTimer) and c.purpose == "retry"]
    assert [c.delay_ns for c in retries] == [int(1.5 * NS), int(3 * NS)]  # doubling backoff
    assert s.kinds().count(("task.failed", "t")) == 2
    assert s.kinds().count(("task.retrying", "t")) == 2
    assert s.started == [("t", 1), ("t", 2), ("t", 3)]


def test_a_step_failing_every_attempt_is_surfaced() -> None:
    s = sim(seq("s", task("t", "flaky", retries=1), task("after", "echo")),
            {"flaky": flaky(10)})
    fin = s.run_to_end()
    assert fin is not None and fin.status is Status.FAILED
    assert isinstance(fin.error, DeviceError)  # the class is kept
    assert fin.error.message == ("task 't' failed after 2 attempts: attempt 2 hit a flaky "
                                 "device")
    assert s.started == [("t", 1), ("t", 2)]  # "after" never ran
    assert s.kinds()[-3:] == [("task.surfaced", "t"), ("sequence.failed", "s"),
                              ("workflow.failed", "w")]


def test_a_timeout_cancels_the_attempt_and_retries_and_stale_results_are_ignored() -> None:
    def slow(args: dict[str, Any]) -> Any:
        return HANG if args["_attempt"] == 1 else {"attempt": args["_attempt"]}

    s = sim(task("t", "slow", retries=1, timeout_s=5), {"slow": slow})
    s.complete()  # attempt 1 hangs
    s.fire_next_timer()  # 5 s later: timed out
    assert CancelTask("t", 1) in s.commands
    assert s.started == [("t", 1), ("t", 2)]
    assert s.run.task_done("t", 1, {"late": True}) == []  # the old attempt's answer: ignored
    fin = s.run_to_end()
    assert fin is not None and fin.output == {"attempt": 2}
    assert ("task.timed_out", "t") in s.kinds()
    # without retries the timeout surfaces
    s2 = sim(task("t", "slow", timeout_s=5), {"slow": slow})
    s2.complete()
    s2.fire_next_timer()
    assert s2.finish is not None and isinstance(s2.finish.error, TimedOut)


def test_a_failing_branch_of_a_parallel_cancels_its_siblings() -> None:
    s = sim(par("p", task("a", "echo"), task("b", "bad"), task("c", "echo")),
            {"bad": flaky(9)})
    s.complete("b")
    assert s.finish is not None and s.finish.status is Status.FAILED
    assert sorted(s.cancelled) == [("a", 1), ("c", 1)]
    assert s.run.running_tasks == []


def test_approvals_approve_reject_and_time_out() -> None:
    root = seq("s", task("draft", "echo", {"t": 1}), approval("ok", "Publish the draft?"),
               task("post", "echo", {"by": "${ok.by}"}))
    s = sim(root)
    s.run_to_end()
    assert s.approvals == ["ok"] and s.finish is None
    assert s.run.pending_approvals == {"ok": "Publish the draft?"}
    with pytest.raises(NoSuchObject):
        s.run.approve("nope", True)
    s.apply(s.run.approve("ok", True, by="alice"))
    fin = s.run_to_end()
    assert fin is not None and fin.output == {"by": "alice"}
    r = sim(root)
    r.run_to_end()
    r.apply(r.run.approve("ok", False, by="bob", note="not yet"))
    assert r.finish is not None and isinstance(r.finish.error, Vetoed)
    assert "rejected by bob: not yet" in r.finish.error.message
    t = sim(seq("s", approval("ok", "Go?", timeout_s=60), task("x", "echo")))
    t.run_to_end()
    assert t.finish is not None and isinstance(t.finish.error, TimedOut)


def test_cancellation_stops_every_running_step() -> None:
    s = sim(seq("s", par("p", task("a", "echo"), task("b", "echo"),
                         seq("inner", task("c", "echo"), approval("ok", "?"))),
                task("z", "echo")))
    s.complete("c")
    assert sorted(s.run.running_tasks) == ["a", "b"] and s.approvals == ["ok"]
    cmds = s.run.cancel("user asked")
    s.apply(cmds)
    assert sorted(s.cancelled) == [("a", 1), ("b", 1)] and s.approvals == []
    assert s.finish is not None and s.finish.status is Status.CANCELLED
    assert isinstance(s.finish.error, Cancelled)
    assert s.run.running_tasks == [] and s.run.cancel() == []
    assert s.run.task_done("a", 1, {}) == []  # too late
    assert s.checkpoints[-1]["status"] == "cancelled"


def test_bad_outputs_and_arguments_fail_the_step() -> None:
    s = sim(task("t", "weird"), {"weird": lambda a: {"x": object()}})
    s.run_to_end()
    assert s.finish is not None and "not plain data" in str(s.finish.error)
    s2 = sim(seq("s", task("a", "echo", {"v": [1]}), task("b", "echo", {"x": "${a.v.5}"})))
    s2.run_to_end()
    assert s2.finish is not None and isinstance(s2.finish.error, InvalidArgument)


# -- checkpoints and resume -------------------------------------------------------------------

BIG = workflow("big", seq(
    "main",
    task("plan", "echo", {"topic": "${input.topic}"}),
    par("gather", task("a", "count", {"q": "a"}), task("b", "count", {"q": "b"}, retries=2),
        seq("cseq", task("c1", "count", {"q": "c"}), task("c2", "count", {"q": "${c1.n}"}))),
    loop("refine", seq("round", task("draft", "count", {"r": "${iteration}"}),
                       task("grade", "grade", {"d": "${draft.n}", "i": "${iteration}"})),
         until=when("${grade.ok}", "truthy"), max_iterations=6),
    branch("route", (when("${grade.n}", ">", 3), task("publish", "count", {"x": 1})),
           otherwise=task("hold", "count", {"x": 2})),
    approval("sign", "Sign it?"),
    task("final", "count", {"all": ["${gather}", "${route}", "${sign.by}"]}),
), output={"final": "${final}", "plan": "${plan}"})


class World:
    """Handlers whose results depend only on their key (so a rerun gives the same),
    counting how often each key really ran."""

    def __init__(self) -> None:
        self.ran: dict[str, int] = {}

    def count(self, args: dict[str, Any]) -> Any:
        key = args["_key"]
        self.ran[key] = self.ran.get(key, 0) + 1
        return {"n": sum(map(ord, key)) % 7, "key": key}

    def grade(self, args: dict[str, Any]) -> Any:
        self.count(args)
        return {"ok": args["i"] >= 2, "n": args["d"] + args["i"]}

    def handlers(self) -> dict[str, Any]:
        return {"count": self.count, "grade": self.grade}


def run_all(s: Sim) -> Any:
    while s.finish is None:
        s.run_to_end()
        if s.finish is None and s.approvals:
            s.apply(s.run.approve(s.approvals[0], True, by="carol"))
        elif s.finish is None:
            break
    return s.finish


def test_resume_from_a_checkpoint_skips_what_finished() -> None:
    wf = parse(BIG)
    whole = World()
    ref = run_all(Sim(WorkflowRun(wf, {"topic": "t"}), {"echo": echo, **whole.handlers()})
                  .start())
    assert ref.status is Status.DONE
    # crash after the first checkpoint that has the loop going
    w1 = World()
    s = Sim(WorkflowRun(wf, {"topic": "t"}), {"echo": echo, **w1.handlers()}).start()
    while not any(k.startswith("refine[1]/") for k in (s.checkpoints[-1]["results"]
                                                       if s.checkpoints else {})):
        s.complete()
    state = msgpack.unpackb(msgpack.packb(s.checkpoints[-1]), raw=False)  # as the journal
    done = set(state["results"])
    w2 = World()
    r = Sim(WorkflowRun(wf, {"topic": "t"}, checkpoint=state),
            {"echo": echo, **w2.handlers()}).start()
    fin = run_all(r)
    assert fin.status is Status.DONE and fin.output == ref.output
    assert not (set(w2.ran) & done)  # nothing that had finished ran again
    assert set(w1.ran) | set(w2.ran) == set(whole.ran)
    restored = [k for kind, k in r.kinds() if kind == "task.restored"]
    assert sorted(restored) == sorted(k for k in done if k != "sign")


def test_resume_checks_the_definition_inputs_and_status() -> None:
    wf = parse(BIG)
    s = Sim(WorkflowRun(wf, {"topic": "t"}), {"echo": echo, **World().handlers()}).start()
    s.complete()
    st = s.checkpoints[-1]
    other = parse(dict(BIG, output={"x": "${plan}"}))
    with pytest.raises(InvalidArgument):
        WorkflowRun(other, {"topic": "t"}, checkpoint=st)
    with pytest.raises(InvalidArgument):
        WorkflowRun(wf, {"topic": "other"}, checkpoint=st)
    with pytest.raises(IllegalTransition):
        WorkflowRun(wf, {"topic": "t"}, checkpoint=dict(st, status="failed"))
    with pytest.raises(InvalidArgument):
        WorkflowRun(wf, {"topic": "t"}, checkpoint={"format": "x"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), crashes=st.integers(1, 4))
def test_crashes_at_random_points_change_nothing_but_time(seed: int, crashes: int) -> None:
    """Run, crash at random points (keep only the last checkpoint), resume, repeat:
    the outcome equals the uninterrupted run's, and a task recorded as finished in a
    checkpoint never runs again."""
    wf = parse(BIG)
    rng = random.Random(seed)
    ref = run_all(Sim(WorkflowRun(wf, {"topic": "t"}), {"echo": echo, **World().handlers()})
                  .start())
    state: dict[str, Any] | None = None
    ran_after: dict[str, int] = {}
    fin = None
    for round_ in range(crashes + 1):
        w = World()
        s = Sim(WorkflowRun(wf, {"topic": "t"}, checkpoint=state),
                {"echo": echo, **w.handlers()}).start()
        finished_before = set(state["results"]) if state else set()
        for _ in range(rng.randint(0, 12) if round_ < crashes else 10_000):
            if s.finish is not None:
                break
            if s.pending:
                s.complete(rng.choice(list(s.pending)).key)  # any order the world allows
            elif s.approvals:
                s.apply(s.run.approve(s.approvals[0], True, by="carol"))
        assert not (set(w.ran) & finished_before)
        for k, n in w.ran.items():
            ran_after[k] = ran_after.get(k, 0) + n
        fin = s.finish
        if fin is not None:
            break
        if s.checkpoints:
            state = msgpack.unpackb(msgpack.packb(s.checkpoints[-1]), raw=False)
    if fin is None:
        fin = run_all(Sim(WorkflowRun(wf, {"topic": "t"}, checkpoint=state),
                          {"echo": echo, **World().handlers()}).start())
    assert fin.status is Status.DONE and fin.output == ref.output


def test_a_started_task_command_carries_resolved_arguments() -> None:
    s = sim(seq("s", task("a", "echo", {"v": {"deep": [1, 2]}}),
                task("b", "echo", {"x": "${a.v.deep.1}", "t": "got ${a.v}"})))
    s.complete()
    start = s.pending[0]
    assert isinstance(start, StartTask) and start.args == {"x": 2, "t": 'got {"deep": [1, 2]}'}
