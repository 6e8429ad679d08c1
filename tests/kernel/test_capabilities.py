"""Pure tests of the capability derivation tree and capability spaces."""

from __future__ import annotations

import pytest

from aios.abi.errors import InvalidArgument, InvalidCapability, PermissionDenied, QuotaExceeded
from aios.abi.rights import ObjKind, Rights, rights_from_names, rights_names
from aios.kernel.capabilities import CapabilityDerivationTree
from aios.kernel.quotas import Quota, Resource

RW = Rights.READ | Rights.WRITE


class World:
    def __init__(self) -> None:
        self.released: list[object] = []
        self.t = 0
        self.cdt = CapabilityDerivationTree(lambda: self.t, lambda cap, charges: self.released.extend(charges))
        self.destroyed: list[int] = []

    def obj(self, kind: ObjKind = ObjKind.ENDPOINT):
        return self.cdt.new_object(kind, None, lambda o: self.destroyed.append(o.oid))


def test_mint_only_narrows_silently() -> None:
    w = World()
    a, b = w.cdt.new_space(1), w.cdt.new_space(2)
    root = w.cdt.root(a, w.obj(), Rights.READ | Rights.GRANT)
    child = w.cdt.derive(root, b, RW | Rights.ADMIN)
    assert child.rights == Rights.READ
    grand = w.cdt.derive(child, b, Rights(-1 & 0x3FFF))
    assert grand.rights == Rights.READ


def test_badge_is_set_once_and_copies_keep_it() -> None:
    w = World()
    a = w.cdt.new_space(1)
    root = w.cdt.root(a, w.obj(), RW)
    badged = w.cdt.derive(root, a, RW, badge=7)
    assert badged.badge == 7
    copy = w.cdt.derive(badged, a, RW)
    assert copy.badge == 7
    with pytest.raises(InvalidArgument):
        w.cdt.derive(badged, a, RW, badge=8)
    assert w.cdt.derive(badged, a, RW, badge=7).badge == 7


def test_revoke_invalidates_descendants_everywhere_but_not_itself() -> None:
    w = World()
    spaces = [w.cdt.new_space(i) for i in range(1, 5)]
    root = w.cdt.root(spaces[0], w.obj(), RW | Rights.GRANT)
    c1 = w.cdt.derive(root, spaces[1], RW | Rights.GRANT)
    c2 = w.cdt.derive(c1, spaces[2], RW)
    c3 = w.cdt.derive(c1, spaces[3], Rights.READ)
    n = w.cdt.revoke(c1)
    assert n == 2
    assert c1.valid and not c2.valid and not c3.valid
    with pytest.raises(InvalidCapability):
        spaces[2].get(c2.slot)
    with pytest.raises(InvalidCapability):
        spaces[3].get(c3.slot)
    assert spaces[1].get(c1.slot) is c1
    # revoking the root now takes c1 too
    assert w.cdt.revoke(root) == 1
    assert not c1.valid and root.valid


def test_delete_last_capability_destroys_object() -> None:
    w = World()
    a, b = w.cdt.new_space(1), w.cdt.new_space(2)
    o = w.obj()
    root = w.cdt.root(a, o, RW)
    child = w.cdt.derive(root, b, RW)
    w.cdt.delete(child)
    assert w.destroyed == []
    w.cdt.delete(root)
    assert w.destroyed == [o.oid]


def test_delete_adopts_children_into_parent() -> None:
    w = World()
    a = w.cdt.new_space(1)
    root = w.cdt.root(a, w.obj(), RW)
    mid = w.cdt.derive(root, a, RW)
    leaf = w.cdt.derive(mid, a, Rights.READ)
    w.cdt.delete(mid)
    assert leaf.valid and leaf.parent is root
    w.cdt.revoke(root)
    assert not leaf.valid


def test_lookup_checks_kind_and_rights() -> None:
    w = World()
    a = w.cdt.new_space(1)
    cap = w.cdt.root(a, w.obj(ObjKind.ENDPOINT), Rights.READ)
    assert a.lookup(cap.slot, ObjKind.ENDPOINT, Rights.READ) is cap
    with pytest.raises(PermissionDenied):
        a.lookup(cap.slot, ObjKind.ENDPOINT, Rights.WRITE)
    with pytest.raises(InvalidCapability):
        a.lookup(cap.slot, ObjKind.MEMORY, Rights.READ)
    for bad in (-1, 99, "0", None, 1.0, True):
        with pytest.raises(InvalidCapability):
            a.lookup(bad, ObjKind.ENDPOINT, Rights.READ)


def _authority(w: World, space, limit_mem: int = 1000, limit_agents: int = 3):
    return w.cdt.root(space, w.obj(ObjKind.AUTHORITY), Rights.ALLOC_MEMORY | Rights.GRANT,
                      quota=Quota(memory=limit_mem, agents=limit_agents))


def test_quota_is_charged_up_the_chain_and_child_never_exceeds_parent() -> None:
    w = World()
    a, b, c = (w.cdt.new_space(i) for i in (1, 2, 3))
    root = _authority(w, a)
    child = w.cdt.derive(root, b, Rights.ALLOC_MEMORY, quota=Quota(memory=5000))
    assert child.limits[Resource.MEMORY] == 1000  # min(parent, asked)
    sibling = w.cdt.derive(root, c, Rights.ALLOC_MEMORY, quota=Quota(memory=600))
    w.cdt.charge(child, Resource.MEMORY, 600)
    assert root.used[Resource.MEMORY] == 600
    with pytest.raises(QuotaExceeded):
        w.cdt.charge(sibling, Resource.MEMORY, 500)  # sibling's own limit allows, root's does not
    assert sibling.used[Resource.MEMORY] == 0 and root.used[Resource.MEMORY] == 600
    w.cdt.charge(sibling, Resource.MEMORY, 400)
    assert root.used[Resource.MEMORY] == 1000


