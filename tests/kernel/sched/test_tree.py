"""The EEVDF augmented tree, checked against brute force."""

from __future__ import annotations

import random

from aios.kernel.sched.core import SchedEntity
from aios.kernel.sched.tree import EevdfTree

# -- the tree: O(log n) structure checked against brute force ----------------------


def _check_tree(t: EevdfTree) -> int:
    def walk(n: SchedEntity | None, lo: tuple[int, int] | None) -> tuple[int, int, int]:
        if n is None:
            return 0, 1 << 200, 0
        hl, ml, cl = walk(n._l, lo)
        hr, mr, cr = walk(n._r, (n.deadline, n.key))
        assert abs(hl - hr) <= 1
        assert n._h == max(hl, hr) + 1
        assert n._minv == min(n.vruntime, ml, mr)
        for c in (n._l, n._r):
            if c is not None:
                assert c._p is n
        if n._l is not None:
            assert (n._l.deadline, n._l.key) < (n.deadline, n.key)
        if n._r is not None:
            assert (n._r.deadline, n._r.key) > (n.deadline, n.key)
        return n._h, min(n.vruntime, ml, mr), cl + cr + 1

    return walk(t.root, None)[2]


def test_tree_pick_matches_brute_force() -> None:
    rnd = random.Random(3)
    tree = EevdfTree()
    live: list[SchedEntity] = []
    for step in range(3000):
        if live and rnd.random() < 0.45:
            e = live.pop(rnd.randrange(len(live)))
            tree.remove(e)
        else:
            e = SchedEntity(step, None, 1024)
            e.vruntime = rnd.randrange(1000)
            e.deadline = e.vruntime + rnd.randrange(1, 500)
            tree.insert(e)
            live.append(e)
        if step % 97 == 0:
            assert _check_tree(tree) == len(live) == tree.n
        if live:
            w = rnd.randrange(1, 5000)
            s = rnd.randrange(0, 1000 * w)
            elig = [x for x in live if x.vruntime * w <= s]
            want = min(elig, key=lambda x: (x.deadline, x.key)) if elig else None
            assert tree.pick(s, w) is want
            lm = tree.leftmost_vruntime()
            assert lm is not None and lm.vruntime == min(x.vruntime for x in live)

