"""Plans: a goal as a DAG of skill steps, LLMCompiler-style.

A **skill** (:class:`SkillSpec`) is something an agent can have done: a name,
a one-line description, a JSON schema for its arguments, the capabilities it
needs (names such as ``"net"`` or ``"llm"``; the kernel module maps them to
capability rights), an estimated token cost per call, and optionally a JSON
schema for its result.  The skills registered with semantic-ipcd and the tools
an agent holds capabilities for form a :class:`Catalogue`.

A **plan** (:class:`Plan`) is a list of steps; each names a skill, gives its
arguments and the steps it depends on.  An argument may refer to an earlier
step's result as ``"$N"`` (the whole value) or inside a longer string
(``"population of $2"``: the value's text), as in LLMCompiler (Kim et al.,
2024).  ``answer`` names the step whose result answers the goal.  A model
writes the plan as JSON constrained by :func:`plan_schema` (the skill names an
enum, each skill's arguments its own schema, every value also allowed to be a
reference), so what comes back always parses; whether it makes sense is
:func:`check`'s job.

**Validation** (:func:`check`, :func:`validate`) finds every problem and names
the step: duplicate or bad ids, unknown skills, dependencies or references to
steps that do not exist, a step referring to itself, cycles (each reported
with the steps on it), arguments that violate the skill's schema (references
accepted where a value is expected), capabilities not held (each missing one
named), and an estimated cost over the budget (naming the step at which the
running total in execution order crosses it).  :class:`PlanIssue` turns into
the taxonomy's error: ``PermissionDenied`` for capabilities, ``QuotaExceeded``
for the budget, ``InvalidArgument`` for the rest.  A valid plan comes back
normalised: steps in id order, dependencies including every reference.

:func:`substitute` replaces references by results; :func:`levels` gives the
waves of steps that can run together; :func:`explain` shows the DAG, the
capabilities each step needs and the estimated cost before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aios.abi.errors import (
    AIOSError,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
)

WHOLE_REF: Final = re.compile(r"^\$(\d+)$")
ANY_REF: Final = re.compile(r"\$(\d+)")
REF_SCHEMA: Final = {"type": "string", "pattern": r"^\$[0-9]+$"}
NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_STEPS: Final = 64


def _validator(schema: Mapping[str, Any], what: str) -> Any:
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise InvalidArgument(f"{what}: invalid JSON schema: {e.message}") from None
    return cls(schema)


@dataclass(frozen=True, slots=True)
class SkillSpec:
    name: str
    description: str
    params: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    capabilities: frozenset[str] = frozenset()
    est_tokens: int = 0
    returns: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise InvalidArgument("a skill name is [A-Za-z][A-Za-z0-9_]*, at most 64",
                                  name=self.name)
        if not isinstance(self.description, str) or not self.description.strip():
            raise InvalidArgument(f"skill {self.name}: a description is needed")
        if not isinstance(self.params, Mapping) or self.params.get("type") != "object":
            raise InvalidArgument(f"skill {self.name}: params must be an object schema")
        if isinstance(self.capabilities, str) or not all(
                isinstance(c, str) and c for c in self.capabilities):
            raise InvalidArgument(f"skill {self.name}: capabilities are non-empty names")
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        if not isinstance(self.est_tokens, int) or self.est_tokens < 0:
            raise InvalidArgument(f"skill {self.name}: est_tokens must be an int >= 0")
        _validator(self.params, f"skill {self.name} params")
        if self.returns is not None:
            _validator(self.returns, f"skill {self.name} returns")

    def signature(self) -> str:
        props = self.params.get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" if isinstance(v, Mapping) else k
                         for k, v in props.items())
        return f"{self.name}({args})"


class Catalogue:
    """The skills a planner may use, by name."""

    def __init__(self, skills: Iterable[SkillSpec]) -> None:
        self._skills: dict[str, SkillSpec] = {}
        self._check: dict[str, tuple[Any, Any]] = {}
        for s in skills:
            if not isinstance(s, SkillSpec):
                raise InvalidArgument("a catalogue holds SkillSpec records")
            if s.name in self._skills:
                raise InvalidArgument(f"skill {s.name} is in the catalogue twice")
            self._skills[s.name] = s

    def __contains__(self, name: object) -> bool:
        return name in self._skills

    def __getitem__(self, name: str) -> SkillSpec:
        try:
            return self._skills[name]
        except KeyError:
            raise NoSuchObject(f"no skill {name!r} in the catalogue") from None

    def __iter__(self) -> Iterator[SkillSpec]:
        return iter(self._skills.values())

    def __len__(self) -> int:
        return len(self._skills)

    def names(self) -> list[str]:
        return list(self._skills)

    def usable(self, held: frozenset[str]) -> Catalogue:
        """The skills whose capabilities are all held."""
        return Catalogue(s for s in self if s.capabilities <= held)

    def validators(self, name: str) -> tuple[Any, Any]:
        """(args with references allowed, args fully resolved) validators of a skill."""
        hit = self._check.get(name)
        if hit is None:
            spec = self[name]
            hit = (_validator(allow_refs(spec.params), name), _validator(spec.params, name))
            self._check[name] = hit
        return hit

    def describe(self) -> str:
        return "\n".join(f"- {s.signature()}: {s.description}" for s in self)


# -- plans ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    skill: str
    args: Mapping[str, Any]
    deps: tuple[int, ...] = ()

    def refs(self) -> frozenset[int]:
        return frozenset(refs_in(self.args))

    def to_data(self) -> dict[str, Any]:
        return {"id": self.id, "skill": self.skill, "args": _plain(self.args),
                "deps": list(self.deps)}


@dataclass(frozen=True, slots=True)
class Plan:
    goal: str
    steps: tuple[Step, ...]
    answer: int  # the step whose result answers the goal
    source: str = ""  # who wrote it: "model", "htn", ...

    def step(self, sid: int) -> Step:
        for s in self.steps:
            if s.id == sid:
                return s
        raise NoSuchObject(f"no step {sid} in the plan")

    def to_data(self) -> dict[str, Any]:
        return {"goal": self.goal, "steps": [s.to_data() for s in self.steps],
                "answer": f"${self.answer}", "source": self.source}

    def normalised(self) -> Plan:
        """Steps in id order, each depending on every step it refers to."""
        steps = tuple(sorted((Step(s.id, s.skill, s.args, tuple(sorted(set(s.deps) | s.refs())))
                              for s in self.steps), key=lambda s: s.id))
        return Plan(self.goal, steps, self.answer, self.source)

    def pruned(self) -> tuple[Plan, tuple[int, ...]]:
        """Without the steps the answer does not depend on (an acyclic plan), and their ids."""
        deps = {s.id: set(s.deps) | s.refs() for s in self.steps}
        need: set[int] = set()
        todo = [self.answer]
        while todo:
            n = todo.pop()
            if n not in need and n in deps:
                need.add(n)
                todo.extend(deps[n])
        kept = tuple(s for s in self.steps if s.id in need)
        dropped = tuple(sorted(s.id for s in self.steps if s.id not in need))
        return Plan(self.goal, kept, self.answer, self.source), dropped

    def canonical(self) -> bytes:
        """The DAG alone (not who wrote it), as canonical JSON."""
        d = self.to_data()
        del d["source"]
        return json.dumps(d, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.canonical(), digest_size=12).hexdigest()


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def refs_in(value: Any) -> Iterator[int]:
    """Every ``$N`` in a value (strings, lists and objects, recursively)."""
    if isinstance(value, str):
        for m in ANY_REF.finditer(value):
            yield int(m.group(1))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from refs_in(v)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def substitute(value: Any, results: Mapping[int, Any]) -> Any:
    """Replace references by results: ``"$N"`` by the value, ``"... $N ..."`` by its text."""
    if isinstance(value, str):
        m = WHOLE_REF.match(value)
        if m:
            return results[int(m.group(1))]
        return ANY_REF.sub(lambda mm: _text(results[int(mm.group(1))]), value)
    if isinstance(value, Mapping):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, results) for v in value]
    return value


def allow_refs(schema: Mapping[str, Any], top: bool = True) -> dict[str, Any]:
    """The same schema, with a ``$N`` reference allowed wherever a value goes
    (except for the arguments object itself)."""
    s = dict(schema)
    if isinstance(s.get("properties"), Mapping):
        s["properties"] = {k: allow_refs(v, False) if isinstance(v, Mapping) else v
                           for k, v in s["properties"].items()}
    if isinstance(s.get("items"), Mapping):
        s["items"] = allow_refs(s["items"], False)
    if top:
        return s
    if s.get("type") == "string" and "pattern" not in s and "enum" not in s \
            and "const" not in s and "format" not in s:
        return s  # a reference is already a string
    return {"anyOf": [s, REF_SCHEMA]}


def plan_schema(catalogue: Catalogue, max_steps: int = 8) -> dict[str, Any]:
    """The JSON schema a model's plan is constrained to."""
    if not len(catalogue):
        raise InvalidArgument("a plan needs at least one skill")
    steps = []
    for s in catalogue:
        steps.append({
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": max_steps},
                "skill": {"const": s.name},
                "args": allow_refs(s.params),
                "deps": {"type": "array", "maxItems": max_steps,
                         "items": {"type": "integer", "minimum": 1, "maximum": max_steps}},
            },
            "required": ["id", "skill", "args", "deps"],
        })
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "minItems": 1, "maxItems": max_steps,
                      "items": steps[0] if len(steps) == 1 else {"anyOf": steps}},
            "answer": REF_SCHEMA,
        },
        "required": ["steps", "answer"],
    }


