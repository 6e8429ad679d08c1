"""The EEVDF run-queue tree: an AVL tree of fair entities, augmented for the pick.

Entities are ordered by (virtual deadline, key); every node also stores the
smallest vruntime in its subtree (``_minv``).  :meth:`EevdfTree.pick` finds the
earliest deadline among entities with ``v * W <= S`` (eligible) on one
root-to-leaf walk: go left while the left subtree holds an eligible entity,
else take this node if eligible, else go right.  Insert and remove are AVL
operations; their fix-up recomputes height and subtree minimum upward and stops
at the first node where neither changed (after a rotation it keeps going).
The tree is intrusive: links live in the entity's slots, no node objects.
Keys of entities in the tree (deadline, vruntime) must not change while they
are in it; the scheduler removes an entity before touching either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aios.kernel.sched.core import SchedEntity


class EevdfTree:
    """AVL tree of fair entities by (deadline, key), augmented with subtree min vruntime."""

    __slots__ = ("n", "root")

    def __init__(self) -> None:
        self.root: SchedEntity | None = None
        self.n = 0

    @staticmethod
    def _upd(x: SchedEntity) -> None:
        lt = x._l
        rt = x._r
        m = x.vruntime
        h = 0
        if lt is not None:
            h = lt._h
            if lt._minv < m:
                m = lt._minv
        if rt is not None:
            if rt._h > h:
                h = rt._h
            if rt._minv < m:
                m = rt._minv
        x._h = h + 1
        x._minv = m

    def _replace(self, old: SchedEntity, new: SchedEntity | None) -> None:
        p = old._p
        if new is not None:
            new._p = p
        if p is None:
            self.root = new
        elif p._l is old:
            p._l = new
        else:
            p._r = new

    def _rot_left(self, x: SchedEntity) -> SchedEntity:
        y = x._r
        assert y is not None
        b = y._l
        x._r = b
        if b is not None:
            b._p = x
        self._replace(x, y)
        y._l = x
        x._p = y
        self._upd(x)
        self._upd(y)
        return y

    def _rot_right(self, x: SchedEntity) -> SchedEntity:
        y = x._l
        assert y is not None
        b = y._r
        x._l = b
        if b is not None:
            b._p = x
        self._replace(x, y)
        y._r = x
        x._p = y
        self._upd(x)
        self._upd(y)
        return y

    def _fix(self, n: SchedEntity | None) -> None:
        while n is not None:
            lt = n._l
            rt = n._r
            hl = lt._h if lt is not None else 0
            hr = rt._h if rt is not None else 0
            if hl > hr + 1:
                assert lt is not None
                ll = lt._l
                lr = lt._r
                if (ll._h if ll is not None else 0) < (lr._h if lr is not None else 0):
                    self._rot_left(lt)
                n = self._rot_right(n)._p
                continue
            if hr > hl + 1:
                assert rt is not None
                rl = rt._l
                rr = rt._r
                if (rr._h if rr is not None else 0) < (rl._h if rl is not None else 0):
                    self._rot_right(rt)
                n = self._rot_left(n)._p
                continue
            h = (hl if hl > hr else hr) + 1
            m = n.vruntime
            if lt is not None and lt._minv < m:
                m = lt._minv
            if rt is not None and rt._minv < m:
                m = rt._minv
            if h == n._h and m == n._minv:
                return
            n._h = h
            n._minv = m
            n = n._p

    def insert(self, e: SchedEntity) -> None:
        e._l = e._r = None
        e._h = 1
        e._minv = e.vruntime
        self.n += 1
        p = self.root
        if p is None:
            e._p = None
            self.root = e
            return
        d = e.deadline
        k = e.key
        while True:
            pd = p.deadline
            if d < pd or (d == pd and k < p.key):
                if p._l is None:
                    p._l = e
                    break
                p = p._l
            else:
                if p._r is None:
                    p._r = e
                    break
                p = p._r
        e._p = p
        self._fix(p)

    def remove(self, z: SchedEntity) -> None:
        self.n -= 1
        lt = z._l
        rt = z._r
        if lt is None or rt is None:
            start = z._p
            self._replace(z, lt if lt is not None else rt)
            self._fix(start)
        else:
            y = rt
            while y._l is not None:
                y = y._l
            if y is rt:
                start = y
            else:
                start = y._p
                assert start is not None
                yr = y._r
                start._l = yr
                if yr is not None:
                    yr._p = start
                y._r = rt
                rt._p = y
            y._l = lt
            lt._p = y
            self._replace(z, y)
            y._h = z._h
            y._minv = z._minv
            self._fix(start)
            self._fix(y)
        z._l = z._r = z._p = None

    def pick(self, s: int, w: int) -> SchedEntity | None:
        """Earliest virtual deadline among entities with ``v * w <= s``."""
        node = self.root
        while node is not None:
            lt = node._l
            if lt is not None and lt._minv * w <= s:
                node = lt
                continue
            if node.vruntime * w <= s:
                return node
            node = node._r
        return None

    def leftmost_vruntime(self) -> SchedEntity | None:
        """The entity with the smallest vruntime (the most owed)."""
        node = self.root
        while node is not None:
            m = node._minv
            lt = node._l
            if lt is not None and lt._minv == m:
                node = lt
            elif node.vruntime == m:
                return node
            else:
                node = node._r
        return None