def test_revoke_refunds_quota_and_releases_what_was_built() -> None:
    w = World()
    a, b = w.cdt.new_space(1), w.cdt.new_space(2)
    root = _authority(w, a)
    child = w.cdt.derive(root, b, Rights.ALLOC_MEMORY)
    thing = object()
    w.cdt.charge(child, Resource.MEMORY, 700, thing)
    assert root.used[Resource.MEMORY] == 700
    w.cdt.revoke(root)
    assert root.used[Resource.MEMORY] == 0
    assert [c.what for c in w.released] == [thing]


def test_uncharge_is_idempotent() -> None:
    w = World()
    a = w.cdt.new_space(1)
    root = _authority(w, a)
    chg = w.cdt.charge(root, Resource.AGENTS, 2)
    w.cdt.uncharge(chg)
    w.cdt.uncharge(chg)
    assert root.used[Resource.AGENTS] == 0


def test_ipc_rate_bucket_at_every_level() -> None:
    w = World()
    a, b = w.cdt.new_space(1), w.cdt.new_space(2)
    root = w.cdt.root(a, w.obj(ObjKind.AUTHORITY), Rights.GRANT, quota=Quota(ipc_rate=10))
    child = w.cdt.derive(root, b, Rights.NONE, quota=Quota(ipc_rate=100))
    assert child.limits[Resource.IPC_RATE] == 10
    w.cdt.take_tokens(child, 10)
    with pytest.raises(QuotaExceeded):
        w.cdt.take_tokens(child, 1)
    w.t += 1_000_000_000  # a second later the bucket is full again
    w.cdt.take_tokens(child, 10)


def test_rights_names_round_trip() -> None:
    r = rights_from_names(["READ", "SPAWN_AGENT", "ACCESS_NET"])
    assert set(rights_names(r)) == {"READ", "SPAWN_AGENT", "ACCESS_NET"}
    with pytest.raises(InvalidArgument):
        rights_from_names(["FLY"])
    with pytest.raises(InvalidArgument):
        rights_from_names(1 << 40)
    with pytest.raises(InvalidArgument):
        rights_from_names(True)


def test_a_deleted_authority_with_a_subtree_keeps_bounding_it() -> None:
    from aios.abi.rights import ObjKind, Rights
    from aios.kernel.capabilities import CapabilityDerivationTree
    from aios.kernel.quotas import Quota, Resource

    cdt = CapabilityDerivationTree(lambda: 0, lambda cap, charges: None)
    top = cdt.root(cdt.new_space(1), cdt.new_object(ObjKind.AUTHORITY), Rights.READ, quota=Quota(agents=100))
    mid = cdt.derive(top, cdt.new_space(2), Rights.READ, quota=Quota(agents=4))
    low1 = cdt.derive(mid, cdt.new_space(3), Rights.READ, quota=Quota(agents=50))  # narrowed to 4
    low2 = cdt.derive(mid, cdt.new_space(4), Rights.READ, quota=Quota(agents=50))
    c1 = cdt.charge(low1, Resource.AGENTS, 2)
    c2 = cdt.charge(low2, Resource.AGENTS, 2)
    cdt.delete(mid)  # its holder died: the envelope stays behind as a ghost
    assert mid.ghost and low1.parent is mid and mid in top.children
    with pytest.raises(QuotaExceeded):
        cdt.charge(low1, Resource.AGENTS, 1)  # 2 + 2 + 1 > 4, though low1 and top would allow it
    cdt.uncharge(c2)
    cdt.delete(low2)
    # one child left, whose own limit is the ghost's: the ghost adds nothing and is spliced out
    assert not mid.valid and low1.parent is top and low1 in top.children
    cdt.uncharge(c1)
    cdt.delete(low1)  # nothing below it: deleted outright, no ghost
    assert not low1.valid and not top.children and top.used[Resource.AGENTS] == 0


def test_revoking_over_a_ghost_keeps_the_object_alive_for_its_other_holders() -> None:
    # a ghost gave up its reference to the object when its holder deleted it; invalidating it
    # later (an ancestor is revoked) must not give the reference up a second time
    from aios.abi.rights import ObjKind, Rights
    from aios.kernel.capabilities import CapabilityDerivationTree, Quota

    cdt = CapabilityDerivationTree(lambda: 0, lambda cap, charges: None)
    obj = cdt.new_object(ObjKind.AUTHORITY)
    top = cdt.root(cdt.new_space(1), obj, Rights.READ | Rights.GRANT, quota=Quota(agents=100))
    mid = cdt.derive(top, cdt.new_space(2), Rights.READ | Rights.GRANT, quota=Quota(agents=4))
    for holder in (3, 4):  # two children: the ghost is not spliced out
        cdt.derive(mid, cdt.new_space(holder), Rights.READ, quota=Quota(agents=50))
    cdt.delete(mid)
    assert mid.ghost
    cdt.revoke(top)  # invalidates the ghost and its child; top still names the object
    assert top.valid and not obj.destroyed and obj.refs == 1
