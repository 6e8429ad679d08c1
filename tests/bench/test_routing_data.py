"""The routing benchmark's shape: sizes, splits kept apart, no duplicates."""

from __future__ import annotations

from collections import Counter

from aios.bench import routing_data
from aios.kmod.semantic_ipcd.background import BACKGROUND


def norm(t: str) -> str:
    return " ".join(t.lower().split())


def test_sizes_and_structure() -> None:
    b = routing_data.load()
    assert len(b.skills) >= 150 and len(b.domains) >= 10
    assert len({s.skill for s in b.skills}) == len(b.skills)
    for s in b.skills:
        assert s.description.strip() and s.description.endswith(".")
        assert len(s.examples) == 10 and len(s.test) >= 10 and len(s.validation) >= 4, s.skill
        assert s.skill.split(".")[0] in {"devops", "finance", "travel", "calendar", "docs",
                                         "code", "data", "hr", "support", "security", "home",
                                         "health", "retail"}
    assert sum(len(s.test) for s in b.skills) >= 1500
    assert len(b.oos_validation) + len(b.oos_test) >= 500
    assert len(b.oos_test) >= 250 and len(b.oos_validation) >= 200
    assert set(routing_data.SMALL_REGISTRY) <= {s.skill for s in b.skills}
    assert len(routing_data.SMALL_REGISTRY) == 15


def test_no_utterance_is_shared_or_repeated() -> None:
    b = routing_data.load()
    seen: Counter[str] = Counter()
    for s in b.skills:
        for split in (s.examples, s.validation, s.test):
            seen.update(norm(u) for u in split)
    seen.update(norm(u) for u in (*b.oos_validation, *b.oos_test))
    assert [u for u, n in seen.items() if n > 1] == []
    # the router's built-in background set is not benchmark text either
    assert not {norm(t) for t in BACKGROUND} & set(seen)


def test_near_duplicate_families_exist() -> None:
    """Deliberately close skills: same object, different operation."""
    names = {s.skill for s in routing_data.load().skills}
    for family in (("travel.flight_book", "travel.flight_change", "travel.flight_cancel",
                    "travel.flight_status"),
                   ("hr.leave_request", "hr.leave_cancel", "hr.leave_status", "hr.leave_balance"),
                   ("support.ticket_create", "support.ticket_status", "support.ticket_update",
                    "support.ticket_close")):
        assert set(family) <= names


def test_distractors_reach_a_thousand_and_are_deterministic() -> None:
    b = routing_data.load()
    extra = routing_data.distractor_skills(1000 - len(b.skills))
    assert len(b.skills) + len(extra) == 1000
    assert extra == routing_data.distractor_skills(1000 - len(b.skills))
    assert len({s.skill for s in extra}) == len(extra)
    assert not {s.skill.split(".")[0] for s in extra} & set(b.domains)
    assert all(len(s.examples) == 10 for s in extra)
