"""Workflow definitions: one format from Python, JSON and TOML; checked before
they run, including that every reference is guaranteed a value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.orchestration.workflow import (
    approval,
    branch,
    evaluate,
    load,
    loop,
    par,
    parse,
    resolve,
    seq,
    task,
    when,
    workflow,
)

REVIEW = workflow("review", seq(
    "main",
    par("gather", task("a", "search", {"q": "${input.topic} history"}),
        task("b", "search", {"q": "${input.topic} today"}, retries=2, backoff_s=1)),
    task("draft", "write", {"notes": ["${a}", "${b.text}"]}, timeout_s=30),
    branch("route", (when("${draft.score}", ">=", 0.8), task("publish", "post", {"x": "${draft}"})),
           otherwise=loop("refine", task("fix", "write", {"round": "${iteration}"}),
                          until=when("${fix.score}", ">=", 0.8), max_iterations=3)),
    approval("ok", "Ship it?", timeout_s=3600),
), output={"route": "${route}", "draft": "${draft}"})

TOML = '''
name = "review"
output = { route = "${route}", draft = "${draft}" }

[root]
kind = "sequence"
id = "main"

[[root.steps]]
kind = "parallel"
id = "gather"

[[root.steps.branches]]
kind = "task"
id = "a"
run = "search"
args = { q = "${input.topic} history" }

[[root.steps.branches]]
kind = "task"
id = "b"
run = "search"
args = { q = "${input.topic} today" }
retries = 2
backoff_s = 1

[[root.steps]]
kind = "task"
id = "draft"
run = "write"
args = { notes = ["${a}", "${b.text}"] }
timeout_s = 30

[[root.steps]]
kind = "branch"
id = "route"

[[root.steps.when]]
if = { ref = "${draft.score}", op = ">=", value = 0.8 }
then = { kind = "task", id = "publish", run = "post", args = { x = "${draft}" } }

[root.steps.else]
kind = "loop"
id = "refine"
until = { ref = "${fix.score}", op = ">=", value = 0.8 }
max_iterations = 3
body = { kind = "task", id = "fix", run = "write", args = { round = "${iteration}" } }

[[root.steps]]
kind = "approval"
id = "ok"
prompt = "Ship it?"
timeout_s = 3600
'''


def test_python_json_and_toml_give_the_same_workflow(tmp_path: Path) -> None:
    a = parse(REVIEW)
    (tmp_path / "w.json").write_text(json.dumps(REVIEW))
    (tmp_path / "w.toml").write_text(TOML)
    b, c = load(tmp_path / "w.json"), load(tmp_path / "w.toml")
    assert a.digest == b.digest == c.digest
    assert set(a.nodes()) == {"main", "gather", "a", "b", "draft", "route", "publish", "refine",
                              "fix", "ok"}
    assert a.nodes()["b"].retries == 2 and a.nodes()["refine"].max_iterations == 3
    with pytest.raises(NoSuchObject):
        load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("name = ")
    with pytest.raises(InvalidArgument):
        load(tmp_path / "bad.toml")


def bad(root: dict[str, Any], output: Any = None) -> str:
    with pytest.raises(InvalidArgument) as ei:
        parse(workflow("w", root, output))
    return str(ei.value)


def test_malformed_definitions_are_refused_with_the_node_named() -> None:
    assert "kind must be" in bad({"kind": "teleport", "id": "x"})
    assert "used twice" in bad(seq("s", task("x", "h"), task("x", "h")))
    assert "max_iterations" in bad({"kind": "loop", "id": "l", "body": task("t", "h"),
                                    "until": when("${t}", "truthy")})
    assert "bounded" in bad(loop("l", task("t", "h"), until=when("${t}", "truthy"),
                                 max_iterations=0))
    assert "unknown field" in bad(dict(task("t", "h"), retry=3))
    assert "op must be" in bad(branch("b", ({"ref": "${input.x}", "op": "~"}, task("t", "h"))))
    assert "retries" in bad(task("t", "h", retries=1000))
    assert "names the handler" in bad({"kind": "task", "id": "t"})
    assert "prompt" in bad({"kind": "approval", "id": "a", "prompt": ""})
    assert "non-empty list" in bad({"kind": "parallel", "id": "p", "branches": []})
    assert "must match" in bad(task("input", "h"))
    with pytest.raises(InvalidArgument):
        parse({"name": "w"})


def test_references_must_be_guaranteed_a_value() -> None:
    # a parallel branch cannot see its sibling
    msg = bad(par("p", task("a", "h"), task("b", "h", {"x": "${a}"})))
    assert "node 'b'" in msg and "'a'" in msg
    # a later step cannot see inside a branch's arms, only the branch itself
    arms = branch("br", (when("${input.x}", "truthy"), task("yes", "h")),
                  otherwise=task("no", "h"))
    assert "'yes'" in bad(seq("s", arms, task("after", "h", {"v": "${yes}"})))
    parse(workflow("w", seq("s", arms, task("after", "h", {"v": "${br}"}))))
    # nor refer forwards, nor use ${iteration} outside a loop
    assert "'later'" in bad(seq("s", task("first", "h", {"v": "${later}"}), task("later", "h")))
    assert "outside a loop" in bad(task("t", "h", {"i": "${iteration}"}))
    # a loop's exit condition may use what its body always produces
    assert "until" in bad(loop("l", task("t", "h"), until=when("${zzz}", "truthy"),
                               max_iterations=2))
    # the output may only use what always finished
    assert "output" in bad(seq("s", arms), output="${no}")


def test_values_and_conditions() -> None:
    scope = {"input": {"topic": "kernels"}, "draft": {"score": 0.9, "tags": ["a", "b"]},
             "n": 3}
    assert resolve("${draft.tags.1}", scope) == "b"
    assert resolve({"x": ["${n}", "${input.topic} now"]}, scope) == {"x": [3, "kernels now"]}
    assert resolve("score ${draft}", scope) == 'score {"score": 0.9, "tags": ["a", "b"]}'
    with pytest.raises(InvalidArgument):
        resolve("${draft.nope}", scope)
    assert evaluate(when("${draft.score}", ">=", 0.8), scope)
    assert evaluate({"all": [when("${n}", "in", [1, 3]), {"not": when("${n}", "==", 4)}]},
                    scope)
    assert evaluate({"any": [when("${missing}", "exists"), when("${n}", "truthy")]}, scope)
    with pytest.raises(InvalidArgument):
        evaluate(when("${input.topic}", "<", 3), scope)
