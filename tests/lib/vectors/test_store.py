"""The vector index on disk: reopen, crash without save, corrupted and truncated graph files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aios.abi.errors import InvalidArgument
from aios.bench.memory import clustered_vectors
from aios.lib.vectors.index import VectorIndex


def clustered(n: int, dim: int) -> np.ndarray:
    return clustered_vectors(n, dim, clusters=100, seed=0)


@pytest.mark.parametrize("threshold", [10**9, 100])
def test_persistence_survives_reopen(tmp_path: Path, threshold: int) -> None:
    x = clustered(800, 32)
    with VectorIndex(32, tmp_path, exact_threshold=threshold) as idx:
        idx.add(range(800), x, [{"i": i} for i in range(800)])
        idx.delete([3])
        idx.update(4, meta={"i": "four"})
    again = VectorIndex(32, tmp_path, exact_threshold=threshold)
    assert again.recovery is None
    assert len(again) == 799 and 3 not in again
    assert again.get(4)[1] == {"i": "four"}
    assert again.search(x[10], 1)[0].id == 10
    assert again.mode == ("hnsw" if threshold == 100 else "exact")
    again.close()
    with pytest.raises(InvalidArgument):
        VectorIndex(16, tmp_path)


def test_unsaved_changes_survive_a_crash(tmp_path: Path) -> None:
    x = clustered(400, 16)
    idx = VectorIndex(16, tmp_path, exact_threshold=100)
    idx.add(range(300), x[:300])
    idx.save()
    idx.add(range(300, 400), x[300:])  # no save: as if the process were killed
    idx._store.close()  # type: ignore[union-attr]  # closed unsaved, as a killed process leaves it
    again = VectorIndex(16, tmp_path, exact_threshold=100)
    assert again.recovery is not None and "older" in again.recovery
    assert len(again) == 400 and again.search(x[350], 1)[0].id == 350


def test_corrupted_graph_is_detected_and_rebuilt(tmp_path: Path) -> None:
    x = clustered(600, 32)
    with VectorIndex(32, tmp_path, exact_threshold=100) as idx:
        idx.add(range(600), x)
    graph = tmp_path / "hnsw.faiss"
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    graph.write_bytes(bytes(raw))
    again = VectorIndex(32, tmp_path, exact_threshold=100)
    assert again.recovery is not None and "checksum mismatch" in again.recovery
    assert "rebuilt" in again.recovery and again.mode == "hnsw"
    assert again.search(x[42], 1)[0].id == 42
    again.close()
    third = VectorIndex(32, tmp_path, exact_threshold=100)
    assert third.recovery is None
    third.close()


def test_truncated_graph_is_detected(tmp_path: Path) -> None:
    x = clustered(300, 16)
    with VectorIndex(16, tmp_path, exact_threshold=100) as idx:
        idx.add(range(300), x)
    (tmp_path / "hnsw.faiss").write_bytes(b"garbage")
    again = VectorIndex(16, tmp_path, exact_threshold=100)
    assert again.recovery is not None and len(again) == 300
    assert again.search(x[1], 1)[0].id == 1
