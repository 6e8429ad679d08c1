"""The vector index on disk: SQLite rows as the truth, the HNSW graph as a checked cache.

A :class:`VectorStore` owns one directory.  ``vectors.sqlite`` (WAL) holds
every vector with its id and metadata, written in the same call that changes
the index, so a crash loses nothing that was acknowledged.  The HNSW graph is
derived: :meth:`VectorStore.save_graph` writes ``hnsw.faiss`` plus
``hnsw.rows.npy`` (row -> id, ``-1`` for a dead row) and records their
SHA-256 in SQLite; the first change after that marks the record ``stale``.

On open, :meth:`VectorStore.load_graph` accepts the graph only when the
checksum matches, the record is not stale, faiss can read it and its rows
agree with the stored vectors.  Otherwise it deletes the files, says why in
:attr:`VectorStore.recovery` (logged at WARNING too) and returns nothing, so
the index rebuilds from SQLite: corruption costs a rebuild, never a wrong
answer.  Every file is private to the user (:mod:`aios.lib.paths`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument
from aios.lib.vectors.filters import Meta

log = logging.getLogger("aios.lib.vectors.index")

GRAPH = "hnsw.faiss"
GRAPH_ROWS = "hnsw.rows.npy"


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


class VectorStore:
    """One index directory: opened (and created) here; ``dim`` must match what it holds."""

    def __init__(self, directory: Path, dim: int) -> None:
        from aios.lib.paths import private_dir, private_file

        self.directory = directory
        self.dim = dim
        self.recovery: str | None = None
        self.saved = False  # the graph file on disk matches the index
        private_dir(directory)
        db_path = private_file(directory / "vectors.sqlite")
        db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        private_file(db_path)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, "
                   "meta TEXT NOT NULL, vec BLOB NOT NULL)")
        row = db.execute("SELECT value FROM info WHERE key = 'dim'").fetchone()
        if row is None:
            db.execute("INSERT INTO info VALUES ('dim', ?)", (str(dim),))
        elif int(row[0]) != dim:
            db.close()
            raise InvalidArgument(f"index at {directory} holds {row[0]}-d vectors, not {dim}-d")
        self._db = db

    def load(self) -> tuple[list[int], list[Meta], np.ndarray]:
        """Every stored (id, metadata, vector), by id."""
        ids: list[int] = []
        metas: list[Meta] = []
        blobs: list[bytes] = []
        for i, meta, vec in self._db.execute("SELECT id, meta, vec FROM items ORDER BY id"):
            ids.append(int(i))
            metas.append(json.loads(meta))
            blobs.append(vec)
        vecs = (np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, self.dim)
                if blobs else np.zeros((0, self.dim), dtype=np.float32))
        if vecs.shape[0] != len(ids):
            raise InvalidArgument(f"index at {self.directory}: stored vectors have the wrong size")
        return ids, metas, vecs

    def add(self, ids: list[int], vecs: np.ndarray, metas: list[Meta]) -> None:
        self.mark_stale()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO items (id, meta, vec) VALUES (?, ?, ?)",
                [(i, json.dumps(m), v.tobytes()) for i, m, v in zip(ids, metas, vecs, strict=True)],
            )

    def delete(self, ids: list[int]) -> None:
        self.mark_stale()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])

    def mark_stale(self) -> None:
        # the first change after a save makes the graph file out of date
        if self.saved:
            self._db.execute("UPDATE info SET value = 'stale' WHERE key = 'hnsw_sha256'")
            self.saved = False

    def save_graph(self, graph: Any, row_ids: np.ndarray) -> None:
        """Write ``graph`` (a faiss index, or None: exact mode) and its row map, then the checksum."""
        path, rows = self.directory / GRAPH, self.directory / GRAPH_ROWS
        if graph is None:
            for p in (path, rows):
                p.unlink(missing_ok=True)
            with self._db:
                self._db.execute("DELETE FROM info WHERE key = 'hnsw_sha256'")
            return
        import faiss

        tmp_g, tmp_r = path.with_suffix(".tmp"), self.directory / "hnsw.rows.tmp.npy"
        faiss.write_index(graph, str(tmp_g))
        np.save(tmp_r, row_ids)
        for p in (tmp_g, tmp_r):
            p.chmod(0o600)  # memory is private (see aios.lib.paths)
        digest = file_digest(tmp_g, tmp_r)
        tmp_g.replace(path)
        tmp_r.replace(rows)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO info VALUES ('hnsw_sha256', ?)", (digest,))
        self.saved = True

    def load_graph(self, ids: list[int]) -> tuple[Any, np.ndarray] | None:
        """The saved graph and its row map if they can be trusted; else None and :attr:`recovery`."""
        d = self.directory
        graph, rows = d / GRAPH, d / GRAPH_ROWS
        rec = self._db.execute("SELECT value FROM info WHERE key = 'hnsw_sha256'").fetchone()
        if rec is None and not graph.exists():
            return None
        why: str | None = None
        if rec is None:
            why = "graph file present but no checksum recorded"
        elif rec[0] == "stale":
            why = "graph file older than the stored vectors (not saved after the last change)"
        elif not graph.exists() or not rows.exists():
            why = "graph file missing"
        elif file_digest(graph, rows) != rec[0]:
            why = "checksum mismatch (file corrupted or modified)"
        if why is None:
            import faiss

            try:
                g = faiss.read_index(str(graph))
                row_ids = np.load(rows)
            except (RuntimeError, ValueError, OSError) as exc:
                why = f"unreadable graph file ({exc.__class__.__name__})"
            else:
                if g.ntotal != row_ids.shape[0] or g.d != self.dim:
                    why = "graph does not match its row map"
                elif not set(row_ids[row_ids >= 0].tolist()) <= set(ids):
                    why = "graph names vectors that are not stored"
                else:
                    self.saved = True
                    return g, row_ids
        self.recovery = (f"vector index at {d}: {why}; rebuilt the graph from "
                         f"{len(ids)} stored vectors")
        log.warning("%s", self.recovery)
        for p in (graph, rows):
            p.unlink(missing_ok=True)
        with self._db:
            self._db.execute("DELETE FROM info WHERE key = 'hnsw_sha256'")
        return None

    def close(self) -> None:
        self._db.close()
