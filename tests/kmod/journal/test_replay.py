"""Replay against the kernel's own capability tables: the same operations, the same state.

A random sequence of operations runs on the real ``CapabilityDerivationTree``
(``kernel/capabilities.py``) while a recorder writes the records the kernel
module will journal for them; folding those records must give exactly the
kernel's valid capabilities (holder, slot, object, rights, badge, parent), its
per-authority usage and its live objects.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from aios.abi.errors import AIOSError, IntegrityError
from aios.abi.rights import ObjKind, Rights
from aios.kernel.capabilities import Capability, CapabilityDerivationTree, KObject
from aios.kernel.quotas import Charge, Quota, Resource
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage


class Recorder:
    """The kernel's CDT plus the records a journaling kernel would write."""

    def __init__(self) -> None:
        self.cdt = CapabilityDerivationTree(lambda: 0, lambda cap, charges: None)
        self.spaces = {h: self.cdt.new_space(h) for h in range(1, 6)}
        self.cid: dict[int, int] = {}  # id(Capability) -> cid
        self.caps: dict[int, Capability] = {}
        self.chid: dict[int, int] = {}
        self.charges: dict[int, Charge] = {}
        self.objects: list[KObject] = []
        self.records: list[R.Record] = []
        self.n = 0

    def _new_cid(self, cap: Capability) -> int:
        self.n += 1
        self.cid[id(cap)] = self.n
        self.caps[self.n] = cap
        return self.n

    def _install(self, cap: Capability) -> None:
        cid = self._new_cid(cap)
        parent = self.cid[id(cap.parent)] if cap.parent is not None else 0
        limits = tuple(cap.limits) if cap.limits is not None else None
        self.records.append(R.CapInstalled(cid, cap.holder, cap.slot, cap.obj.oid, int(cap.rights),
                                           cap.badge, parent, limits))  # fmt: skip

    def valid(self) -> list[Capability]:
        # a ghost is in the tree but in no one's slot: nothing can name it
        return [c for c in self.caps.values() if c.valid and not c.ghost]

    def step(self, rng: random.Random) -> None:
        op = rng.choice(["root", "derive", "derive", "derive", "revoke", "delete", "charge",
                         "charge", "uncharge"])  # fmt: skip
        valid = self.valid()
        if op == "root" or not valid:
            kind = rng.choice([ObjKind.AUTHORITY, ObjKind.ENDPOINT, ObjKind.MEMNS])
            obj = self.cdt.new_object(kind, None)
            self.objects.append(obj)
            ref = f"ns{obj.oid}" if kind is ObjKind.MEMNS else rng.randrange(1, 6)
            self.records.append(R.ObjectCreated(obj.oid, int(kind), ref))
            q = Quota(memory=rng.choice([None, 1 << 20]), agents=rng.choice([None, 8]))
            cap = self.cdt.root(self.spaces[rng.randrange(1, 6)], obj, Rights(rng.randrange(1, 1 << 14)),
                                quota=q if kind is ObjKind.AUTHORITY else None)
            self._install(cap)
        elif op == "derive":
            src = rng.choice(valid)
            try:
                cap = self.cdt.derive(src, self.spaces[rng.randrange(1, 6)],
                                      Rights(rng.randrange(1, 1 << 14)), badge=rng.choice([None, 0, 5]),
                                      quota=Quota(memory=rng.choice([None, 1 << 19])))
            except AIOSError:
                return  # refused: nothing journaled
            self._install(cap)
        elif op == "revoke":
            cap = rng.choice(valid)
            self.cdt.revoke(cap)
            self.records.append(R.CapRevoked(self.cid[id(cap)]))
        elif op == "delete":
            cap = rng.choice(valid)
            self.cdt.delete(cap)
            self.records.append(R.CapDeleted(self.cid[id(cap)]))
        elif op == "charge":
            auths = [c for c in valid if c.limits is not None]
            if not auths:
                return
            cap = rng.choice(auths)
            res = rng.choice([Resource.MEMORY, Resource.AGENTS])
            try:
                chg = self.cdt.charge(cap, res, rng.randrange(1, 1 << 18), "x")
            except AIOSError:
                return
            self.n += 1
            self.chid[id(chg)] = self.n
            self.charges[self.n] = chg
            self.records.append(R.Charged(self.n, self.cid[id(cap)], int(res), chg.amount, "x"))
        else:
            live = [(k, c) for k, c in self.charges.items() if c.cap is not None]
            if not live:
                return
            chid, chg = rng.choice(live)
            self.cdt.uncharge(chg)
            self.records.append(R.Uncharged(chid))

    def compare(self, image: KernelImage) -> None:
        want: dict[int, tuple[Any, ...]] = {}
        for cid, c in self.caps.items():
            if c.valid:
                parent = self.cid[id(c.parent)] if c.parent is not None else 0
                want[cid] = (c.holder, c.slot, c.obj.oid, int(c.rights), c.badge, parent)
        got = {cid: (c.holder, c.slot, c.oid, c.rights, c.badge, c.parent) for cid, c in image.caps.items()}
        assert got == want
        for cid, c in self.caps.items():
            if c.valid and c.used is not None:
                assert image.used(cid)[:2] == c.used[:2], f"usage of {cid}"
        live_objects = {o.oid for o in self.objects if not o.destroyed}
        assert set(image.objects) == live_objects


