"""Quotas: what an authority capability may build, and what it has built.

An authority capability (:class:`~aios.kernel.capabilities.Capability` naming
an ``AUTHORITY`` object) carries a :class:`Quota`: memory bytes, number of
agents, IPC messages per second, maximum CPU weight.  Its *envelope* is that
quota as a list of limits (one per :class:`Resource`, ``None`` = unlimited)
with a list of amounts used, the set of :class:`Charge` records it paid for,
and an IPC token bucket.  This module is the arithmetic of envelopes; the
derivation tree that links them is :mod:`aios.kernel.capabilities`.

Derivation narrows.  A child authority is minted with at most its parent's
limits (:func:`derived_limits`: a field left ``None`` inherits the parent's
limit, a given one is capped by it), so no chain of mints widens a quota.

Charging walks the chain.  Consumption (bytes, agents) is charged to the
capability that paid and to every ancestor, all or nothing: :func:`charge`
first checks every level, then adds at every level, so a subtree never uses
more than its root allows and a refused charge changes nothing.  The record of
what was paid (:class:`Charge`) stays on the paying capability, so revoking it
refunds the ancestors and lets the kernel destroy what the revoked subtree
built, as revoking an Untyped does in seL4.  A charge can grow and shrink in
place (:func:`grow`, :func:`shrink`), which is how kernel buffers are billed
(:mod:`aios.kernel.accounts`).  IPC rate is a token bucket at each level of
the chain, refilled from the kernel clock (:func:`take_tokens`); CPU weight is
a ceiling, not a sum (:func:`weight_ceiling`).

Quota envelopes outlive their holders.  Deleting an authority capability that
still has derived children or charges (its holder died, leaving children,
zombies or queued buffers behind) does not hand them to its parent: the
capability leaves its slot but stays in the derivation tree as a *ghost* that
keeps its envelope, so a quota of four agents bounds everything ever built
from it, however many of the builders have died (otherwise a clone loop
escapes its quota: each clone dies and leaves its clones to the grandparent's
larger limit).  A ghost disappears when its last child and charge are gone
(:func:`uncharge` returns the capability that paid so the tree can check),
and is spliced out of a chain when it constrains nothing its only child does
not (:func:`within`), so a chain of generations does not deepen the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, InvalidCapability, QuotaExceeded

if TYPE_CHECKING:
    from aios.kernel.capabilities import Capability


class Resource(IntEnum):
    MEMORY = 0  # bytes, consumed while allocated
    AGENTS = 1  # live agents, consumed while alive
    IPC_RATE = 2  # messages per second, token bucket per level
    CPU_WEIGHT = 3  # ceiling on an agent's scheduling weight


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits of an authority capability; ``None`` means "as much as the parent"."""

    memory: int | None = None
    agents: int | None = None
    ipc_rate: int | None = None
    cpu_weight: int | None = None

    @staticmethod
    def from_dict(d: Any) -> Quota:
        if d is None:
            return Quota()
        if not isinstance(d, dict):
            raise InvalidArgument("quota must be a dict")
        allowed = {"memory", "agents", "ipc_rate", "cpu_weight"}
        for k, v in d.items():
            if k not in allowed:
                raise InvalidArgument(f"unknown quota field {k!r}")
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidArgument(f"quota {k} must be a non-negative int")
        return Quota(**d)

    def to_dict(self) -> dict[str, int | None]:
        return {
            "memory": self.memory,
            "agents": self.agents,
            "ipc_rate": self.ipc_rate,
            "cpu_weight": self.cpu_weight,
        }

    def limits(self) -> list[int | None]:
        """The quota as one limit per :class:`Resource`, in order."""
        return [self.memory, self.agents, self.ipc_rate, self.cpu_weight]


class Charge:
    """A record that ``amount`` of ``res`` is held on behalf of ``what`` and paid by ``cap``."""

    __slots__ = ("amount", "cap", "res", "what")

    def __init__(self, res: Resource, amount: int, what: Any, cap: Capability | None) -> None:
        self.res = res
        self.amount = amount
        self.what = what
        self.cap = cap


# -- envelopes -------------------------------------------------------------------


def root_limits(quota: Quota | None) -> list[int | None]:
    """Limits of a root authority: exactly ``quota`` (no quota: unlimited)."""
    return (quota or Quota()).limits()


def derived_limits(parent: list[int | None], quota: Quota | None) -> list[int | None]:
    """Limits of a child minted with ``quota`` from an authority with ``parent``'s."""
    lim: list[int | None] = []
    for want, have in zip((quota or Quota()).limits(), parent, strict=True):
        if want is None:
            lim.append(have)
        elif have is None:
            lim.append(want)
        else:
            lim.append(min(want, have))
    return lim


