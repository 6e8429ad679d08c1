"""Record encoding: every type round-trips, kinds are unique, bad bytes are integrity errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aios.abi.errors import IntegrityError
from aios.kmod.journal import records as R

SAMPLE: dict[str, Any] = {
    "int": 7, "str": "x", "dict[str, Any]": {"a": [1, {"b": b"\x00"}]}, "Any": [1, "two"],
    "bytes": b"\xff\x00", "bool": True, "tuple[int | None, ...] | None": (1, None, 3, 4),
    "tuple[int, ...]": (1, 2), "list[int]": [3, 4],
    "list[tuple[str, int, int]]": [["m", 1, 2]], "list[tuple[int, int, str]]": [[1, 2, "e"]],
    "tuple[int, int, int, int]": [1, 2, 3, 4],
}  # fmt: skip


def _sample(t: type[R.Record]) -> R.Record:
    args = [SAMPLE[str(f.type)] for f in dataclasses.fields(t)]  # type: ignore[arg-type]
    return t(*args)


@pytest.mark.parametrize("t", R.RECORD_TYPES, ids=lambda t: t.__name__)
def test_every_record_type_roundtrips(t: type[R.Record]) -> None:
    rec = _sample(t)
    kind, body = R.encode(rec)
    assert kind == t.KIND and R.decode(kind, body) == rec


def test_kinds_are_unique() -> None:
    kinds = [t.KIND for t in R.RECORD_TYPES]
    assert len(kinds) == len(set(kinds)) and 0 not in kinds


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x91\x01", b"\x9a" + b"\x01" * 10, b"\x92\x01\x02\x03"])
def test_malformed_bodies_are_integrity_errors(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        R.decode(R.AgentExited.KIND, body)
    with pytest.raises(IntegrityError):
        R.decode(999, body)