@pytest.mark.parametrize("seed", range(12))
def test_replay_matches_the_kernel_capability_tables(seed: int) -> None:
    rng = random.Random(seed)
    rec = Recorder()
    image = KernelImage()
    for i in range(400):
        before = len(rec.records)
        rec.step(rng)
        for r in rec.records[before:]:
            image.apply(r)
        if i % 50 == 0:
            rec.compare(image)
    rec.compare(image)
    # and from the records through their encoding, in one go
    again = KernelImage()
    for r in rec.records:
        again.apply(R.decode(*R.encode(r)))
    rec.compare(again)
    # compaction: the image's own records rebuild it
    third = KernelImage()
    for r in image.records():
        third.apply(r)
    rec.compare(third)


def _base() -> KernelImage:
    img = KernelImage()
    for r in (R.AgentSpawned(1, 0, "init", "", "inproc", {}, {}, "", 0),
              R.ObjectCreated(1, R.OBJ_ENDPOINT, 1), R.CapInstalled(1, 1, 1, 1, 7, 0, 0)):  # fmt: skip
        img.apply(r)
    return img


@pytest.mark.parametrize(
    "rec",
    [
        R.AgentSpawned(1, 0, "again", "", "inproc", {}, {}, "", 0),
        R.AgentExited(9, 0, "", 0),
        R.CapInstalled(2, 1, 2, 99, 1, 0, 0),
        R.CapInstalled(2, 1, 2, 1, 1, 0, 42),
        R.CapInstalled(1, 1, 2, 1, 1, 0, 0),
        R.CapRevoked(7),
        R.Charged(1, 1, 0, 5, None),
        R.NameRegistered("svc", 5),
        R.MailboxPut(77, 1, 1, 0, b"x"),
        R.ObjectCreated(1, R.OBJ_AGENT, 1),
        R.Checkpointed(5, 1),
    ],
)
def test_records_that_contradict_the_state_are_integrity_errors(rec: R.Record) -> None:
    img = _base()
    with pytest.raises(IntegrityError):
        img.apply(rec)


def test_idempotent_consequences_are_accepted() -> None:
    img = _base()
    img.apply(R.CapDeleted(1))
    img.apply(R.CapDeleted(1))  # the kernel's delete of an invalid capability is a no-op
    img.apply(R.Uncharged(12345))
    assert img.caps == {} and img.objects == {}


def test_durable_mailbox_lives_with_its_endpoint_and_views() -> None:
    img = _base()
    img.apply(R.MailboxPut(1, 1, 1, 0, b"one"))
    img.apply(R.MailboxPut(1, 2, 1, 0, b"two"))
    img.apply(R.MailboxTake(1, 1))
    assert [m.payload for m in img.mailboxes[1].values()] == [b"two"]
    img.apply(R.ObjectCreated(2, R.OBJ_MEMNS, "team/notes"))
    img.apply(R.CapInstalled(2, 1, 5, 2, 7, 0, 0))
    img.apply(R.CapInstalled(3, 4, 0, 2, 1, 0, 2))
    img.apply(R.NameRegistered("inbox", 1))
    assert img.namespace_grants() == [(1, "team/notes", 7), (4, "team/notes", 1)]
    assert img.endpoints() == {1: 1}
    img.apply(R.CapDeleted(1))  # the last capability: the endpoint and its mailbox are gone
    assert 1 not in img.objects and img.mailboxes == {}
    assert not any(isinstance(r, R.NameRegistered) for r in img.records())


def test_kernel_numbers_match() -> None:
    assert R.OBJ_AUTHORITY == ObjKind.AUTHORITY and R.OBJ_AGENT == ObjKind.AGENT
    assert R.OBJ_ENDPOINT == ObjKind.ENDPOINT and R.OBJ_MEMORY == ObjKind.MEMORY
    assert R.OBJ_TOPIC == ObjKind.TOPIC and R.OBJ_DIRECTORY == ObjKind.DIRECTORY
    assert R.OBJ_MEMNS == ObjKind.MEMNS
    assert tuple(Resource) == (R.RES_MEMORY, R.RES_AGENTS, R.RES_IPC_RATE, R.RES_CPU_WEIGHT)
    assert len(Resource) == R.N_RESOURCES
