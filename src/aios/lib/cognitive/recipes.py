"""HTN methods for goals of the "look several things up, then combine" kind.

This is the shape of LLMCompiler's ParallelQA benchmark and of most questions
a team of agents gets asked: *What is the total population of Paris, Rome and
Oslo?*, *Which of Everest, K2 and Lhotse is the highest?*, *What is the
difference in length between the Nile and the Amazon?*.  Each is independent
lookups (which can run in parallel) and one combining step.

:func:`lookup_methods` builds the methods for a catalogue whose lookup skills
take ``{"entity", "attribute"}`` and whose combining skill takes ``{"values",
"op"}``:

* ``goal/aggregate``: an operation word (total, sum, average, difference,
  ratio, highest, lowest, ...), an attribute and two or more entities: one
  ``fetch`` task per entity, then ``combine``;
* ``goal/which``: "which of A, B and C has the highest X": the same with an
  ``argmax``/``argmin`` combine;
* ``goal/single``: "what is the X of A": one ``fetch``;
* ``goal/answer``: when an ``answer`` skill is usable (a model that answers
  directly), the whole goal as one question, the method of last resort;
* ``fetch/<skill>``: one method per lookup skill, in order of preference, so
  a lookup skill that is not held (or failed) is replaced by the next.

The reading of English is a handful of regular expressions: goals outside
these shapes are not decomposed (``NoSuchObject``), which is what a
deterministic fallback should do rather than guess.  :data:`COMBINE` and
:func:`combine` are the combining skill itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aios.abi.errors import InvalidArgument
from aios.lib.cognitive.htn import Call, Method, Out, Situation, Subtask, Task
from aios.lib.cognitive.plan import SkillSpec

OPS: Final = {
    "total": "sum", "sum": "sum", "combined": "sum", "average": "mean", "mean": "mean",
    "difference": "difference", "ratio": "ratio", "highest": "max", "largest": "max",
    "biggest": "max", "greatest": "max", "maximum": "max", "lowest": "min",
    "smallest": "min", "least": "min", "minimum": "min",
}
COMBINE_OPS: Final = ("sum", "mean", "difference", "ratio", "max", "min", "argmax", "argmin")

_OP = "|".join(sorted(OPS, key=len, reverse=True))
_AGGREGATE = re.compile(
    rf"^(?:what(?:'s| is| are)\s+|compute\s+|find\s+|give\s+me\s+)?(?:the\s+)?(?P<op>{_OP})"
    r"\s+(?:of\s+the\s+|in\s+)?(?P<attr>[\w\s-]+?)\s+(?:of|between|among|for|across)\s+"
    r"(?:the\s+)?(?P<items>.+?)[?.!]*$", re.I)
_WHICH = re.compile(
    rf"^which\s+of\s+(?:the\s+)?(?P<items>.+?)\s+(?:has|is|had|was)\s+the\s+(?P<op>{_OP})"
    r"\s+(?P<attr>[\w\s-]+?)[?.!]*$", re.I)
_SINGLE = re.compile(
    r"^(?:what(?:'s| is)\s+|find\s+|look\s+up\s+)?the\s+(?P<attr>[\w\s-]+?)\s+of\s+"
    r"(?:the\s+)?(?P<item>[^,]+?)[?.!]*$", re.I)

LOOKUP_PARAMS: Final = {
    "type": "object",
    "properties": {"entity": {"type": "string"}, "attribute": {"type": "string"}},
    "required": ["entity", "attribute"],
    "additionalProperties": False,
}
COMBINE_PARAMS: Final = {
    "type": "object",
    "properties": {"values": {"type": "array", "minItems": 1, "maxItems": 16,
                              "items": {"anyOf": [
                                  {"type": "number"},
                                  {"type": "object", "properties": {"value": {"type": "number"}},
                                   "required": ["value"]}]}},
                   "op": {"enum": list(COMBINE_OPS)}},
    "required": ["values", "op"],
    "additionalProperties": False,
}
COMBINE: Final = SkillSpec(
    "combine", "combine looked-up values: sum, mean, difference, ratio, max, min, argmax, argmin",
    COMBINE_PARAMS, frozenset(), 0, {"type": ["number", "string"]})


def split_items(text: str) -> list[str]:
    parts = re.split(r"\s*,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+", text.strip())
    return [p.strip() for p in parts if p.strip()]


def lookup_methods(lookups: Sequence[str] = ("lookup",), combine_skill: str = "combine",
                   answer_skill: str = "answer") -> list[Method]:
    """The methods described in the module essay, for these skill names."""

    def fetch(entity: str, attribute: str) -> Task:
        return Task("fetch", {"entity": entity, "attribute": attribute})

    def fan_in(items: list[str], attr: str, op: str, sit: Situation) -> list[Subtask] | None:
        if len(items) < 2 or not sit.can(combine_skill):
            return None
        subs: list[Subtask] = [fetch(e, attr) for e in items]
        subs.append(Call(combine_skill, {"values": [Out(i) for i in range(len(items))],
                                         "op": op}))
        return subs

    def aggregate(p: Mapping[str, Any], sit: Situation) -> Sequence[Subtask] | None:
        m = _AGGREGATE.match(str(p.get("text", "")))
        if not m:
            return None
        return fan_in(split_items(m["items"]), m["attr"].strip().lower(),
                      OPS[m["op"].lower()], sit)

    def which(p: Mapping[str, Any], sit: Situation) -> Sequence[Subtask] | None:
        m = _WHICH.match(str(p.get("text", "")))
        if not m:
            return None
        op = "argmax" if OPS[m["op"].lower()] == "max" else "argmin"
        if OPS[m["op"].lower()] not in ("max", "min"):
            return None
        return fan_in(split_items(m["items"]), m["attr"].strip().lower(), op, sit)

    def single(p: Mapping[str, Any], sit: Situation) -> Sequence[Subtask] | None:
        m = _SINGLE.match(str(p.get("text", "")))
        if not m or len(split_items(m["item"])) != 1:
            return None
        return [fetch(m["item"].strip(), m["attr"].strip().lower())]

    def answer(p: Mapping[str, Any], sit: Situation) -> Sequence[Subtask] | None:
        if not sit.can(answer_skill):
            return None
        return [Call(answer_skill, {"question": str(p.get("text", ""))})]

    def via(skill: str) -> Method:
        def use(p: Mapping[str, Any], sit: Situation) -> Sequence[Subtask] | None:
            if not sit.can(skill):
                return None
            return [Call(skill, {"entity": p["entity"], "attribute": p["attribute"]})]

        return Method("fetch", skill, use)

    return [Method("goal", "aggregate", aggregate), Method("goal", "which", which),
            Method("goal", "single", single), Method("goal", "answer", answer),
            *[via(s) for s in lookups]]


def _number(v: Any) -> float:
    if isinstance(v, Mapping):
        v = v.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InvalidArgument(f"combine needs numbers, got {v!r}")
    return float(v)


def combine(values: Sequence[Any], op: str) -> float | str:
    """The combining skill: ``values`` are numbers or lookup results ``{entity, value}``."""
    if op not in COMBINE_OPS:
        raise InvalidArgument(f"combine: op must be one of {', '.join(COMBINE_OPS)}")
    if not values:
        raise InvalidArgument("combine needs at least one value")
    nums = [_number(v) for v in values]
    if op == "sum":
        return sum(nums)
    if op == "mean":
        return sum(nums) / len(nums)
    if op == "difference":
        return abs(nums[0] - nums[1]) if len(nums) == 2 else max(nums) - min(nums)
    if op == "ratio":
        if len(nums) != 2 or nums[1] == 0:
            raise InvalidArgument("ratio needs two values, the second non-zero")
        return nums[0] / nums[1]
    if op in ("max", "min"):
        return max(nums) if op == "max" else min(nums)
    best = max if op == "argmax" else min
    i = best(range(len(nums)), key=lambda j: nums[j])
    v = values[i]
    return str(v.get("entity", i)) if isinstance(v, Mapping) else str(i)
