"""The vector index: exact search when small, HNSW when large, always filterable.

Vectors are unit-norm float32 (see :mod:`aios.lib.vectors.embedding`), so the
score is the inner product, which is cosine similarity.  Each vector carries
a caller-chosen integer id and a flat JSON metadata dict.

**Two regimes.**  Below ``exact_threshold`` live vectors a query is one numpy
matrix-vector product over the live rows: exact, no build cost, and faster
than a graph at that size.  When the live count first reaches the threshold
an HNSW graph (faiss ``IndexHNSWFlat``, inner product) is built over all rows
and kept up to date from then on; it stays until the index is rebuilt below
the threshold.

**Rows, ids and deletes.**  Vectors live in a growable row-major matrix;
faiss labels are row numbers.  faiss's HNSW cannot delete, so delete marks
the row dead in a *live bitmap* and searches pass that bitmap to faiss as an
``IDSelectorBitmap``: a dead row is walked through but never returned.
Update is delete plus add (a new row).  When dead rows exceed
``compact_ratio`` of all rows the matrix is compacted and the graph rebuilt.

**Filters.**  ``filters`` is a dict of metadata conditions, all of which must
hold: ``{"kind": "note"}`` (equal), ``{"tag": ["a", "b"]}`` (any of), or
``{"t": {"$gte": 10, "$lt": 20}}`` (range, also ``$gt``, ``$lte``, ``$ne``).
Equalities are answered from an inverted index of (key, value) -> rows.  A
query whose allowed set is small is answered exactly over just those rows
(a graph search restricted to a few rows can strand itself); a large allowed
set goes to HNSW with a row selector, and falls back to exact if the graph
returns fewer than ``k`` hits.

**Persistence and corruption.**  With a ``directory`` the vectors and their
metadata are the source of truth in SQLite (``vectors.sqlite``, WAL); the
HNSW graph is a derived file (``hnsw.faiss`` plus ``hnsw.rows.npy`` mapping
rows to ids) whose SHA-256 is recorded in SQLite when it is written by
:meth:`save`.  On open, a graph file whose checksum does not match, that
faiss cannot read, or that disagrees with the stored vectors is discarded
and rebuilt from SQLite; :attr:`recovery` then says what happened and why
(and the same line is logged at WARNING), so corruption costs a rebuild,
never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument, NoSuchObject

log = logging.getLogger("aios.lib.vectors.index")

Meta = dict[str, Any]
_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte", "$ne"}
_SMALL_SET = 4096  # allowed rows at or below this are searched exactly


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    score: float
    meta: Meta


@dataclass(frozen=True, slots=True)
class IndexStats:
    live: int
    rows: int
    dead: int
    dim: int
    mode: str  # "exact" or "hnsw"
    memory_bytes: int


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _check_meta(meta: Mapping[str, Any] | None) -> Meta:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidArgument("metadata must be a dict")
    out = dict(meta)
    for k in out:
        if not isinstance(k, str):
            raise InvalidArgument("metadata keys must be strings")
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadata is not JSON-serialisable: {exc}") from exc
    return out


def _range_ok(value: Any, cond: Mapping[str, Any]) -> bool:
    for op, bound in cond.items():
        if op == "$ne":
            if value == bound:
                return False
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
            return False
        try:
            if op == "$gt" and not value > bound:
                return False
            if op == "$gte" and not value >= bound:
                return False
            if op == "$lt" and not value < bound:
                return False
            if op == "$lte" and not value <= bound:
                return False
        except TypeError:
            return False
    return True


def _file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


class VectorIndex:
    """Exact below ``exact_threshold`` live vectors, faiss HNSW above; see the module essay."""

    def __init__(self, dim: int, directory: Path | str | None = None, *,
                 exact_threshold: int = 20_000, hnsw_m: int = 32,
                 ef_construction: int = 64, ef_search: int = 96,
                 compact_ratio: float = 0.25) -> None:
        if dim < 1:
            raise InvalidArgument("dim must be positive")
        self.dim = dim
        self.exact_threshold = exact_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.compact_ratio = compact_ratio
        self.recovery: str | None = None
        self._vecs = np.zeros((0, dim), dtype=np.float32)
        self._n = 0  # rows used
        self._row_id = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._id_row: dict[int, int] = {}
        self._meta: dict[int, Meta] = {}
        self._postings: dict[tuple[str, str], set[int]] = {}
        self._hnsw: Any = None
        self._dir = Path(directory) if directory is not None else None
        self._db: sqlite3.Connection | None = None
        self._saved = False
        if self._dir is not None:
            self._open_dir(self._dir)

    # -- public API ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._id_row)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._id_row

    @property
    def mode(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def add(self, ids: Iterable[int], vectors: np.ndarray,
            metas: Iterable[Mapping[str, Any] | None] | None = None) -> None:
        """Insert new vectors; an id already present is :class:`InvalidArgument` (use update)."""
        id_list = [int(i) for i in ids]
        vecs = self._check_vectors(vectors, len(id_list))
        meta_list = [_check_meta(m) for m in metas] if metas is not None else [{}] * len(id_list)
        if len(meta_list) != len(id_list):
            raise InvalidArgument("ids and metadata differ in length")
        if len(set(id_list)) != len(id_list):
            raise InvalidArgument("duplicate ids in one add")
        present = [i for i in id_list if i in self._id_row]
        if present:
            raise InvalidArgument(f"ids already in the index: {present[:5]}")
        self._persist_add(id_list, vecs, meta_list)
        self._append(id_list, vecs, meta_list)

    def upsert(self, ids: Iterable[int], vectors: np.ndarray,
               metas: Iterable[Mapping[str, Any] | None] | None = None) -> None:
        """Insert or replace: existing ids are deleted first."""
        id_list = [int(i) for i in ids]
        old = [i for i in id_list if i in self._id_row]
        vecs = self._check_vectors(vectors, len(id_list))
        if old:
            self.delete(old)
        self.add(id_list, vecs, metas)

    def update(self, id_: int, vector: np.ndarray | None = None,
               meta: Mapping[str, Any] | None = None) -> None:
        """Replace the vector and/or metadata of an existing id."""
        if id_ not in self._id_row:
            raise NoSuchObject(f"no vector with id {id_}")
        row = self._id_row[id_]
        vec = self._vecs[row].copy() if vector is None else self._check_vectors(
            np.asarray(vector).reshape(1, -1), 1)[0]
        new_meta = self._meta[id_] if meta is None else _check_meta(meta)
        self.upsert([id_], vec.reshape(1, -1).copy(), [new_meta])

    def delete(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        gone = [int(i) for i in ids if int(i) in self._id_row]
        if not gone:
            return 0
        if self._db is not None:
            self._mark_stale()
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in gone])
        for i in gone:
            row = self._id_row.pop(i)
            self._live[row] = False
            for key in self._meta.pop(i).items():
                self._unpost(key, row)
        if self._n and (self._n - len(self._id_row)) > self.compact_ratio * self._n:
            self._compact()
        return len(gone)

    def get(self, id_: int) -> tuple[np.ndarray, Meta]:
        if id_ not in self._id_row:
            raise NoSuchObject(f"no vector with id {id_}")
        return self._vecs[self._id_row[id_]].copy(), dict(self._meta[id_])

    def ids(self) -> list[int]:
        return list(self._id_row)

    def search(self, query: np.ndarray, k: int = 10, *,
               filters: Mapping[str, Any] | None = None,
               restrict: Iterable[int] | None = None,
               exact: bool = False) -> list[Hit]:
        """The ``k`` best hits for one query vector, best first."""
        return self.search_batch(np.asarray(query).reshape(1, -1), k, filters=filters,
                                 restrict=restrict, exact=exact)[0]

    def search_batch(self, queries: np.ndarray, k: int = 10, *,
                     filters: Mapping[str, Any] | None = None,
                     restrict: Iterable[int] | None = None,
                     exact: bool = False) -> list[list[Hit]]:
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        q = self._check_vectors(queries, None)
        allowed = self._allowed_rows(filters, restrict)
        if not self._id_row or (allowed is not None and allowed.size == 0):
            return [[] for _ in range(q.shape[0])]
        if exact or self._hnsw is None or (allowed is not None and allowed.size <= _SMALL_SET):
            return self._exact(q, k, allowed)
        return self._graph(q, k, allowed)

    def stats(self) -> IndexStats:
        mem = self._row_id.nbytes + self._live.nbytes
        if self._hnsw is not None:
            import faiss

            mem += int(faiss.serialize_index(self._hnsw).nbytes)  # vectors + links
        else:
            mem += self._vecs.nbytes
        return IndexStats(len(self._id_row), self._n, self._n - len(self._id_row), self.dim,
                          self.mode, mem)

    def graph_bytes(self) -> int:
        """Serialized size of the HNSW graph plus its vectors (0 in exact mode)."""
        if self._hnsw is None:
            return 0
        import faiss

        return int(faiss.serialize_index(self._hnsw).nbytes)

    def rebuild(self) -> None:
        """Compact the rows and rebuild the graph from the stored vectors."""
        self._compact()

    def save(self) -> None:
        """Write the graph file and its checksum (vectors are already durable)."""
        if self._db is None or self._dir is None:
            return
        graph, rows = self._dir / "hnsw.faiss", self._dir / "hnsw.rows.npy"
        if self._hnsw is None:
            for p in (graph, rows):
                p.unlink(missing_ok=True)
            with self._db:
                self._db.execute("DELETE FROM info WHERE key = 'hnsw_sha256'")
            return
        import faiss

        tmp_g, tmp_r = graph.with_suffix(".tmp"), self._dir / "hnsw.rows.tmp.npy"
        faiss.write_index(self._hnsw, str(tmp_g))
        ids = np.where(self._live[: self._n], self._row_id[: self._n], -1)
        np.save(tmp_r, ids)
        for p in (tmp_g, tmp_r):
            p.chmod(0o600)  # memory is private (see aios.lib.paths)
        digest = _file_digest(tmp_g, tmp_r)
        tmp_g.replace(graph)
        tmp_r.replace(rows)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO info VALUES ('hnsw_sha256', ?)", (digest,))
        self._saved = True

    def _mark_stale(self) -> None:
        # the first change after a save makes the graph file out of date
        if self._saved and self._db is not None:
            self._db.execute("UPDATE info SET value = 'stale' WHERE key = 'hnsw_sha256'")
            self._saved = False

    def close(self) -> None:
        if self._db is not None:
            self.save()
            self._db.close()
            self._db = None

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows ----------------------------------------------------------------

    def _check_vectors(self, vectors: np.ndarray, n: int | None) -> np.ndarray:
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v.reshape(1, -1)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise InvalidArgument(f"vectors must have shape (n, {self.dim}), got {v.shape}")
        if n is not None and v.shape[0] != n:
            raise InvalidArgument(f"{n} ids but {v.shape[0]} vectors")
        if not np.issubdtype(v.dtype, np.number):
            raise InvalidArgument("vectors must be numeric")
        out = np.ascontiguousarray(v, dtype=np.float32)
        if not np.isfinite(out).all():
            raise InvalidArgument("vectors contain NaN or infinity")
        return out

    def _append(self, ids: list[int], vecs: np.ndarray, metas: list[Meta]) -> None:
        m = len(ids)
        start = self._n
        need = start + m
        if need > self._row_id.shape[0]:
            cap = max(need, 2 * self._row_id.shape[0], 1024)
            self._row_id = np.resize(self._row_id, cap)
            live = np.zeros(cap, dtype=bool)
            live[:start] = self._live[:start]
            self._live = live
            if self._hnsw is None:
                grown = np.zeros((cap, self.dim), dtype=np.float32)
                grown[:start] = self._vecs[:start]
                self._vecs = grown
        if self._hnsw is None:
            self._vecs[start:need] = vecs
        self._row_id[start:need] = ids
        self._live[start:need] = True
        self._n = need
        for off, (i, meta) in enumerate(zip(ids, metas, strict=True)):
            row = start + off
            self._id_row[i] = row
            self._meta[i] = meta
            for item in meta.items():
                self._post(item, row)
        if self._hnsw is not None:
            self._hnsw.add(vecs)
            self._vecs = self._graph_view()
        elif len(self._id_row) >= self.exact_threshold:
            self._build_graph()

    def _graph_view(self) -> np.ndarray:
        # In HNSW mode the vectors live once, in faiss's flat storage; this is a
        # zero-copy view of it, refreshed after every add (which may reallocate).
        import faiss

        storage: Any = faiss.downcast_index(self._hnsw.storage)
        n = int(self._hnsw.ntotal)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        view: np.ndarray = faiss.rev_swig_ptr(storage.get_xb(), n * self.dim).reshape(n, self.dim)
        return view

    def _post(self, item: tuple[str, Any], row: int) -> None:
        self._postings.setdefault((item[0], _canon(item[1])), set()).add(row)

    def _unpost(self, item: tuple[str, Any], row: int) -> None:
        key = (item[0], _canon(item[1]))
        rows = self._postings.get(key)
        if rows is not None:
            rows.discard(row)
            if not rows:
                del self._postings[key]

    def _build_graph(self) -> None:
        import faiss

        g = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        g.hnsw.efConstruction = self.ef_construction
        g.hnsw.efSearch = self.ef_search
        if self._n:
            g.add(self._vecs[: self._n])
        self._hnsw = g
        self._vecs = self._graph_view()  # our own copy is freed

    def _compact(self) -> None:
        keep = np.flatnonzero(self._live[: self._n])
        ids = self._row_id[keep].tolist()
        vecs = self._vecs[keep].copy()
        metas = [self._meta[i] for i in ids]
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)
        self._row_id = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._n = 0
        self._id_row, self._meta, self._postings = {}, {}, {}
        self._hnsw = None
        self._append(ids, vecs, metas)  # builds the graph once, if big enough

    # -- search --------------------------------------------------------------

    def _allowed_rows(self, filters: Mapping[str, Any] | None,
                      restrict: Iterable[int] | None) -> np.ndarray | None:
        rows: set[int] | None = None
        if restrict is not None:
            rows = {self._id_row[int(i)] for i in restrict if int(i) in self._id_row}
        ranges: list[tuple[str, Mapping[str, Any]]] = []
        for key, cond in (filters or {}).items():
            if isinstance(cond, Mapping):
                if not cond or set(cond) - _RANGE_OPS:
                    raise InvalidArgument(f"filter on {key!r}: operators are {sorted(_RANGE_OPS)}")
                ranges.append((key, cond))
                continue
            values = cond if isinstance(cond, list | tuple | set | frozenset) else [cond]
            match: set[int] = set()
            for v in values:
                match |= self._postings.get((key, _canon(v)), set())
            rows = match if rows is None else rows & match
        if ranges:
            if rows is None:
                rows = set(np.flatnonzero(self._live[: self._n]).tolist())
            keep: set[int] = set()
            for row in rows:
                meta = self._meta[int(self._row_id[row])]
                if all(_range_ok(meta.get(key), cond) for key, cond in ranges):
                    keep.add(row)
            rows = keep
        if rows is None:
            return None
        return np.fromiter(rows, dtype=np.int64, count=len(rows))

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        out = []
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
            if r < 0 or not self._live[r]:
                continue
            i = int(self._row_id[r])
            out.append(Hit(i, float(s), dict(self._meta[i])))
        return out

    def _exact(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[list[Hit]]:
        rows = np.flatnonzero(self._live[: self._n]) if allowed is None else np.sort(allowed)
        kk = min(k, rows.size)
        results: list[list[Hit]] = []
        chunk = 256
        for s in range(0, q.shape[0], chunk):
            scores = q[s : s + chunk] @ self._vecs[rows].T
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            for j in range(scores.shape[0]):
                order = top[j][np.argsort(-scores[j, top[j]], kind="stable")]
                results.append(self._hits(rows[order], scores[j, order]))
        return results

    def _graph(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[list[Hit]]:
        import faiss

        sel: Any
        if allowed is None:
            bitmap = np.packbits(self._live[: self._n], bitorder="little")
            sel = faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(bitmap))
            want = min(k, len(self._id_row))
        else:
            sel = faiss.IDSelectorBatch(allowed)
            want = min(k, allowed.size)
        params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
            sel=sel, efSearch=max(self.ef_search, k))
        scores, rows = self._hnsw.search(q, k, params=params)
        out: list[list[Hit]] = []
        for j in range(q.shape[0]):
            hits = self._hits(rows[j], scores[j])
            if len(hits) < want:
                hits = self._exact(q[j : j + 1], k, allowed)[0]
            out.append(hits)
        return out

    # -- persistence ---------------------------------------------------------

    def _open_dir(self, d: Path) -> None:
        from aios.lib.paths import private_dir, private_file

        private_dir(d)
        db_path = private_file(d / "vectors.sqlite")
        db = sqlite3.connect(str(db_path), isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        private_file(db_path)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, "
                   "meta TEXT NOT NULL, vec BLOB NOT NULL)")
        row = db.execute("SELECT value FROM info WHERE key = 'dim'").fetchone()
        if row is None:
            db.execute("INSERT INTO info VALUES ('dim', ?)", (str(self.dim),))
        elif int(row[0]) != self.dim:
            db.close()
            raise InvalidArgument(f"index at {d} holds {row[0]}-d vectors, not {self.dim}-d")
        self._db = db
        ids: list[int] = []
        metas: list[Meta] = []
        blobs: list[bytes] = []
        for i, meta, vec in db.execute("SELECT id, meta, vec FROM items ORDER BY id"):
            ids.append(int(i))
            metas.append(json.loads(meta))
            blobs.append(vec)
        vecs = (np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, self.dim)
                if blobs else np.zeros((0, self.dim), dtype=np.float32))
        if vecs.shape[0] != len(ids):
            raise InvalidArgument(f"index at {d}: stored vectors have the wrong size")
        graph = self._load_graph(d, ids)
        if graph is not None:
            g, row_ids = graph
            self._adopt_graph(g, row_ids, ids, vecs, metas)
            self._saved = True
        else:
            self._append(ids, vecs, metas)

    def _load_graph(self, d: Path, ids: list[int]) -> tuple[Any, np.ndarray] | None:
        graph, rows = d / "hnsw.faiss", d / "hnsw.rows.npy"
        assert self._db is not None
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
        elif _file_digest(graph, rows) != rec[0]:
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
                    return g, row_ids
        self.recovery = (f"vector index at {d}: {why}; rebuilt the graph from "
                         f"{len(ids)} stored vectors")
        log.warning("%s", self.recovery)
        for p in (graph, rows):
            p.unlink(missing_ok=True)
        with self._db:
            self._db.execute("DELETE FROM info WHERE key = 'hnsw_sha256'")
        return None

    def _adopt_graph(self, g: Any, row_ids: np.ndarray, ids: list[int], vecs: np.ndarray,
                     metas: list[Meta]) -> None:
        # the checksum matched and the graph is not stale, so its stored vectors
        # are the ones in SQLite; rows whose id is gone stay as tombstones
        by_id = {i: j for j, i in enumerate(ids)}
        n = row_ids.shape[0]
        self._row_id = row_ids.astype(np.int64).copy()
        self._live = np.zeros(n, dtype=bool)
        self._n = n
        for r, i in enumerate(row_ids.tolist()):
            if i >= 0 and i in by_id:
                self._live[r] = True
                self._id_row[i] = r
                self._meta[i] = metas[by_id[i]]
                for item in metas[by_id[i]].items():
                    self._post(item, r)
        g.hnsw.efSearch = self.ef_search
        self._hnsw = g
        self._vecs = self._graph_view()
        rest = [j for j, i in enumerate(ids) if i not in self._id_row]
        if rest:
            self._append([ids[j] for j in rest], vecs[rest], [metas[j] for j in rest])

    def _persist_add(self, ids: list[int], vecs: np.ndarray, metas: list[Meta]) -> None:
        if self._db is None:
            return
        self._mark_stale()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO items (id, meta, vec) VALUES (?, ?, ?)",
                [(i, json.dumps(m), v.tobytes()) for i, m, v in zip(ids, metas, vecs, strict=True)],
            )
