"""The filter language of the vector index, on its own."""

from __future__ import annotations

import pytest

from aios.abi.errors import InvalidArgument
from aios.lib.vectors.filters import Postings, check_meta, range_ok, split_filters


def test_check_meta_copies_and_refuses_non_json() -> None:
    src = {"a": 1}
    out = check_meta(src)
    assert out == src and out is not src
    assert check_meta(None) == {}
    for bad in ([("a", 1)], {1: "x"}, {"x": object()}):
        with pytest.raises(InvalidArgument):
            check_meta(bad)  # type: ignore[arg-type]


def test_split_filters_sorts_equalities_from_ranges() -> None:
    equal, ranges = split_filters({"kind": "note", "tag": ("a", "b"), "t": {"$gte": 1}})
    assert equal == [("kind", ["note"]), ("tag", ["a", "b"])]
    assert ranges == [("t", {"$gte": 1})]
    assert split_filters(None) == ([], [])
    for bad in ({"t": {}}, {"t": {"$regex": "x"}}):
        with pytest.raises(InvalidArgument, match="operators"):
            split_filters(bad)


def test_range_ok() -> None:
    assert range_ok(5, {"$gte": 5, "$lt": 6})
    assert not range_ok(6, {"$gte": 5, "$lt": 6})
    assert range_ok("b", {"$gt": "a"})
    assert not range_ok("b", {"$gt": 1})  # another type never matches
    assert not range_ok(True, {"$gte": 0})  # a bool is not a number here
    assert not range_ok(None, {"$lte": 3})
    assert range_ok(None, {"$ne": 3}) and not range_ok(3, {"$ne": 3})


def test_postings_match_canonical_values_and_forget_empty_keys() -> None:
    p = Postings()
    p.post(("n", 1), 10)
    p.post(("d", {"b": 1, "a": 2}), 11)
    p.post(("n", 2), 12)
    assert p.rows("n", [1]) == {10}
    assert p.rows("n", [1, 2, 3]) == {10, 12}
    assert p.rows("d", [{"a": 2, "b": 1}]) == {11}  # key order does not matter
    p.unpost(("n", 1), 10)
    p.unpost(("n", 1), 10)  # twice is harmless
    assert p.rows("n", [1]) == set()
    assert ("n", "1") not in p._rows
