"""Kernel invariants checked after property-test steps."""

from __future__ import annotations

from aios.kernel.agents import LIVE
from aios.kernel.kernel import Kernel
from aios.kernel.quotas import Resource


def check_invariants(k: Kernel) -> None:
    cdt = k.cdt
    refs: dict[int, int] = {}
    for holder, space in cdt._spaces.items():
        for cap in space.caps():
            assert cap.valid, f"invalid capability left in a slot of {holder}"
            assert cap.holder == holder and space.get(cap.slot) is cap
            refs[id(cap.obj)] = refs.get(id(cap.obj), 0) + 1
            if cap.parent is not None:
                assert cap in cap.parent.children, "CDT child missing from parent"
                assert cap.parent.valid
                assert cap.rights & ~cap.parent.rights == 0, "a derived capability has more rights"
                if cap.parent.badge:
                    assert cap.badge == cap.parent.badge
            for ch in cap.children:
                assert ch.parent is cap and ch.valid
            if cap.used is not None and cap.limits is not None:
                for r in Resource:
                    lim = cap.limits[r]
                    if lim is not None and r in (Resource.MEMORY, Resource.AGENTS):
                        assert cap.used[r] <= lim, f"quota {r.name} exceeded on a capability"
                    assert cap.used[r] >= 0
                own = sum(c.amount for c in (cap.charges or ()) if c.res is Resource.MEMORY)
                kids = sum(ch.used[Resource.MEMORY] for ch in cap.children if ch.used is not None)
                assert cap.used[Resource.MEMORY] == own + kids, "memory accounting drifted"
    for space in cdt._spaces.values():
        for cap in space.caps():
            assert cap.obj.refs == refs[id(cap.obj)], "object reference count drifted"
    live = sum(1 for a in k.agents if a.status in LIVE)
    assert live == k.agents.live
    fa = k.arena.frames
    assert fa.free_frames == sum(fa._lens) and fa.free_frames <= fa.nframes
    for a in k.agents:
        if a.status in LIVE and a.pt is not None:
            for m in a.pt.mappings():
                assert m.cap is None or m.cap.valid, "a mapping outlived its capability"
