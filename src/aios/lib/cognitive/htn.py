"""The deterministic planner: hierarchical task network (HTN) decomposition.

When no model is available, or the model's plan fails validation, a goal is
still planned, and planned the same way every time.  An HTN planner (SHOP's
total-order decomposition, Nau et al.) rewrites a compound **task** with the
first **method** that applies to it into subtasks, recursively, until only
primitive **calls** of skills remain:

* a :class:`Method` belongs to a task name and has a ``decompose`` function:
  given the task's parameters and the :class:`Situation` (the usable
  catalogue, the skills to avoid after a failure), it returns the subtasks,
  or None when it does not apply (its precondition);
* a subtask is a :class:`Call` (a skill and its arguments) or a
  :class:`Task` (decomposed in turn).  An argument may be :class:`Out` ``(i)``,
  the result of the method's ``i``-th subtask (a compound subtask's result is
  its last call's), compiled to a ``$N`` reference;
* a call whose skill is not usable (not in the catalogue, a capability not
  held, or in the avoid set) makes its method fail, and the planner
  **backtracks** to the next method of the task: that is how a goal is
  replanned around a refused or failed skill.

The result is the same :class:`~aios.lib.cognitive.plan.Plan` form the model
writes (steps numbered in decomposition order, ``source="htn"``), validated by
the same :func:`~aios.lib.cognitive.plan.validate`.  Decomposition is a pure
function of the goal, the methods, the catalogue and the avoid set, so the
same goal gives the same DAG.

The top task is ``Task("goal", {"text": goal})``.  Methods that read goals
written in English are :mod:`~aios.lib.cognitive.recipes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.cognitive.plan import Catalogue, Plan, Step

MAX_DEPTH: Final = 12


@dataclass(frozen=True, slots=True)
class Out:
    """The result of the ``index``-th subtask of the same method."""

    index: int


@dataclass(frozen=True, slots=True)
class Call:
    skill: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Situation:
    catalogue: Catalogue  # the usable skills (capabilities held)
    avoid: frozenset[str] = frozenset()

    def can(self, skill: str) -> bool:
        return skill in self.catalogue and skill not in self.avoid


Subtask = Call | Task


@dataclass(frozen=True, slots=True)
class Method:
    task: str
    name: str
    decompose: Callable[[Mapping[str, Any], Situation], Sequence[Subtask] | None]


class _Fail(Exception):
    pass


class HtnPlanner:
    """Decompose goals with an ordered list of methods (see the module essay)."""

    def __init__(self, methods: Sequence[Method], *, max_steps: int = 32) -> None:
        if not methods:
            raise InvalidArgument("an HTN planner needs methods")
        self.methods: dict[str, list[Method]] = {}
        for m in methods:
            self.methods.setdefault(m.task, []).append(m)
        self.max_steps = max_steps

    def plan(self, goal: str, catalogue: Catalogue, held: frozenset[str] | None = None,
             avoid: frozenset[str] = frozenset()) -> Plan:
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidArgument("a goal is a non-empty string")
        usable = catalogue if held is None else catalogue.usable(held)
        sit = Situation(usable, frozenset(avoid))
        steps: list[Step] = []
        tried: list[str] = []
        try:
            out = self._expand(Task("goal", {"text": goal.strip()}), sit, steps, 0, tried)
        except _Fail:
            names = ", ".join(tried) or "none"
            raise NoSuchObject(f"no method decomposes the goal {goal!r} with the skills held "
                               f"(methods tried: {names})") from None
        return Plan(goal, tuple(steps), out, "htn")

    def _expand(self, task: Task, sit: Situation, steps: list[Step], depth: int,
                tried: list[str]) -> int:
        if depth > MAX_DEPTH:
            raise _Fail
        for m in self.methods.get(task.name, ()):
            subs = m.decompose(task.params, sit)
            if subs is None:
                continue
            tried.append(f"{task.name}/{m.name}")
            mark = len(steps)
            try:
                return self._apply(subs, sit, steps, depth, tried)
            except _Fail:
                del steps[mark:]  # backtrack: forget what this method emitted
        raise _Fail

    def _apply(self, subs: Sequence[Subtask], sit: Situation, steps: list[Step], depth: int,
               tried: list[str]) -> int:
        if not subs:
            raise _Fail
        outs: list[int] = []
        for sub in subs:
            if isinstance(sub, Call):
                if not sit.can(sub.skill) or len(steps) >= self.max_steps:
                    raise _Fail
                sid = len(steps) + 1
                steps.append(Step(sid, sub.skill, _resolve(sub.args, outs)))
                outs.append(sid)
            elif isinstance(sub, Task):
                outs.append(self._expand(Task(sub.name, _resolve(sub.params, outs)), sit,
                                         steps, depth + 1, tried))
            else:
                raise InvalidArgument(f"a method returned {sub!r}, not a Call or a Task")
        return outs[-1]


def _resolve(value: Any, outs: Sequence[int]) -> Any:
    if isinstance(value, Out):
        if not 0 <= value.index < len(outs):
            raise InvalidArgument(f"Out({value.index}) refers to a subtask not done yet")
        return f"${outs[value.index]}"
    if isinstance(value, Mapping):
        return {k: _resolve(v, outs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, outs) for v in value]
    return value
