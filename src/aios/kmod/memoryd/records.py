"""memoryd's vocabulary: rights, tiers, retention rules and the records it returns.

Everything here is a value: frozen, slotted dataclasses and enums that cross
the syscall boundary unchanged.  :class:`MemRight` is the set of rights a
memory-fabric capability carries; :func:`require` is the one place a missing
right becomes :class:`~aios.abi.errors.PermissionDenied`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntFlag, StrEnum
from typing import Any

from aios.abi.errors import InvalidArgument, PermissionDenied


class MemRight(IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2
    GRANT = 4
    ALL = 7


Rights = MemRight | Iterable[str]


def as_rights(rights: Rights) -> MemRight:
    """Accept a :class:`MemRight` or names like ``{"read", "write"}``."""
    if isinstance(rights, MemRight):
        return rights
    if isinstance(rights, int):
        return MemRight(rights)
    out = MemRight.NONE
    for r in rights:
        try:
            out |= MemRight[str(r).upper()]
        except KeyError:
            raise InvalidArgument(f"unknown memory right {r!r} (read, write, grant)") from None
    return out


class Tier(StrEnum):
    CORE = "core"
    RECALL = "recall"
    ARCHIVAL = "archival"


@dataclass(frozen=True, slots=True)
class Retention:
    ttl_s: float | None = None
    max_items: int | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    owner: str
    created: float
    quota_items: int
    quota_bytes: int
    retention: dict[Tier, Retention]


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    namespace: str
    tier: Tier
    text: str
    meta: dict[str, Any]
    created: float
    expires: float | None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    record: Record
    score: float


@dataclass(frozen=True, slots=True)
class CoreBlock:
    namespace: str
    label: str
    value: str
    limit: int
    version: int
    updated: float


@dataclass(frozen=True, slots=True)
class Usage:
    items: int
    bytes: int
    quota_items: int
    quota_bytes: int
    by_tier: dict[Tier, int]


@dataclass(frozen=True, slots=True)
class CompactionReport:
    expired: int
    evicted: int
    indexes_rebuilt: int


def require(rights: Rights, want: MemRight, ns: str, what: str) -> None:
    have = as_rights(rights)
    if want & ~have:
        missing = ", ".join(r.name.lower() for r in MemRight if r in (want & ~have)
                            and r not in (MemRight.NONE, MemRight.ALL) and r.name)
        raise PermissionDenied(f"{what} on memory namespace {ns!r} needs the {missing} right")
