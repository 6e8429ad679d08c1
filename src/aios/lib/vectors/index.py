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

**Filters.**  ``filters`` is a dict of metadata conditions (the language is
in :mod:`aios.lib.vectors.filters`).  Equalities are answered from an
inverted index of (key, value) -> rows.  A query whose allowed set is small
is answered exactly over just those rows (a graph search restricted to a few
rows can strand itself); a large allowed set goes to HNSW with a row
selector, and falls back to exact if the graph returns fewer than ``k`` hits.

**Persistence.**  With a ``directory`` the vectors and their metadata are
written to SQLite as they change and the graph is saved with a checksum
(:mod:`aios.lib.vectors.store`); on open a graph that cannot be trusted is
rebuilt from the stored vectors, and :attr:`VectorIndex.recovery` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.lib.vectors.filters import Meta, Postings, check_meta, range_ok, split_filters
from aios.lib.vectors.store import VectorStore

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
        self._postings = Postings()
        self._hnsw: Any = None
        self._store: VectorStore | None = None
        if directory is not None:
            self._open(VectorStore(Path(directory), dim))

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
        meta_list = [check_meta(m) for m in metas] if metas is not None else [{}] * len(id_list)
        if len(meta_list) != len(id_list):
            raise InvalidArgument("ids and metadata differ in length")
        if len(set(id_list)) != len(id_list):
            raise InvalidArgument("duplicate ids in one add")
        present = [i for i in id_list if i in self._id_row]
        if present:
            raise InvalidArgument(f"ids already in the index: {present[:5]}")
        if self._store is not None:
            self._store.add(id_list, vecs, meta_list)
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
        new_meta = self._meta[id_] if meta is None else check_meta(meta)
        self.upsert([id_], vec.reshape(1, -1).copy(), [new_meta])

    def delete(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        gone = [int(i) for i in ids if int(i) in self._id_row]
        if not gone:
            return 0
        if self._store is not None:
            self._store.delete(gone)
        for i in gone:
            row = self._id_row.pop(i)
            self._live[row] = False
            for key in self._meta.pop(i).items():
                self._postings.unpost(key, row)
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
        if self._store is None:
            return
        ids = np.where(self._live[: self._n], self._row_id[: self._n], -1)
        self._store.save_graph(self._hnsw, ids)

    def close(self) -> None:
        if self._store is not None:
            self.save()
            self._store.close()
            self._store = None

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
                self._postings.post(item, row)
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
        self._id_row, self._meta, self._postings = {}, {}, Postings()
        self._hnsw = None
        self._append(ids, vecs, metas)  # builds the graph once, if big enough

    # -- search --------------------------------------------------------------

    def _allowed_rows(self, filters: Mapping[str, Any] | None,
                      restrict: Iterable[int] | None) -> np.ndarray | None:
        rows: set[int] | None = None
        if restrict is not None:
            rows = {self._id_row[int(i)] for i in restrict if int(i) in self._id_row}
        equal, ranges = split_filters(filters)
        for key, values in equal:
            match = self._postings.rows(key, values)
            rows = match if rows is None else rows & match
        if ranges:
            if rows is None:
                rows = set(np.flatnonzero(self._live[: self._n]).tolist())
            keep: set[int] = set()
            for row in rows:
                meta = self._meta[int(self._row_id[row])]
                if all(range_ok(meta.get(key), cond) for key, cond in ranges):
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

    def _open(self, store: VectorStore) -> None:
        try:
            ids, metas, vecs = store.load()
        except BaseException:
            store.close()
            raise
        self._store = store
        graph = store.load_graph(ids)
        self.recovery = store.recovery
        if graph is not None:
            g, row_ids = graph
            self._adopt_graph(g, row_ids, ids, vecs, metas)
        else:
            self._append(ids, vecs, metas)

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
                    self._postings.post(item, r)
        g.hnsw.efSearch = self.ef_search
        self._hnsw = g
        self._vecs = self._graph_view()
        rest = [j for j, i in enumerate(ids) if i not in self._id_row]
        if rest:
            self._append([ids[j] for j in rest], vecs[rest], [metas[j] for j in rest])
