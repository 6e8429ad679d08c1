"""Capability spaces, seL4-style.

Authority in AIOS is held, never looked up.  Each agent owns a
:class:`CapabilitySpace`: a vector of slots, each empty or holding a
:class:`Capability` that names one kernel object (:class:`KObject`: an agent,
a mailbox endpoint, a memory region, a pool, an event topic, a device, a
service, the name directory, or an *authority*, the quota-bearing object
from which agents and memory are made) together with rights and a badge.
Every syscall names the slot it uses; :meth:`CapabilitySpace.lookup` is an
index, a validity test and a mask test: O(1), no search, no policy.

Derivation.  Capabilities form a derivation tree (seL4's CDT).  ``mint`` and
``copy`` make a child of the source in the caller's space; ``grant`` makes a
child in another agent's space.  The rules are the ones seL4 gives:

* minting only narrows: the child's rights are ``requested & source``, so
  asking for more silently yields the intersection;
* a badge is set once: minting an unbadged capability may badge it, a badged
  one keeps its badge (asking for a different one is an error);
* revoking a capability invalidates every descendant, in every agent, before
  the call returns, and leaves the capability itself valid;
* deleting the last capability to an object destroys the object.

Quotas.  An authority capability carries limits and usage; the rules for
charging them along the derivation chain, the IPC token buckets and the
quota envelopes that outlive their holders (ghosts) are in
:mod:`aios.kernel.quotas`.  This module keeps the tree operations a ghost
needs: :meth:`CapabilityDerivationTree.delete` leaves an authority with
children or charges behind as a ghost, and ``_tidy`` drops or splices it out
once it constrains nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aios.abi import limits
from aios.abi.errors import (
    AgentGone,
    InvalidArgument,
    InvalidCapability,
    KernelPanic,
    PermissionDenied,
    QuotaExceeded,
)
from aios.abi.rights import ObjKind, Rights, rights_names
from aios.kernel import quotas
from aios.kernel.quotas import Charge, Quota, Resource


class KObject:
    """A kernel object that capabilities name.  ``refs`` counts capabilities."""

    __slots__ = ("destroyed", "kind", "oid", "on_destroy", "payload", "refs")

    def __init__(
        self,
        kind: ObjKind,
        oid: int,
        payload: Any = None,
        on_destroy: Callable[[KObject], None] | None = None,
    ) -> None:
        self.kind = kind
        self.oid = oid
        self.payload = payload
        self.refs = 0
        self.on_destroy = on_destroy
        self.destroyed = False


class CapObserver(Protocol):
    """Sees every change to the derivation tree as it is decided (the kernel journal):
    ``installed`` after a capability took its slot, ``revoked`` and ``deleted`` before
    their consequences (invalidated descendants, released objects, killed agents) run."""

    def installed(self, cap: Capability) -> None: ...

    def revoked(self, cap: Capability) -> None: ...

    def deleted(self, cap: Capability) -> None: ...


class Capability:
    """One slot's contents: an object, rights, a badge, and its place in the CDT."""

    __slots__ = (
        "badge",
        "bucket",
        "bucket_t",
        "charges",
        "children",
        "cid",
        "ghost",
        "holder",
        "limits",
        "obj",
        "parent",
        "rights",
        "slot",
        "used",
        "valid",
    )

    def __init__(self, obj: KObject, rights: Rights, badge: int, parent: Capability | None) -> None:
        self.obj = obj
        self.rights = rights
        self.badge = badge
        self.parent = parent
        self.children: list[Capability] = []
        self.holder = 0  # agent id holding it
        self.slot = -1
        self.valid = True
        self.ghost = False  # an authority whose holder is gone, kept for its subtree's quota
        self.cid = 0  # the journal's id for it (0: not journaled)
        # authority capabilities only:
        self.limits: list[int | None] | None = None
        self.used: list[int] | None = None
        self.bucket = 0.0
        self.bucket_t = 0
        self.charges: set[Charge] | None = None

    def depth(self) -> int:
        d, c = 0, self.parent
        while c is not None:
            d += 1
            c = c.parent
        return d

    def ancestors(self) -> Iterator[Capability]:
        c = self.parent
        while c is not None:
            yield c
            c = c.parent

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "slot": self.slot,
            "kind": self.obj.kind.name,
            "object": self.obj.oid,
            "rights": rights_names(self.rights),
            "badge": self.badge,
            "depth": self.depth(),
        }
        if self.limits is not None and self.used is not None:
            d["quota"] = {r.name.lower(): self.limits[r] for r in Resource}
            d["used"] = {r.name.lower(): self.used[r] for r in Resource}
        return d


