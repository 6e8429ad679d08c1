"""memoryd's core: namespaces of semantic memory, in Letta's three tiers.

**Namespaces and rights.**  Memory lives in named namespaces, each created
by (and recorded as owned by) an agent.  The core does not know about
capabilities: the kernel resolves the caller's memory-fabric capability for
the namespace and passes the rights it carries (:class:`MemRight`: READ,
WRITE, GRANT) into every call.  The core refuses with
:class:`~aios.abi.errors.PermissionDenied` when a right is missing, so a
revoked capability stops working on the very next call and a read-only
share cannot write.  :meth:`MemoryCore.authorize_grant` is what the kernel
asks before minting a narrower capability for another agent: it needs
GRANT and never widens.

**Tiers** (after Letta / MemGPT):

* *core* blocks: a few small labelled strings pinned into an agent's context
  (persona, task, shared findings).  Editable in place (set, append,
  replace), bounded by a per-block character limit, every version kept in a
  history table.  Never expired by retention.
* *recall*: the message history, append-only, searchable by text (SQLite
  FTS5, BM25 ranking) and by time range.
* *archival*: passages embedded with the injected
  :class:`~aios.lib.vectors.embedding.Embedder` and kept in one
  :class:`~aios.lib.vectors.index.VectorIndex` per namespace; searched by text
  (embedded) or by a vector, with metadata filters, over a *set* of
  namespaces at once (scores are cosines, so they merge directly).

**Retention and quotas.**  Retention (per namespace and tier: a TTL and a
maximum item count) *evicts*: expired records vanish from reads at once and
are removed by :meth:`compact`; a put over ``max_items`` evicts the oldest.
Quotas (items and bytes per namespace) *refuse*: a put that would exceed
one raises :class:`~aios.abi.errors.QuotaExceeded` and stores nothing.  A
record's bytes are its UTF-8 text, its metadata JSON and, for archival, its
vector.

**I/O.**  The core is synchronous and owns no threads or timers.  Time comes
from an injected ``clock`` (seconds), so TTL tests run on a fake clock.
State is SQLite (``memory.sqlite``) plus one vector directory per namespace
under the directory the caller passes (the kernel passes
``$AIOS_HOME/memory``); ``directory=None`` keeps everything in memory.
Writes go to SQLite first, then to the vector index; on open, a namespace's
index is reconciled against the records (stray vectors dropped, missing ones
re-embedded), so a crash between the two writes heals itself.

**Modules.**  This file holds the rules (rights, tiers, retention, quotas,
search); :mod:`~aios.kmod.memoryd.db` the SQLite schema and row codecs;
:mod:`~aios.kmod.memoryd.archive` the per-namespace vector indexes and their
reconciliation; :mod:`~aios.kmod.memoryd.records` the values it returns.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import (
    AlreadyExists,
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
)
from aios.kmod.memoryd.archive import ArchiveIndexes, index_meta, unit_vector
from aios.kmod.memoryd.db import (
    RECORD_COLS,
    delete_rows,
    fts_delete,
    fts_query,
    namespace_from_row,
    open_db,
    record_from_row,
    retention_json,
)
from aios.kmod.memoryd.records import (
    CompactionReport,
    CoreBlock,
    Hit,
    MemRight,
    Namespace,
    Record,
    Retention,
    Rights,
    Tier,
    Usage,
    as_rights,
    require,
)
from aios.lib.vectors.embedding import Embedder

__all__ = [
    "CompactionReport", "CoreBlock", "Hit", "MemRight", "MemoryCore", "Namespace", "Record",
    "Retention", "Rights", "Tier", "Usage", "as_rights",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CORE_BLOCK_LIMIT = 2000  # characters, Letta's default block size
MAX_TEXT = 64 * 1024  # characters in one record
MAX_K = 1000
DEFAULT_QUOTA_ITEMS = 100_000
DEFAULT_QUOTA_BYTES = 256 << 20



def _text(text: object, what: str = "text") -> str:
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise InvalidArgument(f"{what} is over {MAX_TEXT} characters")
    return text


def _meta(meta: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    if meta is None:
        return {}, "{}"
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise InvalidArgument("metadata must be a dict with string keys")
    try:
        enc = json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metadata is not JSON-serialisable: {exc}") from exc
    return dict(meta), enc


class MemoryCore:
    """The memory fabric's state and rules; see the module essay."""

    def __init__(self, directory: Path | str | None, embedder: Embedder, *,
                 clock: Callable[[], float] = time.time,
                 exact_threshold: int = 20_000) -> None:
        self.embedder = embedder
        self.clock = clock
        self.exact_threshold = exact_threshold
        self._dir = Path(directory) if directory is not None else None
        self._db = open_db(self._dir)
        self._archive = ArchiveIndexes(self._dir, embedder, self._db,
                                       exact_threshold=exact_threshold)
        self.recoveries = self._archive.recoveries  # what opening had to repair, one line each
        self._ns: dict[str, Namespace] = {}
        for row in self._db.execute("SELECT name, owner, created, quota_items, quota_bytes, "
                                    "retention FROM namespaces"):
            self._ns[row[0]] = namespace_from_row(row)

    # -- namespaces ------------------------------------------------------------

    def create_namespace(self, owner: str, name: str, *,
                         quota_items: int = DEFAULT_QUOTA_ITEMS,
                         quota_bytes: int = DEFAULT_QUOTA_BYTES,
                         retention: Mapping[Tier, Retention] | None = None) -> Namespace:
        """A new namespace owned by ``owner``; the kernel then gives the owner ALL rights."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidArgument(f"bad namespace name {name!r}: letters, digits, ._:/- (<= 128)")
        if not isinstance(owner, str) or not owner:
            raise InvalidArgument("owner must be a non-empty string")
        if quota_items < 0 or quota_bytes < 0:
            raise InvalidArgument("quotas must be >= 0")
        if name in self._ns:
            raise AlreadyExists(f"memory namespace {name!r} already exists")
        ret = {t: Retention() for t in (Tier.RECALL, Tier.ARCHIVAL)}
        ret.update(self._check_retention(retention or {}))
        ns = Namespace(name, owner, self.clock(), quota_items, quota_bytes, ret)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO namespaces VALUES (?, ?, ?, ?, ?, ?)",
                             (name, owner, ns.created, quota_items, quota_bytes,
                              retention_json(ret)))
        self._ns[name] = ns
        return ns

    def namespace(self, name: str) -> Namespace:
        ns = self._ns.get(name)
        if ns is None:
            raise NoSuchObject(f"no memory namespace {name!r}")
        return ns

    def totals(self) -> tuple[int, int]:
        """Live items and their bytes over every namespace (records and core blocks)."""
        n, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM records WHERE expires IS NULL OR expires > ?",
            (self.clock(),)).fetchone()
        bn, bsize = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(value AS BLOB))), 0) FROM core_blocks").fetchone()
        return int(n) + int(bn), int(size) + int(bsize)

    def namespaces(self, owner: str | None = None) -> list[Namespace]:
        return sorted((n for n in self._ns.values() if owner is None or n.owner == owner),
                      key=lambda n: n.name)

    def drop_namespace(self, name: str, rights: Rights) -> None:
        """Delete a namespace and everything in it (needs WRITE and GRANT)."""
        self.namespace(name)
        require(rights, MemRight.WRITE | MemRight.GRANT, name, "dropping")
        with self._db:
            self._db.execute("BEGIN")
            for (rid,) in self._db.execute(
                    "SELECT id FROM records WHERE ns = ? AND tier = 'recall'", (name,)).fetchall():
                fts_delete(self._db, rid)
            for table in ("records", "core_blocks", "core_history"):
                self._db.execute(f"DELETE FROM {table} WHERE ns = ?", (name,))
            self._db.execute("DELETE FROM namespaces WHERE name = ?", (name,))
        self._archive.drop(name)
        del self._ns[name]

    def set_retention(self, name: str, rights: Rights, tier: Tier, retention: Retention) -> None:
        ns = self.namespace(name)
        require(rights, MemRight.WRITE, name, "changing retention")
        ret = dict(ns.retention)
        ret.update(self._check_retention({tier: retention}))
        self._replace_ns(ns, retention=ret)

    def set_quota(self, name: str, *, items: int | None = None, bytes_: int | None = None) -> None:
        """Kernel-only: change a namespace's quotas (capability quotas are charged by the kernel)."""
        ns = self.namespace(name)
        if (items is not None and items < 0) or (bytes_ is not None and bytes_ < 0):
            raise InvalidArgument("quotas must be >= 0")
        self._replace_ns(ns, quota_items=ns.quota_items if items is None else items,
                         quota_bytes=ns.quota_bytes if bytes_ is None else bytes_)

    @staticmethod
    def authorize_grant(rights: Rights, requested: Rights) -> MemRight:
        """The rights a grantee may receive: needs GRANT, and only ever narrows."""
        have, want = as_rights(rights), as_rights(requested)
        if not have & MemRight.GRANT:
            raise PermissionDenied("sharing a memory namespace needs the grant right")
        if want & ~have:
            raise PermissionDenied("a grant cannot give rights the granter does not hold")
        return want

    def usage(self, name: str) -> Usage:
        ns = self.namespace(name)
        now = self.clock()
        by_tier: dict[Tier, int] = {t: 0 for t in Tier}
        items = size = 0
        for tier, count, total in self._db.execute(
                "SELECT tier, COUNT(*), COALESCE(SUM(bytes), 0) FROM records WHERE ns = ? "
                "AND (expires IS NULL OR expires > ?) GROUP BY tier", (name, now)):
            by_tier[Tier(tier)] = count
            items += count
            size += total
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(value AS BLOB))), 0) FROM core_blocks "
            "WHERE ns = ?", (name,)).fetchone()
        by_tier[Tier.CORE] = count
        return Usage(items + count, size + total, ns.quota_items, ns.quota_bytes, by_tier)

    # -- core blocks -----------------------------------------------------------

    def core_set(self, name: str, rights: Rights, label: str, value: str, *,
                 limit: int | None = None) -> CoreBlock:
        """Create or overwrite a core block; the old value goes to history."""
        self.namespace(name)
        require(rights, MemRight.WRITE, name, "writing a core block")
        if not isinstance(label, str) or not LABEL_RE.match(label):
            raise InvalidArgument(f"bad core block label {label!r}")
        if not isinstance(value, str):
            raise InvalidArgument("core block value must be a string")
        old = self._core_row(name, label)
        lim = limit if limit is not None else (old.limit if old else CORE_BLOCK_LIMIT)
        if not 1 <= lim <= MAX_TEXT:
            raise InvalidArgument(f"core block limit must be 1..{MAX_TEXT}")
        if len(value) > lim:
            raise InvalidArgument(f"core block {label!r} is limited to {lim} characters "
                                  f"({len(value)} given)")
        grow_items = 0 if old else 1
        grow_bytes = len(value.encode()) - (len(old.value.encode()) if old else 0)
        self._check_quota(name, grow_items, grow_bytes)
        version = old.version + 1 if old else 1
        now = self.clock()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO core_blocks VALUES (?, ?, ?, ?, ?, ?)",
                             (name, label, value, lim, version, now))
            self._db.execute("INSERT INTO core_history VALUES (?, ?, ?, ?, ?)",
                             (name, label, version, value, now))
        return CoreBlock(name, label, value, lim, version, now)

    def core_append(self, name: str, rights: Rights, label: str, text: str) -> CoreBlock:
        blk = self.core_get(name, rights, label)
        sep = "\n" if blk.value else ""
        return self.core_set(name, rights, label, blk.value + sep + text)

    def core_replace(self, name: str, rights: Rights, label: str, old: str, new: str) -> CoreBlock:
        blk = self.core_get(name, rights, label)
        if not old or old not in blk.value:
            raise NoSuchObject(f"core block {label!r} does not contain the text to replace")
        return self.core_set(name, rights, label, blk.value.replace(old, new, 1))

    def core_get(self, name: str, rights: Rights, label: str) -> CoreBlock:
        self.namespace(name)
        require(rights, MemRight.READ, name, "reading a core block")
        blk = self._core_row(name, label)
        if blk is None:
            raise NoSuchObject(f"no core block {label!r} in {name!r}")
        return blk

    def core_list(self, name: str, rights: Rights) -> list[CoreBlock]:
        self.namespace(name)
        require(rights, MemRight.READ, name, "listing core blocks")
        return [CoreBlock(name, *r) for r in self._db.execute(
            "SELECT label, value, lim, version, updated FROM core_blocks WHERE ns = ? "
            "ORDER BY label", (name,))]

    def core_history(self, name: str, rights: Rights, label: str) -> list[CoreBlock]:
        blk = self.core_get(name, rights, label)
        return [CoreBlock(name, label, v, blk.limit, ver, t) for ver, v, t in self._db.execute(
            "SELECT version, value, updated FROM core_history WHERE ns = ? AND label = ? "
            "ORDER BY version", (name, label))]

    def core_delete(self, name: str, rights: Rights, label: str) -> None:
        self.namespace(name)
        require(rights, MemRight.WRITE, name, "deleting a core block")
        with self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute("DELETE FROM core_blocks WHERE ns = ? AND label = ?",
                                   (name, label))
            if cur.rowcount == 0:
                raise NoSuchObject(f"no core block {label!r} in {name!r}")
            self._db.execute("DELETE FROM core_history WHERE ns = ? AND label = ?", (name, label))

    # -- records: put / get / delete ------------------------------------------

    def put(self, name: str, rights: Rights, text: str, *, tier: Tier = Tier.ARCHIVAL,
            meta: Mapping[str, Any] | None = None, vector: np.ndarray | None = None,
            role: str | None = None, ttl_s: float | None = None) -> Record:
        """Store a passage (archival, embedded) or a message (recall)."""
        ns = self.namespace(name)
        require(rights, MemRight.WRITE, name, "writing")
        tier = Tier(tier)
        if tier is Tier.CORE:
            raise InvalidArgument("core blocks are written with core_set")
        body = _text(text)
        meta_d, meta_enc = _meta(meta)
        if ttl_s is not None and ttl_s <= 0:
            raise InvalidArgument("ttl_s must be > 0")
        vec: np.ndarray | None = None
        idx = self._archive.get(name)  # opened (and reconciled) before the new row exists
        if tier is Tier.ARCHIVAL:
            vec = unit_vector(vector, self.embedder.dim) if vector is not None else self.embedder.embed([body])[0]
        elif vector is not None:
            raise InvalidArgument("only archival records carry vectors")
        size = len(body.encode()) + len(meta_enc) + (vec.nbytes if vec is not None else 0)
        ret = ns.retention.get(tier, Retention())
        now = self.clock()
        ttl = ttl_s if ttl_s is not None else ret.ttl_s
        expires = now + ttl if ttl is not None else None
        evict = self._eviction_victims(name, tier, ret, now)
        freed_bytes = sum(b for _, b in evict)
        self._check_quota(name, 1 - len(evict), size - freed_bytes)
        with self._db:
            self._db.execute("BEGIN")
            if evict:
                delete_rows(self._db, name, tier, [i for i, _ in evict])
            cur = self._db.execute(
                "INSERT INTO records (ns, tier, role, text, meta, created, expires, bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, tier.value, role, body, meta_enc, now, expires, size))
            rid = int(cur.lastrowid or 0)
            if tier is Tier.RECALL:
                self._db.execute("INSERT INTO recall_fts (rowid, text) VALUES (?, ?)", (rid, body))
        if evict and tier is Tier.ARCHIVAL:
            idx.delete(i for i, _ in evict)
        if vec is not None:
            idx.add([rid], vec.reshape(1, -1), [index_meta(meta_d, now, expires)])
        return Record(rid, name, tier, body, meta_d, now, expires, role)

    def recall_append(self, name: str, rights: Rights, role: str, text: str,
                      meta: Mapping[str, Any] | None = None) -> Record:
        if not isinstance(role, str) or not role:
            raise InvalidArgument("role must be a non-empty string")
        return self.put(name, rights, text, tier=Tier.RECALL, role=role, meta=meta)

    def get(self, name: str, rights: Rights, record_id: int) -> Record:
        self.namespace(name)
        require(rights, MemRight.READ, name, "reading")
        row = self._db.execute(
            f"SELECT {RECORD_COLS} FROM records "
            "WHERE id = ? AND ns = ? AND (expires IS NULL OR expires > ?)",
            (int(record_id), name, self.clock())).fetchone()
        if row is None:
            raise NoSuchObject(f"no record {record_id} in {name!r}")
        return record_from_row(row)

    def delete(self, name: str, rights: Rights, record_id: int) -> None:
        self.namespace(name)
        require(rights, MemRight.WRITE, name, "deleting")
        row = self._db.execute("SELECT tier FROM records WHERE id = ? AND ns = ?",
                               (int(record_id), name)).fetchone()
        if row is None:
            raise NoSuchObject(f"no record {record_id} in {name!r}")
        with self._db:
            self._db.execute("BEGIN")
            delete_rows(self._db, name, Tier(row[0]), [int(record_id)])
        if row[0] == Tier.ARCHIVAL.value:
            self._archive.get(name).delete([int(record_id)])

    def records(self, name: str, rights: Rights, tier: Tier | None = None, *,
             limit: int = 100, offset: int = 0) -> list[Record]:
        self.namespace(name)
        require(rights, MemRight.READ, name, "listing")
        q = (f"SELECT {RECORD_COLS} FROM records WHERE ns = ? "
             "AND (expires IS NULL OR expires > ?)")
        args: list[Any] = [name, self.clock()]
        if tier is not None:
            q += " AND tier = ?"
            args.append(Tier(tier).value)
        q += " ORDER BY created, id LIMIT ? OFFSET ?"
        args += [max(0, min(limit, MAX_K)), max(0, offset)]
        return [record_from_row(r) for r in self._db.execute(q, args)]

    # -- search ----------------------------------------------------------------

    def search(self, scopes: Mapping[str, Rights], query: str | np.ndarray, k: int = 10, *,
               filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """Archival search over a set of namespaces; each needs READ.  Best first."""
        if not scopes:
            raise InvalidArgument("search needs at least one namespace")
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be 1..{MAX_K}")
        for name, rights in scopes.items():
            self.namespace(name)
            require(rights, MemRight.READ, name, "searching")
        if isinstance(query, str):
            qv = self.embedder.embed([_text(query, "query")])[0]
        else:
            qv = unit_vector(query, self.embedder.dim)
        now = self.clock()
        hits: list[tuple[float, int, str]] = []
        for name in scopes:
            idx = self._archive.get(name)
            want = k
            while True:
                found = idx.search(qv, want, filters=filters)
                live = [h for h in found if h.meta.get("_expires") is None
                        or h.meta["_expires"] > now]
                if len(live) >= k or len(found) < want:
                    break
                want *= 4
            hits += [(h.score, h.id, name) for h in live[:k]]
        hits.sort(key=lambda t: (-t[0], t[1]))
        out = []
        for score, rid, name in hits[:k]:
            row = self._db.execute(
                f"SELECT {RECORD_COLS} FROM records "
                "WHERE id = ? AND ns = ?", (rid, name)).fetchone()
            if row is not None:
                out.append(Hit(record_from_row(row), score))
        return out

    def recall_search(self, name: str, rights: Rights, text: str | None = None, *,
                      since: float | None = None, until: float | None = None,
                      role: str | None = None, k: int = 20) -> list[Record]:
        """Message history by words (BM25 order) and/or time range (newest first)."""
        self.namespace(name)
        require(rights, MemRight.READ, name, "searching recall")
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be 1..{MAX_K}")
        cond = ["r.ns = ?", "r.tier = 'recall'", "(r.expires IS NULL OR r.expires > ?)"]
        args: list[Any] = [name, self.clock()]
        if since is not None:
            cond.append("r.created >= ?")
            args.append(since)
        if until is not None:
            cond.append("r.created < ?")
            args.append(until)
        if role is not None:
            cond.append("r.role = ?")
            args.append(role)
        cols = "r.id, r.ns, r.tier, r.text, r.meta, r.created, r.expires, r.role"
        if text:
            sql = (f"SELECT {cols} FROM recall_fts f JOIN records r ON r.id = f.rowid "
                   f"WHERE recall_fts MATCH ? AND {' AND '.join(cond)} "
                   "ORDER BY bm25(recall_fts), r.created DESC LIMIT ?")
            rows = self._db.execute(sql, [fts_query(text), *args, k])
        else:
            sql = (f"SELECT {cols} FROM records r WHERE {' AND '.join(cond)} "
                   "ORDER BY r.created DESC, r.id DESC LIMIT ?")
            rows = self._db.execute(sql, [*args, k])
        return [record_from_row(r) for r in rows]

    # -- retention ---------------------------------------------------------------

    def compact(self) -> CompactionReport:
        """Remove expired records, enforce max_items, rebuild indexes with many tombstones."""
        now = self.clock()
        expired = evicted = rebuilt = 0
        for name, ns in list(self._ns.items()):
            gone_vec: list[int] = []
            with self._db:
                self._db.execute("BEGIN")
                for tier in (Tier.RECALL, Tier.ARCHIVAL):
                    ids = [r[0] for r in self._db.execute(
                        "SELECT id FROM records WHERE ns = ? AND tier = ? AND expires IS NOT NULL "
                        "AND expires <= ?", (name, tier.value, now))]
                    delete_rows(self._db, name, tier, ids)
                    expired += len(ids)
                    extra: list[int] = []
                    cap = ns.retention.get(tier, Retention()).max_items
                    if cap is not None:
                        extra = [r[0] for r in self._db.execute(
                            "SELECT id FROM records WHERE ns = ? AND tier = ? "
                            "ORDER BY created DESC, id DESC LIMIT -1 OFFSET ?",
                            (name, tier.value, cap))]
                        delete_rows(self._db, name, tier, extra)
                        evicted += len(extra)
                    if tier is Tier.ARCHIVAL:
                        gone_vec = ids + extra
            idx = self._archive.get(name)
            idx.delete(gone_vec)
            s = idx.stats()
            if s.dead:
                idx.rebuild()
                rebuilt += 1
            idx.save()
        return CompactionReport(expired, evicted, rebuilt)

    def close(self) -> None:
        self._archive.close()
        self._db.close()

    # -- internals ---------------------------------------------------------------

    def _check_quota(self, name: str, items: int, size: int) -> None:
        u = self.usage(name)
        if items > 0 and u.items + items > u.quota_items:
            raise QuotaExceeded(f"memory namespace {name!r}: item quota {u.quota_items} reached")
        if size > 0 and u.bytes + size > u.quota_bytes:
            raise QuotaExceeded(f"memory namespace {name!r}: byte quota {u.quota_bytes} would be "
                                f"exceeded ({u.bytes} + {size})")

    def _eviction_victims(self, name: str, tier: Tier, ret: Retention,
                          now: float) -> list[tuple[int, int]]:
        if ret.max_items is None:
            return []
        rows = self._db.execute(
            "SELECT id, bytes FROM records WHERE ns = ? AND tier = ? AND "
            "(expires IS NULL OR expires > ?) ORDER BY created, id", (name, tier.value, now))
        live = rows.fetchall()
        over = len(live) + 1 - ret.max_items
        return [(int(i), int(b)) for i, b in live[:over]] if over > 0 else []

    def _core_row(self, name: str, label: str) -> CoreBlock | None:
        row = self._db.execute("SELECT value, lim, version, updated FROM core_blocks "
                               "WHERE ns = ? AND label = ?", (name, label)).fetchone()
        return CoreBlock(name, label, *row) if row else None

    @staticmethod
    def _check_retention(ret: Mapping[Tier, Retention]) -> dict[Tier, Retention]:
        out: dict[Tier, Retention] = {}
        for tier, r in ret.items():
            t = Tier(tier)
            if t is Tier.CORE:
                raise InvalidArgument("core blocks are pinned: no retention rules")
            if not isinstance(r, Retention):
                raise InvalidArgument("retention must be a Retention")
            if r.ttl_s is not None and r.ttl_s <= 0:
                raise InvalidArgument("ttl_s must be > 0")
            if r.max_items is not None and r.max_items < 1:
                raise InvalidArgument("max_items must be >= 1")
            out[t] = r
        return out

    def _replace_ns(self, ns: Namespace, **changes: Any) -> None:
        fields = {"name": ns.name, "owner": ns.owner, "created": ns.created,
                  "quota_items": ns.quota_items, "quota_bytes": ns.quota_bytes,
                  "retention": ns.retention, **changes}
        new = Namespace(**fields)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE namespaces SET quota_items = ?, quota_bytes = ?, "
                             "retention = ? WHERE name = ?",
                             (new.quota_items, new.quota_bytes, retention_json(new.retention),
                              new.name))
        self._ns[ns.name] = new
