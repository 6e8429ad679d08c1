"""The routing benchmark at scale: loading, splits and registries of 15, 150 and 1,000 skills.

The data live in ``tests/data/routing/<domain>.json``, written for this
project (not taken from any public intent set).  Each domain file holds
skills, each with a name, a one-sentence description, ten example
utterances (what the skill's owner registers), validation utterances and
test utterances phrased differently from the examples; and out-of-scope
utterances that no skill offers, split into validation and test.
``general.json`` holds only out-of-scope utterances (small talk, trivia,
requests for services that do not exist).

Discipline: anything learnt (thresholds, calibration) may look at the
examples and the *validation* splits only; the *test* splits are scored
once, by the benchmark.

Registries:

* **150** (in fact every skill in the files, >= 150);
* **15**: one or two skills per domain (:data:`SMALL_REGISTRY`), with the
  test utterances of those skills in scope and both the out-of-scope test
  set and the test utterances of every other skill out of scope (they ask
  for something no registered skill offers);
* **1,000**: every real skill plus generated distractor skills from fields
  the real data never touch (gardening, astronomy, sailing, ...), each a
  combination of a field, an object and an action with a description and
  ten templated examples (:func:`distractor_skills`).  They are plausible
  neighbours for the router's scoring, and the in-scope and out-of-scope
  test utterances keep their labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aios.abi.errors import NoSuchObject

#: A 15-skill registry: skills from different domains, no near-duplicate pairs.
SMALL_REGISTRY = (
    "devops.deploy", "devops.oncall_lookup", "finance.balance", "finance.fx_rate",
    "travel.flight_book", "travel.visa_requirements", "calendar.meeting_schedule",
    "docs.translate", "code.review", "data.chart", "hr.leave_request",
    "support.password_reset", "security.phishing_report", "home.thermostat_set",
    "health.symptom_check",
)


@dataclass(frozen=True, slots=True)
class SkillSpec:
    domain: str
    skill: str
    description: str
    examples: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def agent(self) -> str:
        return self.skill.replace(".", "-") + "-agent"


@dataclass(frozen=True, slots=True)
class RoutingBenchmark:
    skills: tuple[SkillSpec, ...]
    oos_validation: tuple[str, ...]
    oos_test: tuple[str, ...]

    @property
    def domains(self) -> list[str]:
        return sorted({s.domain for s in self.skills})

    def skill(self, name: str) -> SkillSpec:
        for s in self.skills:
            if s.skill == name:
                return s
        raise NoSuchObject(f"no skill {name!r} in the routing benchmark")

    def labelled(self, split: str, names: set[str] | None = None) -> list[tuple[str, str]]:
        """``(utterance, skill)`` pairs of a split (``validation`` or ``test``)."""
        return [(u, s.skill) for s in self.skills if names is None or s.skill in names
                for u in getattr(s, split)]


def default_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "tests" / "data" / "routing"


def load(directory: Path | None = None) -> RoutingBenchmark:
    """Read every ``*.json`` under ``directory`` (default: the repository's data)."""
    d = directory or default_dir()
    files = sorted(d.glob("*.json")) if d.is_dir() else []
    if not files:
        raise NoSuchObject(f"routing benchmark data not found under {d}")
    skills: list[SkillSpec] = []
    oos_v: list[str] = []
    oos_t: list[str] = []
    for f in files:
        doc = json.loads(f.read_text())
        domain = doc["domain"]
        for s in doc.get("skills", []):
            skills.append(SkillSpec(domain, s["skill"], s["description"], tuple(s["examples"]),
                                    tuple(s["validation"]), tuple(s["test"])))
        oos = doc.get("out_of_scope", {})
        oos_v += oos.get("validation", [])
        oos_t += oos.get("test", [])
    return RoutingBenchmark(tuple(skills), tuple(oos_v), tuple(oos_t))


# -- synthetic distractors -------------------------------------------------------------

_FIELDS = {
    "gardening": ("seedlings", "compost heap", "rose bed", "greenhouse", "lawn"),
    "astronomy": ("telescope", "star chart", "meteor shower log", "observatory slot", "comet list"),
    "sailing": ("sailboat", "mooring", "regatta entry", "sail inventory", "tide table"),
    "beekeeping": ("hive", "honey harvest", "queen bee record", "swarm report", "apiary"),
    "pottery": ("kiln firing", "glaze recipe", "clay order", "wheel booking", "pottery class"),
    "chess": ("chess tournament", "opening repertoire", "chess rating", "puzzle set", "chess club"),
    "aquarium": ("fish tank", "water test", "coral frag", "aquarium filter", "fish feeding plan"),
    "woodworking": ("workbench project", "lumber order", "joinery plan", "router bit set",
                    "wood finish"),
    "birdwatching": ("bird sighting", "birding trip", "feeder station", "life list", "nest box"),
    "farming": ("tractor", "crop rotation", "irrigation schedule", "livestock record",
                "harvest estimate"),
    "library": ("library loan", "book hold", "reading room seat", "archive request",
                "library card"),
    "orchestra": ("rehearsal", "sheet music order", "instrument rental", "concert program",
                  "seating chart"),
    "museum": ("exhibit loan", "artifact record", "gallery tour", "museum membership",
               "conservation job"),
    "shipping": ("freight container", "customs declaration", "cargo manifest", "port slot",
                 "pallet pickup"),
    "veterinary": ("horse checkup", "kennel booking", "livestock vaccine", "pet microchip",
                   "vet lab result"),
    "brewing": ("beer batch", "hop order", "fermentation tank", "tasting panel", "brew log"),
    "mining": ("drill core sample", "ore assay", "mine shift", "blasting permit",
               "tailings report"),
    "theater": ("stage rehearsal", "costume fitting", "set build", "ticket allocation",
                "script revision"),
}
_ACTIONS = (
    ("create", "Create a new {o} for the {f} team.",
     ("create a new {o}", "add a {o}", "set up a {o} please", "I need a fresh {o}",
      "start a {o} for {f}", "open a new {o}", "make a {o} entry", "register a {o}",
      "new {o} for this week", "please add another {o}")),
    ("update", "Update the details of an existing {o} in {f}.",
     ("update the {o}", "change the details of my {o}", "edit the {o} record",
      "modify the {o}", "fix the information on the {o}", "revise the {o}",
      "amend the {o} entry", "correct the {o}", "adjust the {o} settings", "tweak the {o}")),
    ("status", "Report the current status of a {o} in {f}.",
     ("what's the status of the {o}", "how is the {o} going", "is the {o} ready",
      "check on the {o}", "give me an update on the {o}", "where are we with the {o}",
      "has the {o} finished", "show the {o} status", "any news on the {o}",
      "is the {o} on track")),
    ("cancel", "Cancel a {o} in {f}.",
     ("cancel the {o}", "call off the {o}", "drop the {o}", "I don't need the {o} anymore",
      "remove the {o}", "scrap the {o}", "stop the {o}", "delete the {o}",
      "abandon the {o}", "withdraw the {o}")),
    ("list", "List all {o}s in {f}.",
     ("list all {o}s", "show my {o}s", "what {o}s do I have", "give me every {o}",
      "display the {o}s", "enumerate the {o}s", "which {o}s exist", "show all the {o}s in {f}",
      "print the {o} list", "how many {o}s are there")),
    ("schedule", "Schedule a {o} in {f} for a date.",
     ("schedule a {o} for friday", "book a {o} next week", "plan the {o} for monday",
      "put a {o} on the calendar", "arrange a {o}", "set a date for the {o}",
      "reserve a {o} slot", "line up a {o} for tomorrow", "when can we do the {o}? book it",
      "fix a time for the {o}")),
    ("report", "Produce a report about {o}s in {f}.",
     ("make a report on the {o}s", "summarise the {o}s", "give me a {o} report",
      "write up the {o} figures", "compile {o} statistics", "prepare a {o} summary",
      "generate a {o} overview", "report on {o} activity", "{o} numbers for this month",
      "analyse the {o}s")),
    ("price", "Tell the price or cost of a {o} in {f}.",
     ("how much does a {o} cost", "price of a {o}", "what's the fee for a {o}",
      "cost estimate for the {o}", "is the {o} expensive", "quote me for a {o}",
      "what would a {o} set me back", "{o} pricing", "compare {o} prices",
      "cheapest {o} available")),
    ("assign", "Assign a {o} in {f} to a person.",
     ("assign the {o} to Dana", "give the {o} to someone on the team", "who should own the {o}",
      "hand the {o} over to Luis", "make Robin responsible for the {o}",
      "put a person in charge of the {o}", "transfer the {o} to another owner",
      "reassign the {o}", "delegate the {o}", "set the owner of the {o}")),
    ("history", "Show the past history of a {o} in {f}.",
     ("show the history of the {o}", "what happened with the {o} before",
      "past records for the {o}", "{o} history", "when was the {o} last changed",
      "previous entries for the {o}", "timeline of the {o}", "old {o} logs",
      "look back at the {o}", "the {o} over the last year")),
)


def distractor_skills(count: int) -> list[SkillSpec]:
    """``count`` generated skills (field x object x action), deterministic."""
    out: list[SkillSpec] = []
    for field_name, objects in _FIELDS.items():
        for obj in objects:
            for act, desc, templates in _ACTIONS:
                if len(out) == count:
                    return out
                slug = obj.replace(" ", "_")
                ex = tuple(t.format(o=obj, f=field_name) for t in templates)
                out.append(SkillSpec(field_name, f"{field_name}.{slug}_{act}",
                                     desc.format(o=obj, f=field_name), ex, (), ()))
    return out


def max_distractors() -> int:
    return sum(len(objs) for objs in _FIELDS.values()) * len(_ACTIONS)