class CapabilityDerivationTree:
    """Operations that span capability spaces: derive, revoke, delete, charge.

    ``release`` is called with every capability that stops being valid, so the
    kernel can destroy what it built; ``clock`` gives nanoseconds for buckets.
    """

    def __init__(
        self,
        clock: Callable[[], int],
        release: Callable[[Capability, list[Charge]], None],
    ) -> None:
        self._clock = clock
        self._release = release
        self._spaces: dict[int, CapabilitySpace] = {}
        self._next_oid = 1
        # False only under aios.kernel.confinement.weaken_for_tests (security mutants)
        self.enforce_rights = True
        # set by the kernel while an agent's space is dropped: (message, detail, objects):
        # holders of capabilities to those objects (the agent itself, its mailbox) that are
        # invalidated with it get AgentGone(message, **detail) for that slot, not EBADCAP
        self.epitaph: tuple[str, dict[str, Any], tuple[KObject, ...]] | None = None
        self._quiet = 0  # > 0 while a subtree is being invalidated
        self._dirty: list[Capability] = []  # ghosts to tidy once it is done
        self.observer: CapObserver | None = None  # the kernel journal, when one is installed

    # -- objects and spaces ------------------------------------------------

    def new_object(
        self, kind: ObjKind, payload: Any = None, on_destroy: Callable[[KObject], None] | None = None
    ) -> KObject:
        oid = self._next_oid
        self._next_oid += 1
        return KObject(kind, oid, payload, on_destroy)

    def new_space(self, holder: int) -> CapabilitySpace:
        cs = CapabilitySpace(holder, self)
        self._spaces[holder] = cs
        return cs

    def space(self, holder: int) -> CapabilitySpace:
        return self._spaces[holder]

    def spaces(self) -> Iterator[CapabilitySpace]:
        """Every capability space (the kernel's own, holder 0, included)."""
        return iter(list(self._spaces.values()))

    def drop_space(self, holder: int) -> None:
        cs = self._spaces.get(holder)
        if cs is None:
            return
        for cap in list(cs.caps()):
            self.delete(cap)
        del self._spaces[holder]
        cs.clear()

    # -- derivation ----------------------------------------------------------

    def root(self, space: CapabilitySpace, obj: KObject, rights: Rights, badge: int = 0,
             quota: Quota | None = None) -> Capability:
        """A capability with no parent: only the kernel makes these (boot, new objects)."""
        cap = Capability(obj, rights, badge, None)
        if obj.kind is ObjKind.AUTHORITY:
            quotas.open_envelope(cap, quotas.root_limits(quota), self._clock())
        space.install(cap)
        if self.observer is not None:
            self.observer.installed(cap)
        return cap

    def derive(
        self,
        src: Capability,
        dest: CapabilitySpace,
        rights: Rights,
        badge: int | None = None,
        quota: Quota | None = None,
        slot: int | None = None,
    ) -> Capability:
        """Child of ``src`` in ``dest`` with ``rights & src.rights`` (mint only narrows)."""
        if not src.valid:
            raise InvalidCapability("source capability was revoked")
        if src.depth() + 1 > limits.CDT_MAX_DEPTH:
            raise InvalidArgument("capability derivation chain too deep")
        if badge is not None and badge != 0 and src.badge not in (0, badge):
            raise InvalidArgument("a badge is set once: this capability is already badged")
        new_badge = src.badge if src.badge else (badge or 0)
        if not isinstance(new_badge, int) or new_badge < 0 or new_badge >= 1 << 63:
            raise InvalidArgument("badge must be an int in [0, 2**63)")
        cap = Capability(src.obj, Rights(rights & src.rights), new_badge, src)
        if src.limits is not None:
            quotas.open_envelope(cap, quotas.derived_limits(src.limits, quota), self._clock())
        dest.install(cap, slot)
        src.children.append(cap)
        if self.observer is not None:
            self.observer.installed(cap)
        return cap

    def revoke(self, cap: Capability) -> int:
        """Invalidate every descendant of ``cap`` everywhere; ``cap`` stays valid.

        Returns how many capabilities were invalidated.  What the descendants
        paid for is refunded up the chain and handed to ``release``.
        """
        if not cap.valid:
            raise InvalidCapability("capability was revoked")
        if self.observer is not None and cap.children:
            self.observer.revoked(cap)
        children, cap.children = cap.children, []
        return self._invalidate_subtree(*children)

    def _invalidate_subtree(self, *tops: Capability) -> int:
        # ghosts are tidied once the whole subtree is gone, not while it is half-cut
        self._quiet += 1
        try:
            return self._invalidate(tops)
        finally:
            self._quiet -= 1
            if not self._quiet and self._dirty:
                dirty, self._dirty = self._dirty, []
                for g in dirty:
                    self._tidy(g)

    def _invalidate(self, tops: tuple[Capability, ...]) -> int:
        epitaph = self.epitaph
        doomed: list[Capability] = []
        stack = list(tops)
        while stack:
            c = stack.pop()
            stack.extend(c.children)
            doomed.append(c)
        # refund while the parent links still reach the surviving ancestors
        released: list[list[Charge]] = []
        for c in doomed:
            charges = list(c.charges) if c.charges else []
            for ch in charges:
                self.uncharge(ch)
            released.append(charges)
        # all of it is invalid before anything is released: releasing kills agents, and
        # their exits delete capabilities, which must find doomed ones already gone
        for c in doomed:
            c.valid = False
        for c, charges in zip(doomed, released, strict=True):
            c.children = []
            c.parent = None
            sp = self._spaces.get(c.holder)
            if sp is not None:
                sp.remove(c, epitaph[:2] if epitaph is not None and any(c.obj is o for o in epitaph[2]) else None)
            if c.ghost:  # it gave up its object when it became a ghost
                c.ghost = False
            else:
                self._drop_ref(c.obj)
            self._release(c, charges)
        return len(doomed)

    def delete(self, cap: Capability) -> None:
        """Remove ``cap`` from its slot.  Its children and what it paid for are
        adopted by its parent (seL4 delete semantics), except that an authority
        with children or charges stays behind as a ghost (see the module
        docstring); a root's subtree is revoked.  The last capability to an
        object destroys it."""
        if not cap.valid or cap.ghost:
            return
        if self.observer is not None:
            self.observer.deleted(cap)
        sp = self._spaces.get(cap.holder)
        if sp is not None:
            sp.remove(cap)
        parent = cap.parent
        charges: list[Charge] = []
        if parent is not None and cap.limits is not None and (cap.children or cap.charges):
            cap.ghost = True
            self._drop_ref(cap.obj)
            self._tidy(cap)
            return
        if parent is not None:
            try:
                parent.children.remove(cap)
            except ValueError:
                raise KernelPanic("CDT child missing from its parent") from None
            for ch in cap.children:
                ch.parent = parent
                parent.children.append(ch)
            if cap.charges:
                if parent.charges is None:
                    raise KernelPanic("authority capability derived from a non-authority")
                for chg in cap.charges:
                    chg.cap = parent
                    parent.charges.add(chg)
        else:
            for ch in list(cap.children):
                self._invalidate_subtree(ch)
            charges = list(cap.charges) if cap.charges else []
            for chg in charges:
                self.uncharge(chg)
        cap.children = []
        cap.charges = set() if cap.charges is not None else None
        cap.valid = False
        self._drop_ref(cap.obj)
        self._release(cap, charges)
        if parent is not None and parent.ghost:
            self._tidy(parent)

    def _tidy(self, cap: Capability | None) -> None:
        """Drop ghosts that hold nothing any more; splice out one that only repeats its
        single child's limits.  Walks up while ghosts empty out."""
        if self._quiet:
            if cap is not None and cap.ghost:
                self._dirty.append(cap)
            return
        while cap is not None and cap.ghost and cap.valid:
            parent = cap.parent
            if cap.charges:
                return
            if parent is None or cap not in parent.children:
                raise KernelPanic("CDT ghost missing from its parent")
            if not cap.children:
                parent.children.remove(cap)
                cap.valid = False
                cap.ghost = False
                cap.parent = None
                cap = parent
                continue
            if len(cap.children) == 1 and quotas.within(cap.children[0], cap):
                child = cap.children[0]
                child.parent = parent
                parent.children[parent.children.index(cap)] = child
                cap.children = []
                cap.valid = False
                cap.ghost = False
                cap.parent = None
            return

    def _drop_ref(self, obj: KObject) -> None:
        obj.refs -= 1
        if obj.refs == 0 and not obj.destroyed:
            obj.destroyed = True
            if obj.on_destroy is not None:
                obj.on_destroy(obj)

    # -- quotas (the arithmetic is in aios.kernel.quotas) ------------------------

    @staticmethod
    def check(cap: Capability, res: Resource, amount: int) -> None:
        """Raise QuotaExceeded now if charging ``amount`` to ``cap`` would fail (a cheap
        early refusal for operations that would build a lot before charging)."""
        quotas.check(cap, res, amount)

    @staticmethod
    def charge(cap: Capability, res: Resource, amount: int, what: Any = None) -> Charge:
        """Charge ``amount`` of ``res`` to ``cap`` and every ancestor, or nothing."""
        return quotas.charge(cap, res, amount, what)

    @staticmethod
    def grow(chg: Charge, amount: int, force: bool = False) -> None:
        """Add ``amount`` to a live charge, at its capability and every ancestor, or
        raise QuotaExceeded and change nothing (``force``: add it regardless)."""
        quotas.grow(chg, amount, force)

    @staticmethod
    def shrink(chg: Charge, amount: int) -> None:
        """Give back part of a charge (at most what it holds)."""
        quotas.shrink(chg, amount)

    def uncharge(self, chg: Charge) -> None:
        """Give back a charge (the resource was freed).  Idempotent.  A ghost that
        paid for it may now hold nothing and go."""
        cap = quotas.uncharge(chg)
        if cap is not None and cap.ghost:
            self._tidy(cap)

    def take_tokens(self, cap: Capability, n: int) -> None:
        """IPC rate: take ``n`` tokens from the bucket at every level, or none."""
        quotas.take_tokens(cap, n, self._clock())

    @staticmethod
    def weight_ceiling(cap: Capability) -> int | None:
        return quotas.weight_ceiling(cap)


