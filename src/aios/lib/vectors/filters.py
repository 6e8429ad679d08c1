"""Metadata and the filter language of the vector index.

Each vector carries a flat JSON metadata dict (:func:`check_meta` refuses
anything else).  A filter is a dict of conditions, all of which must hold:
``{"kind": "note"}`` (equal), ``{"tag": ["a", "b"]}`` (any of), or
``{"t": {"$gte": 10, "$lt": 20}}`` (range, also ``$gt``, ``$lte``, ``$ne``).

Equalities are answered from :class:`Postings`, an inverted index of
(key, canonical JSON of the value) -> rows, so ``1`` and ``1.0`` or two
dicts with keys in another order are the same value.  Ranges are checked row
by row with :func:`range_ok`; a value of another type than its bound never
matches (it is not an error: metadata is schemaless).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aios.abi.errors import InvalidArgument

Meta = dict[str, Any]
RANGE_OPS = frozenset({"$gt", "$gte", "$lt", "$lte", "$ne"})


def canon(value: Any) -> str:
    """The canonical JSON text of a metadata value: what equality compares."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def check_meta(meta: Mapping[str, Any] | None) -> Meta:
    """A copy of ``meta`` as a plain dict; :class:`InvalidArgument` unless flat JSON with str keys."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidArgument("metadata must be a dict")
    out = dict(meta)
    for k in out:
        if not isinstance(k, str):
            raise InvalidArgument("metadata keys must be strings")
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadata is not JSON-serialisable: {exc}") from exc
    return out


def split_filters(
    filters: Mapping[str, Any] | None,
) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, Mapping[str, Any]]]]:
    """``filters`` as (equalities: key -> any-of values, ranges: key -> operators), checked."""
    equal: list[tuple[str, list[Any]]] = []
    ranges: list[tuple[str, Mapping[str, Any]]] = []
    for key, cond in (filters or {}).items():
        if isinstance(cond, Mapping):
            if not cond or set(cond) - RANGE_OPS:
                raise InvalidArgument(f"filter on {key!r}: operators are {sorted(RANGE_OPS)}")
            ranges.append((key, cond))
        elif isinstance(cond, list | tuple | set | frozenset):
            equal.append((key, list(cond)))
        else:
            equal.append((key, [cond]))
    return equal, ranges


def range_ok(value: Any, cond: Mapping[str, Any]) -> bool:
    """Whether ``value`` meets every operator of one range condition."""
    for op, bound in cond.items():
        if op == "$ne":
            if value == bound:
                return False
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
            return False
        try:
            if op == "$gt" and not value > bound:
                return False
            if op == "$gte" and not value >= bound:
                return False
            if op == "$lt" and not value < bound:
                return False
            if op == "$lte" and not value <= bound:
                return False
        except TypeError:
            return False
    return True


class Postings:
    """The inverted index: (key, canonical value) -> the rows whose metadata has it."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], set[int]] = {}

    def post(self, item: tuple[str, Any], row: int) -> None:
        self._rows.setdefault((item[0], canon(item[1])), set()).add(row)

    def unpost(self, item: tuple[str, Any], row: int) -> None:
        key = (item[0], canon(item[1]))
        rows = self._rows.get(key)
        if rows is not None:
            rows.discard(row)
            if not rows:
                del self._rows[key]

    def rows(self, key: str, values: Iterable[Any]) -> set[int]:
        """The rows whose ``key`` equals any of ``values``."""
        out: set[int] = set()
        for v in values:
            out |= self._rows.get((key, canon(v)), set())
        return out
