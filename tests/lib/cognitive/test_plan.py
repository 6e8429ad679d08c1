"""Plans: schema, parsing, validation (each failure names its step), substitution,
levels and explain; the HTN planner's decompositions."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from aios.abi.errors import InvalidArgument, NoSuchObject, PermissionDenied, QuotaExceeded
from aios.lib.cognitive.htn import Call, HtnPlanner, Method, Out, Task
from aios.lib.cognitive.plan import (
    Catalogue,
    Plan,
    SkillSpec,
    Step,
    check,
    explain,
    levels,
    parse_plan,
    plan_schema,
    substitute,
    validate,
)
from aios.lib.cognitive.recipes import COMBINE, combine, lookup_methods, split_items

from .domain import ALL, CATALOGUE, htn

GOOD: dict[str, Any] = {
    "steps": [
        {"id": 1, "skill": "kb_lookup", "args": {"entity": "Paris", "attribute": "population"},
         "deps": []},
        {"id": 2, "skill": "kb_lookup", "args": {"entity": "Rome", "attribute": "population"},
         "deps": []},
        {"id": 3, "skill": "combine", "args": {"values": ["$1", "$2"], "op": "sum"}, "deps": []},
    ],
    "answer": "$3",
}


def plan_of(obj: dict[str, Any]) -> Plan:
    return parse_plan(obj, "total population of Paris and Rome", "model")


def issues(obj: dict[str, Any], held: frozenset[str] | None = ALL,
           budget: int | None = None) -> list[tuple[int | None, str, str]]:
    return [(i.step, i.kind, i.message) for i in check(plan_of(obj), CATALOGUE, held, budget)]


def with_steps(*steps: dict[str, Any], answer: str = "$3") -> dict[str, Any]:
    return {"steps": list(steps), "answer": answer}


def test_a_good_plan_satisfies_its_schema_and_validates_normalised() -> None:
    jsonschema.validate(GOOD, plan_schema(CATALOGUE))
    p = validate(plan_of(GOOD), CATALOGUE, ALL, budget=1000)
    assert p.step(3).deps == (1, 2)  # deps include every $N reference
    assert levels(p) == [[1, 2], [3]]


def test_the_schema_admits_references_where_values_go() -> None:
    schema = plan_schema(CATALOGUE)
    ok = with_steps({"id": 1, "skill": "combine", "args": {"values": ["$2"], "op": "$9"},
                     "deps": []})
    jsonschema.validate(ok, schema)
    bad = with_steps({"id": 1, "skill": "teleport", "args": {}, "deps": []})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_cycle_is_rejected_naming_its_steps() -> None:
    obj = with_steps(
        {"id": 1, "skill": "kb_lookup", "args": {"entity": "Paris", "attribute": "$3"},
         "deps": []},
        {"id": 2, "skill": "kb_lookup", "args": {"entity": "Rome", "attribute": "x"},
         "deps": [1]},
        {"id": 3, "skill": "combine", "args": {"values": ["$2"], "op": "sum"}, "deps": []})
    found = issues(obj)
    assert [k for _, k, _ in found] == ["cycle"]
    assert "1 -> 3 -> 2 -> 1" in found[0][2] or "steps" in found[0][2]
    with pytest.raises(InvalidArgument) as ei:
        validate(plan_of(obj), CATALOGUE, ALL)
    assert "cycle" in str(ei.value)


@pytest.mark.parametrize(("step", "kind", "words"), [
    ({"id": 3, "skill": "teleport", "args": {}, "deps": []}, "unknown_skill", "no skill"),
    ({"id": 3, "skill": "combine", "args": {"values": ["$7"], "op": "sum"}, "deps": []},
     "unknown_ref", "$7"),
    ({"id": 3, "skill": "combine", "args": {"values": ["$3"], "op": "sum"}, "deps": []},
     "self_ref", "own result"),
    ({"id": 3, "skill": "combine", "args": {"values": ["$1"], "op": "sum"}, "deps": [9]},
     "unknown_dep", "step 9"),
    ({"id": 3, "skill": "combine", "args": {"values": ["$1"]}, "deps": []},
     "bad_args", "'op' is a required property"),
    ({"id": 3, "skill": "combine", "args": {"values": ["$1"], "op": "cube"}, "deps": []},
     "bad_args", "'cube' is not one of"),
    ({"id": 1, "skill": "combine", "args": {"values": ["$2"], "op": "sum"}, "deps": []},
     "duplicate_id", "twice"),
])
def test_each_problem_names_its_step(step: dict[str, Any], kind: str, words: str) -> None:
    obj = with_steps(GOOD["steps"][0], GOOD["steps"][1], step)
    found = issues(obj)
    assert any(k == kind and s == step["id"] and words in m and f"step {step['id']}" in m
               for s, k, m in found), found


def test_capabilities_not_held_are_refused_naming_step_and_capability() -> None:
    obj = with_steps(
        {"id": 1, "skill": "web_search", "args": {"entity": "Paris", "attribute": "population"},
         "deps": []},
        GOOD["steps"][1], GOOD["steps"][2])
    found = issues(obj, held=frozenset({"kb.read"}))
    assert found == [(1, "capability", "plan step 1 (web_search): needs capability net, "
                                       "not held")]
    with pytest.raises(PermissionDenied):
        validate(plan_of(obj), CATALOGUE, frozenset({"kb.read"}))


def test_a_plan_over_budget_names_the_step_that_crosses_it() -> None:
    assert issues(GOOD, budget=240) == []  # two lookups at 120 each, combine free
    found = issues(GOOD, budget=200)
    assert [(s, k) for s, k, _ in found] == [(2, "budget")]
    assert "240" in found[0][2] and "200" in found[0][2]
    with pytest.raises(QuotaExceeded):
        validate(plan_of(GOOD), CATALOGUE, ALL, budget=200)


def test_a_missing_answer_and_malformed_plans() -> None:
    assert ("unknown_answer" in [k for _, k, _ in issues(dict(GOOD, answer="$8"))])
    for bad in (None, {"steps": "x"}, {"steps": []}, {"steps": [{"id": "1"}]},
                {"steps": [{"id": 1, "skill": "x", "args": [], "deps": []}]},
                dict(GOOD, answer="three")):
        with pytest.raises(InvalidArgument):
            parse_plan(bad, "g")


def test_substitution_whole_values_and_text() -> None:
    results = {1: {"entity": "Paris", "value": 2.1}, 2: 3.5, 3: "Rome"}
    assert substitute("$1", results) == {"entity": "Paris", "value": 2.1}
    assert substitute(["$2", {"x": "$3"}], results) == [3.5, {"x": "Rome"}]
    assert substitute("the $3 figure is $2 (from $1)", results) == \
        'the Rome figure is 3.5 (from {"entity": "Paris", "value": 2.1})'
    assert substitute("costs $ 5", results) == "costs $ 5"


def test_explain_shows_the_dag_capabilities_and_cost() -> None:
    p = validate(htn().plan("What is the total population of Paris, Rome and Oslo?",
                            CATALOGUE, frozenset({"kb.read"})), CATALOGUE)
    e = explain(p, CATALOGUE)
    assert e.levels == ((1, 2, 3), (4,))
    assert e.est_tokens == 360 and e.critical_path_tokens == 120
    text = e.render()
    assert "level 1 (in parallel)" in text and "needs: kb.read" in text
    assert "4. combine" in text and "after 1, 2, 3" in text and "est. 120 tokens" in text
    assert e.to_data()["steps"][3]["capabilities"] == []


def test_skill_specs_and_catalogues_refuse_bad_input() -> None:
    with pytest.raises(InvalidArgument):
        SkillSpec("bad name", "d")
    with pytest.raises(InvalidArgument):
        SkillSpec("x", "")
    with pytest.raises(InvalidArgument):
        SkillSpec("x", "d", {"type": "array"})
    with pytest.raises(InvalidArgument):
        SkillSpec("x", "d", {"type": "object", "properties": {"a": {"type": 7}}})
    with pytest.raises(InvalidArgument):
        SkillSpec("x", "d", capabilities="net")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Catalogue([COMBINE, COMBINE])
    with pytest.raises(NoSuchObject):
        CATALOGUE["teleport"]
    assert CATALOGUE.usable(frozenset({"kb.read"})).names() == ["kb_lookup", "combine"]


# -- HTN -------------------------------------------------------------------------------------


def test_htn_fans_out_lookups_and_combines() -> None:
    p = htn().plan("What is the total population of Paris, Rome and Oslo?", CATALOGUE, ALL)
    assert p.source == "htn" and p.answer == 4
    assert [(s.skill, dict(s.args)) for s in p.steps] == [
        ("web_search", {"entity": "Paris", "attribute": "population"}),
        ("web_search", {"entity": "Rome", "attribute": "population"}),
        ("web_search", {"entity": "Oslo", "attribute": "population"}),
        ("combine", {"values": ["$1", "$2", "$3"], "op": "sum"}),
    ]
    assert check(p, CATALOGUE, ALL) == []


def test_the_same_goal_without_a_model_gives_the_same_dag() -> None:
    goal = "Which of Everest, K2 and Lhotse has the highest height?"
    a = htn().plan(goal, CATALOGUE, ALL)
    b = HtnPlanner(lookup_methods(("web_search", "kb_lookup"))).plan(goal, CATALOGUE, ALL)
    assert a.canonical() == b.canonical() and a.digest == b.digest
    assert a.step(4).args == {"values": ["$1", "$2", "$3"], "op": "argmax"}


def test_htn_backtracks_around_skills_not_held_or_avoided() -> None:
    goal = "What is the difference in length between the Nile and the Amazon?"
    p = htn().plan(goal, CATALOGUE, frozenset({"kb.read"}))
    assert {s.skill for s in p.steps} == {"kb_lookup", "combine"}
    q = htn().plan(goal, CATALOGUE, ALL, avoid=frozenset({"web_search"}))
    assert q.canonical() == p.canonical()
    with pytest.raises(NoSuchObject) as ei:
        htn().plan(goal, CATALOGUE, frozenset())  # no lookup skill held, no model
    assert "goal/aggregate" in str(ei.value)
    # ... unless a model can answer directly: the method of last resort
    r = htn().plan(goal, CATALOGUE, frozenset({"llm"}))
    assert [s.skill for s in r.steps] == ["answer"]


def test_htn_goal_shapes_and_last_resort() -> None:
    h = htn()
    single = h.plan("What is the height of Everest?", CATALOGUE, ALL)
    assert [s.skill for s in single.steps] == ["web_search"]
    answer = h.plan("Write a haiku about planning.", CATALOGUE, ALL)
    assert [s.skill for s in answer.steps] == ["answer"]
    with pytest.raises(NoSuchObject):
        h.plan("Write a haiku about planning.", CATALOGUE, frozenset({"kb.read"}))
    with pytest.raises(InvalidArgument):
        h.plan("  ", CATALOGUE, ALL)
    assert split_items("Paris, Rome, and Oslo") == ["Paris", "Rome", "Oslo"]


def test_htn_compound_tasks_and_out_references() -> None:
    def goal(p: Any, sit: Any) -> list[Any]:
        return [Task("two", {"e": "Paris"}), Call("combine", {"values": [Out(0)], "op": "max"})]

    def two(p: Any, sit: Any) -> list[Any]:
        return [Call("kb_lookup", {"entity": p["e"], "attribute": "population"}),
                Call("kb_lookup", {"entity": "Rome", "attribute": "population"}),
                Call("combine", {"values": [Out(0), Out(1)], "op": "sum"})]

    p = HtnPlanner([Method("goal", "g", goal), Method("two", "t", two)]).plan(
        "anything", CATALOGUE, ALL)
    assert p.step(3).args == {"values": ["$1", "$2"], "op": "sum"}
    assert p.step(4).args == {"values": ["$3"], "op": "max"} and p.answer == 4


def test_combine_is_real_arithmetic() -> None:
    vals = [{"entity": "a", "value": 2.0}, {"entity": "b", "value": 5.0}]
    assert combine(vals, "sum") == 7.0 and combine(vals, "difference") == 3.0
    assert combine(vals, "argmax") == "b" and combine(vals, "ratio") == 0.4
    with pytest.raises(InvalidArgument):
        combine([{"value": "x"}], "sum")
    with pytest.raises(InvalidArgument):
        combine(vals, "cube")
    assert Step(1, "x", {"a": "$2 and $3"}).refs() == frozenset({2, 3})