def open_envelope(cap: Capability, limits: list[int | None], now_ns: int) -> None:
    """Make ``cap`` an authority with ``limits``, nothing used, a full IPC bucket."""
    cap.limits = limits
    cap.used = [0] * len(Resource)
    cap.charges = set()
    cap.bucket = float(limits[Resource.IPC_RATE] or 0)
    cap.bucket_t = now_ns


def within(child: Capability, ghost: Capability) -> bool:
    """Every limit of ``child`` is at most ``ghost``'s (None: unlimited).

    A ghost whose only child is within it constrains nothing the child does
    not, so the tree may splice it out."""
    cl, gl = child.limits, ghost.limits
    if cl is None or gl is None:
        return False
    return all(g is None or (c is not None and c <= g) for c, g in zip(cl, gl, strict=True))


# -- charging along the chain -------------------------------------------------------


def check(cap: Capability, res: Resource, amount: int) -> None:
    """Raise QuotaExceeded if ``amount`` more of ``res`` would exceed any level's limit."""
    c: Capability | None = cap
    while c is not None:
        lim = c.limits[res] if c.limits is not None else None
        if lim is not None and c.used is not None and c.used[res] + amount > lim:
            raise QuotaExceeded(
                f"{res.name.lower()} quota: {c.used[res]} + {amount} > {lim}", resource=res.name
            )
        c = c.parent


def _add(cap: Capability | None, res: Resource, amount: int) -> None:
    c = cap
    while c is not None:
        if c.used is not None:
            c.used[res] += amount
        c = c.parent


def _sub(cap: Capability | None, res: Resource, amount: int) -> None:
    c = cap
    while c is not None:
        if c.used is not None:
            c.used[res] = max(0, c.used[res] - amount)
        c = c.parent


def charge(cap: Capability, res: Resource, amount: int, what: Any = None) -> Charge:
    """Charge ``amount`` of ``res`` to ``cap`` and every ancestor, or nothing."""
    if cap.used is None or cap.limits is None or cap.charges is None:
        raise InvalidCapability("not an authority capability")
    if not cap.valid:
        raise InvalidCapability("capability was revoked")
    if amount < 0:
        raise InvalidArgument("negative charge")
    check(cap, res, amount)
    _add(cap, res, amount)
    chg = Charge(res, amount, what, cap)
    cap.charges.add(chg)
    return chg


def grow(chg: Charge, amount: int, force: bool = False) -> None:
    """Add ``amount`` to a live charge, at its capability and every ancestor, or
    raise QuotaExceeded and change nothing (``force``: add it regardless)."""
    cap = chg.cap
    if cap is None:
        raise QuotaExceeded("the authority that paid has been revoked", resource=chg.res.name)
    if not force:
        check(cap, chg.res, amount)
    _add(cap, chg.res, amount)
    chg.amount += amount


def shrink(chg: Charge, amount: int) -> None:
    """Give back part of a charge (at most what it holds)."""
    amount = min(amount, chg.amount)
    if amount <= 0:
        return
    chg.amount -= amount
    _sub(chg.cap, chg.res, amount)


def uncharge(chg: Charge) -> Capability | None:
    """Give back a charge (the resource was freed); return the capability that had
    paid (None: already given back).  Idempotent."""
    cap = chg.cap
    if cap is None:
        return None
    chg.cap = None
    if cap.charges is not None:
        cap.charges.discard(chg)
    _sub(cap, chg.res, chg.amount)
    return cap


def take_tokens(cap: Capability, n: int, now_ns: int) -> None:
    """IPC rate: take ``n`` tokens from the bucket at every level, or none."""
    c: Capability | None = cap
    while c is not None:
        rate = c.limits[Resource.IPC_RATE] if c.limits is not None else None
        if rate is not None:
            dt = now_ns - c.bucket_t
            if dt > 0:
                c.bucket = min(float(rate), c.bucket + rate * dt / 1e9)
                c.bucket_t = now_ns
            if c.bucket < n:
                raise QuotaExceeded(f"IPC rate quota of {rate}/s exceeded", resource="IPC_RATE")
        c = c.parent
    c = cap
    while c is not None:
        if c.limits is not None and c.limits[Resource.IPC_RATE] is not None:
            c.bucket -= n
        c = c.parent


def weight_ceiling(cap: Capability) -> int | None:
    """The CPU-weight ceiling ``cap`` imposes (None: not an authority, or unlimited)."""
    return cap.limits[Resource.CPU_WEIGHT] if cap.limits is not None else None
