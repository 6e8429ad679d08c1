"""The archival tier's vector indexes on their own: reconciliation, drop, bad vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aios.abi.errors import InvalidArgument
from aios.kmod.memoryd.archive import ArchiveIndexes, index_meta, unit_vector
from aios.kmod.memoryd.db import open_db
from aios.lib.vectors.embedding import HashingEmbedder


def _put(db: object, rid: int, text: str) -> None:
    db.execute(  # type: ignore[attr-defined]
        "INSERT INTO records (id, ns, tier, role, text, meta, created, expires, bytes) "
        "VALUES (?, 'n', 'archival', NULL, ?, '{\"k\": 1}', 5.0, NULL, 1)", (rid, text))


def test_reconcile_drops_strays_and_reembeds_missing(tmp_path: Path) -> None:
    emb = HashingEmbedder()
    db = open_db(tmp_path)
    arch = ArchiveIndexes(tmp_path, emb, db)
    _put(db, 1, "kept in both")
    idx = arch.get("n")  # reconciles: record 1 has no vector yet
    assert idx.ids() == [1] and idx.get(1)[1] == {"k": 1, "_created": 5.0}
    assert arch.recoveries == ["memory namespace 'n': re-embedded 1 archival records "
                               "missing from the vector index"]
    idx.add([99], emb.embed(["a vector whose record is gone"]))
    arch.close()
    again = ArchiveIndexes(tmp_path, emb, db)
    assert again.get("n").ids() == [1]  # the stray 99 is deleted on open
    assert again.recoveries == []
    vdir = tmp_path / "vectors" / b"n".hex()
    assert vdir.is_dir()
    again.drop("n")
    assert not vdir.exists()
    db.close()


def test_index_meta_and_unit_vector() -> None:
    assert index_meta({"a": 1}, 2.0) == {"a": 1, "_created": 2.0}
    assert index_meta({}, 2.0, 3.0) == {"_created": 2.0, "_expires": 3.0}
    v = unit_vector(np.array([3.0, 4.0]), 2)
    assert np.allclose(v, [0.6, 0.8])
    for bad in (np.zeros(2), np.array([1.0, np.nan]), np.ones(3)):
        with pytest.raises(InvalidArgument):
            unit_vector(bad, 2)
