"""The archival tier's vectors: one index per namespace, kept in step with the records.

Archival records are written to SQLite first and to the namespace's
:class:`~aios.lib.vectors.index.VectorIndex` second, so a crash between the
two leaves a record without its vector (or, after a delete, a vector without
its record).  :class:`ArchiveIndexes` opens a namespace's index lazily, on
first use, and *reconciles* it then: stray vectors are deleted, missing ones
re-embedded from the stored text, and each repair is written to
:attr:`ArchiveIndexes.recoveries` (with the index's own recovery line, if its
graph file had to be rebuilt).  Each namespace's directory is named by the
hex of its name, so no namespace name can reach outside ``vectors/``.

The index stores a record's metadata plus ``_created`` and, when it expires,
``_expires`` (:func:`index_meta`), so search can skip expired records
without reading SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument
from aios.kmod.memoryd.records import Tier
from aios.lib.vectors.embedding import Embedder
from aios.lib.vectors.index import VectorIndex


def index_meta(meta: dict[str, Any], created: float, expires: float | None = None) -> dict[str, Any]:
    """A record's metadata as the vector index keeps it."""
    out = dict(meta)
    out["_created"] = created
    if expires is not None:
        out["_expires"] = expires
    return out


def unit_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    """``vector`` normalised; :class:`InvalidArgument` unless ``dim`` finite numbers, not all 0."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim or not np.isfinite(v).all():
        raise InvalidArgument(f"vector must be {dim} finite numbers")
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise InvalidArgument("vector must not be zero")
    out: np.ndarray = v / n
    return out


class ArchiveIndexes:
    """The namespaces' vector indexes under ``directory/vectors`` (in memory for None)."""

    def __init__(self, directory: Path | None, embedder: Embedder, db: sqlite3.Connection, *,
                 exact_threshold: int = 20_000) -> None:
        self._dir = directory
        self._embedder = embedder
        self._db = db
        self.exact_threshold = exact_threshold
        self._index: dict[str, VectorIndex] = {}
        self.recoveries: list[str] = []

    def get(self, name: str) -> VectorIndex:
        """The namespace's index, opened and reconciled on first use."""
        idx = self._index.get(name)
        if idx is None:
            idx = VectorIndex(self._embedder.dim, self._vector_dir(name),
                              exact_threshold=self.exact_threshold)
            if idx.recovery:
                self.recoveries.append(idx.recovery)
            self._reconcile(name, idx)
            self._index[name] = idx
        return idx

    def drop(self, name: str) -> None:
        """Close the namespace's index and delete its files."""
        idx = self._index.pop(name, None)
        if idx is not None:
            idx.close()
        vdir = self._vector_dir(name)
        if vdir is not None and vdir.exists():
            for p in sorted(vdir.iterdir()):
                p.unlink()
            vdir.rmdir()

    def close(self) -> None:
        for idx in self._index.values():
            idx.close()
        self._index.clear()

    def _vector_dir(self, name: str) -> Path | None:
        if self._dir is None:
            return None
        return self._dir / "vectors" / name.encode().hex()

    def _reconcile(self, name: str, idx: VectorIndex) -> None:
        rows = {r[0]: r for r in self._db.execute(
            "SELECT id, text, meta, created, expires FROM records WHERE ns = ? AND tier = ?",
            (name, Tier.ARCHIVAL.value))}
        stray = [i for i in idx.ids() if i not in rows]
        if stray:
            idx.delete(stray)
        missing = [r for i, r in rows.items() if i not in idx]
        if missing:
            vecs = self._embedder.embed([r[1] for r in missing])
            idx.add([r[0] for r in missing], vecs,
                    [index_meta(json.loads(r[2]), r[3], r[4]) for r in missing])
            self.recoveries.append(f"memory namespace {name!r}: re-embedded {len(missing)} "
                                   "archival records missing from the vector index")