def parse_plan(obj: Any, goal: str, source: str = "") -> Plan:
    """A plan from JSON-ready data (a model's answer); ``InvalidArgument`` if malformed."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("steps"), list):
        raise InvalidArgument("a plan is an object with a list of steps")
    if not 1 <= len(obj["steps"]) <= MAX_STEPS:
        raise InvalidArgument(f"a plan has 1..{MAX_STEPS} steps")
    steps = []
    for i, s in enumerate(obj["steps"]):
        if not isinstance(s, Mapping):
            raise InvalidArgument(f"plan step #{i + 1} is not an object")
        sid, skill, args, deps = s.get("id"), s.get("skill"), s.get("args", {}), s.get("deps", [])
        if type(sid) is not int or not isinstance(skill, str) or not isinstance(args, Mapping) \
                or not isinstance(deps, list) or not all(type(d) is int for d in deps):
            raise InvalidArgument(f"plan step #{i + 1} needs an int id, a skill name, an args "
                                  "object and a list of int deps")
        steps.append(Step(sid, skill, dict(args), tuple(deps)))
    ans = obj.get("answer", f"${steps[-1].id}")
    m = WHOLE_REF.match(ans) if isinstance(ans, str) else None
    if isinstance(ans, int) and not isinstance(ans, bool):
        answer = ans
    elif m:
        answer = int(m.group(1))
    else:
        raise InvalidArgument('the plan\'s answer must be a step reference like "$3"')
    return Plan(goal, tuple(steps), answer, source)


# -- validation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanIssue:
    step: int | None
    kind: str  # duplicate_id | bad_id | unknown_skill | unknown_dep | unknown_ref | self_ref |
    #            cycle | bad_args | capability | budget | unknown_answer
    message: str

    def error(self) -> AIOSError:
        detail = {"step": self.step, "issue": self.kind}
        if self.kind == "capability":
            return PermissionDenied(self.message, **detail)
        if self.kind == "budget":
            return QuotaExceeded(self.message, **detail)
        return InvalidArgument(self.message, **detail)


def schema_message(err: Any) -> str:
    """A schema error's message; for "a value or a reference" the value's reason."""
    while err.validator == "anyOf" and err.context:
        own = [c for c in err.context if c.schema_path and c.schema_path[0] == 0]
        if not own:
            break
        err = own[0]
    return str(err.message)


def _label(s: Step) -> str:
    return f"plan step {s.id} ({s.skill})"


def find_cycle(deps: Mapping[int, Iterable[int]]) -> list[int] | None:
    """One cycle of the dependency graph (as a closed path), or None."""
    color: dict[int, int] = {}
    stack: list[int] = []

    def visit(n: int) -> list[int] | None:
        color[n] = 1
        stack.append(n)
        for d in sorted(deps.get(n, ())):
            if d not in deps:
                continue
            if color.get(d) == 1:
                return [*stack[stack.index(d):], d]
            if color.get(d) is None:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(deps):
        if color.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def levels(plan: Plan) -> list[list[int]]:
    """Waves of steps whose dependencies are all in earlier waves (a valid plan)."""
    deps = {s.id: set(s.deps) | set(s.refs()) for s in plan.steps}
    done: set[int] = set()
    out: list[list[int]] = []
    while len(done) < len(deps):
        wave = sorted(n for n, d in deps.items() if n not in done and d <= done)
        if not wave:
            raise InvalidArgument("the plan has a cycle")
        out.append(wave)
        done |= set(wave)
    return out


def check(plan: Plan, catalogue: Catalogue, held: frozenset[str] | None = None,
          budget: int | None = None) -> list[PlanIssue]:
    """Every problem of ``plan``; empty when it is valid.  ``held=None`` skips the
    capability check, ``budget=None`` the cost check."""
    issues: list[PlanIssue] = []
    ids: dict[int, Step] = {}
    for s in plan.steps:
        if s.id < 1 or s.id > MAX_STEPS:
            issues.append(PlanIssue(s.id, "bad_id", f"{_label(s)}: ids are 1..{MAX_STEPS}"))
        if s.id in ids:
            issues.append(PlanIssue(s.id, "duplicate_id", f"{_label(s)}: the id {s.id} is used "
                                                          "twice"))
        ids[s.id] = s
    for s in plan.steps:
        if s.skill not in catalogue:
            near = ", ".join(catalogue.names()[:8])
            issues.append(PlanIssue(s.id, "unknown_skill",
                                    f"{_label(s)}: no skill {s.skill!r} (known: {near})"))
        for d in s.deps:
            if d not in ids:
                issues.append(PlanIssue(s.id, "unknown_dep",
                                        f"{_label(s)}: depends on step {d}, which is not in "
                                        "the plan"))
        for r in sorted(s.refs()):
            if r == s.id:
                issues.append(PlanIssue(s.id, "self_ref", f"{_label(s)}: refers to its own "
                                                          f"result ${r}"))
            elif r not in ids:
                issues.append(PlanIssue(s.id, "unknown_ref", f"{_label(s)}: refers to ${r}, "
                                                             "which is not a step"))
    if plan.answer not in ids:
        issues.append(PlanIssue(None, "unknown_answer",
                                f"the answer ${plan.answer} is not a step of the plan"))
    graph = {sid: (set(s.deps) | set(s.refs())) - {sid} for sid, s in ids.items()}
    cyc = find_cycle(graph)
    if cyc:
        path = " -> ".join(str(c) for c in reversed(cyc))
        issues.append(PlanIssue(cyc[0], "cycle", f"plan steps {path} form a cycle "
                                                 "(each waits for the next)"))
    for s in plan.steps:
        if s.skill not in catalogue:
            continue
        v, _ = catalogue.validators(s.skill)
        errs = sorted(v.iter_errors(_plain(s.args)), key=lambda e: list(e.path))
        if errs:
            where = "/".join(str(p) for p in errs[0].path) or "args"
            issues.append(PlanIssue(s.id, "bad_args",
                                    f"{_label(s)}: {where}: {schema_message(errs[0])}"))
        spec = catalogue[s.skill]
        if held is not None and not spec.capabilities <= held:
            missing = ", ".join(sorted(spec.capabilities - held))
            issues.append(PlanIssue(s.id, "capability",
                                    f"{_label(s)}: needs capability {missing}, not held"))
    if budget is not None and not cyc and not any(i.kind in ("unknown_dep", "unknown_ref")
                                                  for i in issues):
        total = 0
        for wave in levels(plan):
            for sid in wave:
                s = ids[sid]
                total += catalogue[s.skill].est_tokens if s.skill in catalogue else 0
                if total > budget:
                    issues.append(PlanIssue(sid, "budget", f"{_label(s)}: the plan's estimated "
                                            f"cost reaches {total} tokens here, over the "
                                            f"budget of {budget}"))
                    break
            if total > budget:
                break
    return issues


def validate(plan: Plan, catalogue: Catalogue, held: frozenset[str] | None = None,
             budget: int | None = None) -> Plan:
    """The normalised plan, or the error of its first problem."""
    issues = check(plan, catalogue, held, budget)
    if issues:
        raise issues[0].error()
    return plan.normalised()


# -- explain -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Explanation:
    goal: str
    source: str
    levels: tuple[tuple[int, ...], ...]
    steps: tuple[Mapping[str, Any], ...]
    est_tokens: int
    critical_path_tokens: int

    def to_data(self) -> dict[str, Any]:
        return {"goal": self.goal, "source": self.source,
                "levels": [list(w) for w in self.levels], "steps": list(self.steps),
                "est_tokens": self.est_tokens,
                "critical_path_tokens": self.critical_path_tokens}

    def render(self) -> str:
        lines = [f"plan for: {self.goal}",
                 f"source: {self.source or '-'}; {len(self.steps)} steps in "
                 f"{len(self.levels)} levels; estimated {self.est_tokens} tokens "
                 f"({self.critical_path_tokens} on the longest path)"]
        by_id = {s["id"]: s for s in self.steps}
        for i, wave in enumerate(self.levels, 1):
            lines.append(f"level {i}" + (" (in parallel)" if len(wave) > 1 else "") + ":")
            for sid in wave:
                s = by_id[sid]
                args = json.dumps(s["args"], ensure_ascii=False, sort_keys=True)
                after = f" after {', '.join(map(str, s['deps']))}" if s["deps"] else ""
                caps = ", ".join(s["capabilities"]) or "-"
                lines.append(f"  {sid}. {s['skill']} {args}{after}  needs: {caps}  "
                             f"est. {s['est_tokens']} tokens")
        return "\n".join(lines)


def explain(plan: Plan, catalogue: Catalogue) -> Explanation:
    """The DAG, the capabilities each step needs and the estimated cost (a valid plan)."""
    waves = levels(plan)
    cost: dict[int, int] = {}
    longest: dict[int, int] = {}
    steps = []
    for wave in waves:
        for sid in wave:
            s = plan.step(sid)
            spec = catalogue[s.skill]
            deps = sorted(set(s.deps) | s.refs())
            cost[sid] = spec.est_tokens
            longest[sid] = spec.est_tokens + max((longest[d] for d in deps), default=0)
            steps.append({"id": sid, "skill": s.skill, "args": _plain(s.args), "deps": deps,
                          "capabilities": sorted(spec.capabilities),
                          "est_tokens": spec.est_tokens})
    return Explanation(plan.goal, plan.source, tuple(tuple(w) for w in waves),
                       tuple(steps), sum(cost.values()), max(longest.values(), default=0))


def plans_equal(a: Plan, b: Plan) -> bool:
    return a.canonical() == b.canonical()


def step_key(skill: str, args: Any) -> str:
    """What identifies a call for reuse across replans: the skill and its resolved args."""
    return skill + json.dumps(_plain(args), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, default=str)


__all__: Sequence[str] = (
    "Catalogue", "Explanation", "Plan", "PlanIssue", "SkillSpec", "Step", "allow_refs", "check",
    "explain", "levels", "parse_plan", "plan_schema", "refs_in", "step_key", "substitute",
    "validate",
)
