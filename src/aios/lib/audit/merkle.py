"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

Design
------
Pure functions, no I/O.  The tree over leaves ``D[0:n]`` is the one of RFC
9162 §2.1.1: ``MTH({}) = SHA-256()``, ``MTH({d}) = SHA-256(0x00 || d)``, and
for ``n > 1`` with ``k`` the largest power of two below ``n``,
``MTH(D[0:n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Every subtree that the recursion ever visits is either a *perfect* subtree
(``2^h`` leaves starting at a multiple of ``2^h``) or splits into a perfect
left part and a smaller right part.  So a store only has to answer one
question, "the hash of perfect subtree ``(level, index)``", the
:class:`PerfectHashes` protocol, and every root and proof for every tree
size is assembled from O(log n) such answers.  The on-disk log answers from
SQLite; :class:`MemoryTree` answers from lists (tests, verification).

:class:`CompactRange` is the append side: the right edge of the tree as a
stack of perfect subtree hashes (at most ``log2 n`` of them, one per set bit
of ``n``).  Appending a leaf is a binary increment that merges equal-sized
neighbours and reports each newly completed perfect node, which is exactly
what the log must persist.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
(consistency) with the edge cases of the transparency-dev golden data:
a consistency proof from size 0 is always an error; equal sizes need an
empty proof and equal roots; ``index >= size`` is an error; every proof
element and leaf hash must be 32 bytes.  Verifiers return ``bool`` and never
raise on bad proofs; generators raise ``InvalidArgument`` on bad sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from aios.abi.errors import InvalidArgument

HASH_LEN: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def largest_pow2_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class PerfectHashes(Protocol):
    """Answers the hash of the perfect subtree over leaves
    ``[index * 2**level, (index + 1) * 2**level)``."""

    def perfect(self, level: int, index: int) -> bytes: ...


def range_hash(src: PerfectHashes, lo: int, hi: int) -> bytes:
    """``MTH(D[lo:hi])`` for a range the RFC recursion can visit
    (``lo`` a multiple of the largest power of two <= ``hi - lo``)."""
    n = hi - lo
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return src.perfect(level, lo >> level)
    k = largest_pow2_below(n)
    return node_hash(range_hash(src, lo, lo + k), range_hash(src, lo + k, hi))


def root(src: PerfectHashes, size: int) -> bytes:
    """The tree head ``MTH(D[0:size])``."""
    if size < 0:
        raise InvalidArgument("tree size must be >= 0")
    return range_hash(src, 0, size)


def inclusion_proof(src: PerfectHashes, index: int, size: int) -> list[bytes]:
    """``PATH(index, D[0:size])`` of RFC 9162 §2.1.3.1, leaf level first."""
    if not 0 <= index < size:
        raise InvalidArgument(f"leaf {index} is not in a tree of size {size}")
    out: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root, collecting siblings; reverse at the end.
    while hi - lo > 1:
        k = largest_pow2_below(hi - lo)
        if index < lo + k:
            out.append(range_hash(src, lo + k, hi))
            hi = lo + k
        else:
            out.append(range_hash(src, lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def consistency_proof(src: PerfectHashes, size1: int, size2: int) -> list[bytes]:
    """``PROOF(size1, D[0:size2])`` of RFC 9162 §2.1.4.1."""
    if not 0 < size1 <= size2:
        raise InvalidArgument(f"no consistency proof from size {size1} to {size2}")
    out: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append(range_hash(src, lo, hi))
            break
        k = largest_pow2_below(n)
        if m <= k:
            out.append(range_hash(src, lo + k, hi))
            hi = lo + k
        else:
            out.append(range_hash(src, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


# -- verification -----------------------------------------------------------------


def _well_formed(hashes: Iterable[object]) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_LEN for h in hashes)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root implied by an inclusion proof, or ``None`` if it is malformed."""
    if not 0 <= index < size or not _well_formed([leaf, *proof]):
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put ``leaf`` at ``index`` under ``root_hash``?"""
    got = root_from_inclusion(leaf, index, size, proof)
    return got is not None and got == root_hash


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``(size2, root2)`` an extension of ``(size1, root1)``?"""
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return len(proof) == 0 and root1 == root2
    if not proof or not _well_formed(proof):
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: root1 is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


# -- append side and an in-memory store --------------------------------------------


@dataclass(slots=True)
class CompactRange:
    """The right edge of a tree of ``size`` leaves: one perfect-subtree hash per
    set bit of ``size``, largest (leftmost) first."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the perfect nodes ``(level, index, hash)``
        of level >= 1 completed by it."""
        done: list[tuple[int, int, bytes]] = []
        h = leaf
        level = 0
        n = self.size
        while n & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            n >>= 1
            done.append((level, n, h))
        self.hashes.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    @classmethod
    def load(cls, src: PerfectHashes, size: int) -> CompactRange:
        """Rebuild the right edge of a stored tree of ``size`` leaves."""
        hashes: list[bytes] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(src.perfect(level, start >> level))
                start += 1 << level
        return cls(size, hashes)


@dataclass(slots=True)
class MemoryTree:
    """Every perfect subtree hash of a tree, in memory (``levels[h][i]``)."""

    levels: list[list[bytes]] = field(default_factory=lambda: [[]])
    _edge: CompactRange = field(default_factory=CompactRange)

    @classmethod
    def from_leaves(cls, data: Iterable[bytes]) -> MemoryTree:
        t = cls()
        for d in data:
            t.append_hash(leaf_hash(d))
        return t

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append_hash(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        for level, _index, h in self._edge.append(leaf):
            if len(self.levels) <= level:
                self.levels.append([])
            self.levels[level].append(h)

    def perfect(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root(self, self.size if size is None else size)
