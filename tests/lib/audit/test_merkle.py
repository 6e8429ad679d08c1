"""RFC 6962 / RFC 9162 tree hashing and proofs (aios.lib.audit.merkle)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import InvalidArgument
from aios.lib.audit import merkle


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _cases(testdata: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    root = testdata / "merkle" / kind
    files = sorted(root.rglob("*.json"))
    assert files, f"no {kind} vectors under {root}"
    return [(str(p.relative_to(root)), json.loads(p.read_text())) for p in files]


def test_empty_tree_root(testdata: Path) -> None:
    roots = json.loads((testdata / "merkle" / "roots.json").read_text())
    assert merkle.EMPTY_ROOT.hex() == roots["emptyRootHex"]
    assert merkle.MemoryTree().root() == merkle.EMPTY_ROOT


def test_roots_1_to_8_and_node_hashes(testdata: Path) -> None:
    roots = json.loads((testdata / "merkle" / "roots.json").read_text())
    leaves = [bytes.fromhex(h) for h in roots["leafInputsHex"]]
    tree = merkle.MemoryTree.from_leaves(leaves)
    assert len(roots["roots"]) == 8
    for r in roots["roots"]:
        n = r["treeSize"]
        assert merkle.MemoryTree.from_leaves(leaves[:n]).root().hex() == r["rootHex"]
        assert tree.root(n).hex() == r["rootHex"]
    for h, level in enumerate(roots["nodeHashesHex"]["levels"]):
        for i, want in enumerate(level):
            assert tree.perfect(h, i).hex() == want


def test_inclusion_vectors(testdata: Path) -> None:
    cases = _cases(testdata, "inclusion")
    assert len(cases) == 98
    for name, c in cases:
        proof = [_b64(p) for p in (c["proof"] or [])]
        ok = merkle.verify_inclusion(
            _b64(c["leafHash"]), c["leafIdx"], c["treeSize"], proof, _b64(c["root"])
        )
        assert ok is (not c["wantErr"]), name


def test_consistency_vectors(testdata: Path) -> None:
    cases = _cases(testdata, "consistency")
    assert len(cases) == 98
    for name, c in cases:
        proof = [_b64(p) for p in (c["proof"] or [])]
        ok = merkle.verify_consistency(
            c["size1"], c["size2"], proof, _b64(c["root1"]), _b64(c["root2"])
        )
        assert ok is (not c["wantErr"]), name


def test_happy_paths_match_generated_proofs(testdata: Path) -> None:
    """Our generator produces exactly the golden proofs for the happy paths."""
    roots = json.loads((testdata / "merkle" / "roots.json").read_text())
    tree = merkle.MemoryTree.from_leaves(bytes.fromhex(h) for h in roots["leafInputsHex"])
    for name, c in _cases(testdata, "inclusion"):
        if name.endswith("happy-path.json") and c["treeSize"] <= 8:
            got = merkle.inclusion_proof(tree, c["leafIdx"], c["treeSize"])
            assert got == [_b64(p) for p in (c["proof"] or [])], name
    for name, c in _cases(testdata, "consistency"):
        if name.endswith("happy-path.json") and c["size2"] <= 8:
            got = merkle.consistency_proof(tree, c["size1"], c["size2"])
            assert got == [_b64(p) for p in (c["proof"] or [])], name


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]


def test_every_proof_up_to_128_and_mutations_fail() -> None:
    n_max = 128
    tree = merkle.MemoryTree.from_leaves(f"entry {i}".encode() for i in range(n_max))
    roots = [tree.root(n) for n in range(n_max + 1)]
    for n in range(1, n_max + 1):
        for i in range(n):
            proof = merkle.inclusion_proof(tree, i, n)
            leaf = tree.perfect(0, i)
            assert merkle.verify_inclusion(leaf, i, n, proof, roots[n])
            # an off-by-one size comes with that size's (signed) root
            if n < n_max:
                assert not merkle.verify_inclusion(leaf, i, n + 1, proof, roots[n + 1])
            assert not merkle.verify_inclusion(leaf, i, n - 1, proof, roots[n - 1])
            assert not merkle.verify_inclusion(leaf, i + 1, n, proof, roots[n])
            if i:
                assert not merkle.verify_inclusion(leaf, i - 1, n, proof, roots[n])
            assert not merkle.verify_inclusion(_flip(leaf, i % 32), i, n, proof, roots[n])
            if proof:
                k = (i + n) % len(proof)
                bad = [*proof[:k], _flip(proof[k], (i * 7) % 32), *proof[k + 1 :]]
                assert not merkle.verify_inclusion(leaf, i, n, bad, roots[n])
                assert not merkle.verify_inclusion(leaf, i, n, proof[:-1], roots[n])
            assert not merkle.verify_inclusion(leaf, i, n, [*proof, leaf], roots[n])
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(tree, m, n)
            assert merkle.verify_consistency(m, n, proof, roots[m], roots[n])
            if m < n:
                assert not merkle.verify_consistency(m + 1, n, proof, roots[m + 1], roots[n])
                assert not merkle.verify_consistency(m - 1, n, proof, roots[m - 1], roots[n])
                if n < n_max:
                    assert not merkle.verify_consistency(m, n + 1, proof, roots[m], roots[n + 1])
                assert not merkle.verify_consistency(m, n - 1, proof, roots[m], roots[n - 1])
                k = (m + n) % len(proof)
                bad = [*proof[:k], _flip(proof[k], (m * 5) % 32), *proof[k + 1 :]]
                assert not merkle.verify_consistency(m, n, bad, roots[m], roots[n])
                assert not merkle.verify_consistency(m, n, proof, _flip(roots[m], 3), roots[n])
                assert not merkle.verify_consistency(m, n, proof, roots[m], _flip(roots[n], 3))


def test_every_byte_of_a_proof_matters() -> None:
    tree = merkle.MemoryTree.from_leaves(bytes([i]) for i in range(37))
    root = tree.root()
    proof = merkle.inclusion_proof(tree, 21, 37)
    for k in range(len(proof)):
        for j in range(32):
            bad = [*proof[:k], _flip(proof[k], j), *proof[k + 1 :]]
            assert not merkle.verify_inclusion(tree.perfect(0, 21), 21, 37, bad, root)


def test_generators_refuse_bad_sizes() -> None:
    tree = merkle.MemoryTree.from_leaves([b"a", b"b"])
    with pytest.raises(InvalidArgument):
        merkle.inclusion_proof(tree, 2, 2)
    with pytest.raises(InvalidArgument):
        merkle.consistency_proof(tree, 0, 2)
    with pytest.raises(InvalidArgument):
        merkle.consistency_proof(tree, 3, 2)
    assert not merkle.verify_inclusion(b"", 0, 1, [], merkle.EMPTY_ROOT)


def test_compact_range_matches_full_tree_and_reloads() -> None:
    tree = merkle.MemoryTree()
    edge = merkle.CompactRange()
    for i in range(300):
        h = merkle.leaf_hash(i.to_bytes(4, "big"))
        tree.append_hash(h)
        edge.append(h)
        assert edge.root() == tree.root()
        again = merkle.CompactRange.load(tree, tree.size)
        assert again.root() == edge.root() and again.hashes == edge.hashes
