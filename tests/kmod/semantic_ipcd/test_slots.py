from __future__ import annotations

from aios.kmod.semantic_ipcd.slots import extract_slots


def test_typed_slots() -> None:
    s = extract_slots('Email "the Q3 deck" to ann@example.com by May 3 at 3:30 pm, '
                      "see https://ex.com/x; budget $200 or 15% of 1,250.5")
    assert s["quoted"] == ["the Q3 deck"]
    assert s["email"] == ["ann@example.com"]
    assert s["url"] == ["https://ex.com/x"]
    assert s["date"] == ["May 3"] and s["time"] == ["3:30 pm"]
    assert s["money"] == ["$200"] and s["percent"] == ["15%"]
    assert s["number"] == [1250.5]


def test_relative_dates_numbers_and_nothing() -> None:
    s = extract_slots("move it to next Tuesday, 2025-01-09 or tomorrow; 42 people")
    assert s["date"] == ["next Tuesday", "2025-01-09", "tomorrow"]
    assert s["number"] == [42]
    assert extract_slots("hello there") == {}
