"""A small world for planner tests: facts, lookup skills that need different
capabilities, the real combining skill, and a runner that records what ran."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aios.abi.errors import AIOSError, NoSuchObject
from aios.lib.cognitive.htn import HtnPlanner
from aios.lib.cognitive.plan import Catalogue, SkillSpec
from aios.lib.cognitive.recipes import COMBINE, LOOKUP_PARAMS, combine, lookup_methods

FACTS: dict[tuple[str, str], float] = {
    ("paris", "population"): 2.1, ("rome", "population"): 2.8, ("oslo", "population"): 0.7,
    ("berlin", "population"): 3.6, ("madrid", "population"): 3.3,
    ("everest", "height"): 8849.0, ("k2", "height"): 8611.0, ("lhotse", "height"): 8516.0,
    ("nile", "length"): 6650.0, ("amazon", "length"): 6400.0,
}
RESULT = {"type": "object", "properties": {"entity": {"type": "string"},
                                           "attribute": {"type": "string"},
                                           "value": {"type": "number"}},
          "required": ["entity", "value"]}

KB_LOOKUP = SkillSpec("kb_lookup", "look a fact up in the team's knowledge base",
                      LOOKUP_PARAMS, frozenset({"kb.read"}), 120, RESULT)
WEB_SEARCH = SkillSpec("web_search", "search the web for a fact", LOOKUP_PARAMS,
                       frozenset({"net"}), 300, RESULT)
ANSWER = SkillSpec("answer", "answer a question with the language model",
                   {"type": "object", "properties": {"question": {"type": "string"}},
                    "required": ["question"]}, frozenset({"llm"}), 200)
CATALOGUE = Catalogue([WEB_SEARCH, KB_LOOKUP, COMBINE, ANSWER])
ALL = frozenset({"kb.read", "net", "llm"})


def htn() -> HtnPlanner:
    return HtnPlanner(lookup_methods(("web_search", "kb_lookup")))


def fact(entity: str, attribute: str) -> dict[str, Any]:
    v = FACTS.get((entity.strip().lower(), attribute.strip().lower()))
    if v is None:
        raise NoSuchObject(f"no fact for the {attribute} of {entity}")
    return {"entity": entity, "attribute": attribute, "value": v}


class Runner:
    """Runs skills for real (facts, combine), records calls and concurrency;
    ``fail`` maps a skill to the error it raises."""

    def __init__(self, fail: Mapping[str, AIOSError] | None = None, yields: int = 3) -> None:
        self.calls: list[tuple[int, str, dict[str, Any]]] = []
        self.finished: list[int] = []
        self.fail = dict(fail or {})
        self.inflight = 0
        self.max_inflight = 0
        self.yields = yields

    async def __call__(self, skill: str, args: Mapping[str, Any], step: int) -> Any:
        self.calls.append((step, skill, dict(args)))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            for _ in range(self.yields):
                await asyncio.sleep(0)
            if skill in self.fail:
                raise self.fail[skill]
            if skill in ("web_search", "kb_lookup"):
                out: Any = fact(args["entity"], args["attribute"])
            elif skill == "combine":
                out = combine(args["values"], args["op"])
            else:
                out = f"an answer to {args['question']!r}"
            self.finished.append(step)
            return out
        finally:
            self.inflight -= 1

    def skills(self) -> list[str]:
        return [s for _, s, _ in self.calls]