class CapabilitySpace:
    """One agent's slots.  ``lookup`` is the O(1) check every syscall makes."""

    __slots__ = ("_epitaphs", "_free", "_slots", "cdt", "holder")

    def __init__(self, holder: int, cdt: CapabilityDerivationTree) -> None:
        self.holder = holder
        self.cdt = cdt
        self._slots: list[Capability | None] = []
        self._free: list[int] = []
        # slot -> why it was emptied, for capabilities invalidated because their
        # object's owner ended (until the slot is used again)
        self._epitaphs: dict[int, tuple[str, dict[str, Any]]] = {}

    def install(self, cap: Capability, slot: int | None = None) -> int:
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                if len(self._slots) >= limits.CSPACE_SLOTS:
                    raise QuotaExceeded("capability space is full")
                slot = len(self._slots)
                self._slots.append(None)
        elif slot < len(self._slots) and self._slots[slot] is not None:
            raise InvalidArgument(f"slot {slot} is occupied")
        else:
            while len(self._slots) <= slot:
                self._free.append(len(self._slots))
                self._slots.append(None)
            self._free.remove(slot)
        self._slots[slot] = cap
        cap.holder = self.holder
        cap.slot = slot
        cap.obj.refs += 1
        if self._epitaphs:
            self._epitaphs.pop(slot, None)
        return slot

    def remove(self, cap: Capability, epitaph: tuple[str, dict[str, Any]] | None = None) -> None:
        s = cap.slot
        if 0 <= s < len(self._slots) and self._slots[s] is cap:
            self._slots[s] = None
            self._free.append(s)
            if epitaph is not None:
                self._epitaphs[s] = epitaph

    def get(self, slot: Any) -> Capability:
        if type(slot) is not int or slot < 0 or slot >= len(self._slots):
            raise InvalidCapability(f"no capability in slot {slot!r}")
        cap = self._slots[slot]
        if cap is None:
            ep = self._epitaphs.get(slot) if self._epitaphs else None
            if ep is not None:  # not a forged slot: what it named ended with its owner
                raise AgentGone(f"slot {slot}: {ep[0]}", **ep[1])
            raise InvalidCapability(f"no capability in slot {slot}")
        return cap

    def lookup(self, slot: Any, kind: ObjKind, need: Rights) -> Capability:
        """The capability in ``slot`` if it names a ``kind`` object with ``need`` rights."""
        cap = self.get(slot)
        if cap.obj.kind is not kind:
            raise InvalidCapability(f"slot {slot} holds a {cap.obj.kind.name}, not a {kind.name}")
        if cap.rights & need != need and self.cdt.enforce_rights:
            missing = rights_names(Rights(need & ~cap.rights))
            raise PermissionDenied(f"slot {slot} lacks {', '.join(missing)}")
        return cap

    def clear(self) -> None:
        """Forget every slot (the space's holder is gone; its capabilities were deleted)."""
        self._slots = []
        self._free = []
        self._epitaphs = {}

    def caps(self) -> Iterator[Capability]:
        for c in self._slots:
            if c is not None:
                yield c

    def __len__(self) -> int:
        return len(self._slots) - len(self._free)
