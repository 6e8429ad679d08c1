"""The kernel journal on disk: SQLite in WAL mode, a hash chain, group commit.

Design
------
**Tables.**  ``ops(seq, kind, body, chain)`` is the journal proper: one row per
record (:mod:`aios.kmod.journal.records`), ``body`` its msgpack encoding.
``snapshot`` holds at most one compacted image: the records that rebuild the
state as of sequence ``upto`` (:meth:`KernelImage.records`), with the chain
value at ``upto`` and a digest of the body; ops up to ``upto`` are then
deleted.  ``checkpoints(aid, n, ts_ns, state, digest)`` holds agent
checkpoints (``ctx.checkpoint(state)``), the last ``keep`` per agent; older
ones are pruned in the same transaction that adds a new one, from the first.
``meta`` holds the format version and the journal's random id.

**The chain.**  ``chain[i] = BLAKE2b-128(chain[i-1] || seq || kind || body)``,
starting from a value derived from the journal id.  Replay recomputes it row
by row: a changed, missing, reordered or foreign row breaks it at that row.
Together with SQLite's ``PRAGMA quick_check`` (b-tree and page structure)
and per-row digests of checkpoints and the snapshot, this detects corruption
and torn or mixed files.  It is not tamper evidence (nothing here is keyed;
the audit log is the tamper-evident record); whoever can rewrite the file can
rewrite the chain.

**Group commit.**  :meth:`Journal.append` assigns the next sequence, encodes
the record and advances the chain in memory; it does no I/O.
:meth:`Journal.commit` writes everything buffered in **one** transaction with
``synchronous=FULL`` and returns the highest sequence it made durable: only
then is an operation *acknowledged* (a durable send answered, a revoke
reported done).  Many operations share one fsync, which is where the
throughput comes from (``aios bench journal``).  The kernel module appends
from its loop thread and commits from a flusher thread or at the end of a
scheduling round; ``append`` commits by itself when ``batch_max`` records are
waiting.  A commit that fails leaves the journal unusable (every later call
raises): its records may or may not be on disk and the chain in memory no
longer matches, so the kernel must stop rather than guess (the lesson of
PostgreSQL's fsync failures).

**Crash semantics.**  SIGKILL or a power cut loses at most the records not
yet committed, which nobody was told about.  WAL makes each commit
all-or-nothing, so the file always holds an acknowledged prefix.

**Files.**  The directory is made (or tightened to) 0700 and the database is
created 0600 before SQLite opens it; SQLite gives ``-wal`` and ``-shm`` the
database's mode.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack

from aios.errors import IntegrityError, InvalidArgument, KernelPanic
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage

FORMAT: Final = "aios-journal/1"
DIGEST: Final = 16
MAX_CHECKPOINT: Final = 16 << 20
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ops(
  seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, body BLOB NOT NULL, chain BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot(
  id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL, body BLOB NOT NULL,
  chain BLOB NOT NULL, digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
  aid INTEGER NOT NULL, n INTEGER NOT NULL, ts_ns INTEGER NOT NULL, state BLOB NOT NULL,
  digest BLOB NOT NULL, PRIMARY KEY(aid, n)) WITHOUT ROWID;
"""
_HDR: Final = struct.Struct(">QH")
_CKPT: Final = struct.Struct(">QQQ")


def _link(prev: bytes, seq: int, kind: int, body: bytes) -> bytes:
    h = hashlib.blake2b(prev, digest_size=DIGEST)
    h.update(_HDR.pack(seq, kind))
    h.update(body)
    return h.digest()


def _genesis(journal_id: bytes) -> bytes:
    return hashlib.blake2b(b"aios-journal/1\0" + journal_id, digest_size=DIGEST).digest()


def _ckpt_digest(aid: int, n: int, ts: int, state: bytes) -> bytes:
    return hashlib.blake2b(_CKPT.pack(aid, n, ts) + state, digest_size=DIGEST).digest()


def recovery_hint(path: Path) -> str:
    return (f"to set the damaged file aside and keep its verified prefix, run: "
            f"python -m aios.kmod.journal salvage {path}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Checkpoint:
    aid: int
    n: int
    ts_ns: int
    state: Any


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a verified replay read: records folded and the last sequence."""

    path: str
    snapshot_upto: int
    records: int
    last_seq: int
    checkpoints: int
    seconds: float


def ensure_private_dir(d: Path) -> None:
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(d, 0o700)
    except OSError as e:
        raise InvalidArgument(f"journal directory {d} cannot be made private: {e.strerror}") from None


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        ensure_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class Journal:
    """One kernel's journal file.  Safe to share between a loop thread and a flusher thread."""

    def __init__(
        self,
        path: Path,
        *,
        batch_max: int = 4096,
        keep_checkpoints: int = 3,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if batch_max < 1 or keep_checkpoints < 1:
            raise InvalidArgument("batch_max and keep_checkpoints must be >= 1")
        self.path = Path(path)
        self.batch_max = batch_max
        self.keep = keep_checkpoints
        self.clock = clock
        try:
            self.conn = connect(self.path)
        except sqlite3.DatabaseError as e:
            raise self._damaged(f"SQLite cannot open it: {e}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise self._damaged(f"SQLite cannot open it: {e}") from None
        except IntegrityError:
            self.conn.close()
            raise

    def _open(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise self._damaged("it is an SQLite database of something else")
        self.conn.executescript(_SCHEMA)
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            self.conn.execute("BEGIN")
            self.conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT.encode(),))
            self.conn.execute("INSERT INTO meta VALUES ('id', ?)", (secrets.token_bytes(16),))
            self.conn.execute("COMMIT")
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if bytes(meta.get("format", b"")) != FORMAT.encode() or len(bytes(meta.get("id", b""))) != 16:
            raise self._damaged(f"it is not an AIOS journal of format {FORMAT}")
        self.journal_id = bytes(meta["id"])
        self._buf_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._ops: list[tuple[int, int, bytes, bytes]] = []
        self._ckpts: list[tuple[str, int, int, int, bytes, bytes]] = []
        self._ckpt_n: dict[int, int] = {}
        self._failed: BaseException | None = None
        last = self.conn.execute("SELECT seq, chain FROM ops ORDER BY seq DESC LIMIT 1").fetchone()
        snap = self.conn.execute("SELECT upto, chain FROM snapshot").fetchone()
        if last is not None:
            self._seq, self._head = int(last[0]), bytes(last[1])
        elif snap is not None:
            self._seq, self._head = int(snap[0]), bytes(snap[1])
        else:
            self._seq, self._head = 0, _genesis(self.journal_id)
        self.acknowledged = self._seq

    # -- writing ---------------------------------------------------------------------------------
    def append(self, rec: R.Record) -> int:
        """Buffer ``rec``; returns its sequence (acknowledged once a commit covers it)."""
        return self.append_many((rec,))

    def append_many(self, recs: Iterable[R.Record]) -> int:
        """Buffer the records of one operation; an automatic commit never splits them."""
        encoded = [R.encode(r) for r in recs]
        with self._buf_lock:
            self._check()
            for kind, body in encoded:
                self._push(kind, body)
            seq, full = self._seq, len(self._ops) >= self.batch_max
        if full:
            self.commit()
        return seq

    def _push(self, kind: int, body: bytes) -> None:
        self._seq += 1
        self._head = _link(self._head, self._seq, kind, body)
        self._ops.append((self._seq, kind, body, self._head))

    def checkpoint(self, aid: int, state: Any) -> int:
        """Buffer agent ``aid``'s checkpoint (and a :class:`Checkpointed` record); returns its
        number.  Retention (the last ``keep``) applies in the commit that writes it."""
        if type(aid) is not int or aid < 0:
            raise InvalidArgument("agent id must be a non-negative int")
        try:
            blob = msgpack.packb(state, use_bin_type=True)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"checkpoint state is not plain data: {e}") from None
        if len(blob) > MAX_CHECKPOINT:
            raise InvalidArgument(f"checkpoint of {len(blob)} bytes exceeds {MAX_CHECKPOINT}")
        ts = self.clock()
        with self._buf_lock:
            self._check()
            n = self._next_ckpt(aid)
            self._ckpts.append(("put", aid, n, ts, blob, _ckpt_digest(aid, n, ts, blob)))
            self._push(*R.encode(R.Checkpointed(aid, n)))  # same commit as the row
        return n

    def forget_checkpoints(self, aid: int) -> None:
        """Drop every checkpoint of ``aid`` (an agent reaped for good)."""
        with self._buf_lock:
            self._check()
            self._ckpts.append(("forget", aid, 0, 0, b"", b""))
            self._ckpt_n.pop(aid, None)
            self._push(*R.encode(R.Checkpointed(aid, 0)))

    def _next_ckpt(self, aid: int) -> int:
        n = self._ckpt_n.get(aid)
        if n is None:
            row = self.conn.execute("SELECT MAX(n) FROM checkpoints WHERE aid = ?", (aid,)).fetchone()
            n = int(row[0] or 0)
        self._ckpt_n[aid] = n + 1
        return n + 1

    def commit(self) -> int:
        """Write everything buffered in one FULL-sync transaction; returns the acknowledged seq."""
        with self._io_lock:
            with self._buf_lock:
                self._check()
                ops, self._ops = self._ops, []
                ckpts, self._ckpts = self._ckpts, []
                upto = self._seq
            if not ops and not ckpts:
                return self.acknowledged
            try:
                self.conn.execute("BEGIN")
                if ops:
                    self.conn.executemany("INSERT INTO ops VALUES (?, ?, ?, ?)", ops)
                for what, aid, n, ts, blob, digest in ckpts:
                    if what == "put":
                        self.conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                                          (aid, n, ts, blob, digest))  # fmt: skip
                        self.conn.execute("DELETE FROM checkpoints WHERE aid = ? AND n <= ?",
                                          (aid, n - self.keep))  # fmt: skip
                    else:
                        self.conn.execute("DELETE FROM checkpoints WHERE aid = ?", (aid,))
                self.conn.execute("COMMIT")
            except BaseException as e:
                self._failed = e
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise KernelPanic(f"journal commit failed ({e}); the kernel must stop") from e
            self.acknowledged = upto
            return upto

    def _check(self) -> None:
        if self._failed is not None:
            raise KernelPanic(f"journal {self.path} is unusable after a failed commit") from self._failed

    @property
    def pending(self) -> int:
        return len(self._ops) + len(self._ckpts)

    @property
    def last_seq(self) -> int:
        return self._seq

    # -- reading ----------------------------------------------------------------------------------
    def latest_checkpoint(self, aid: int) -> Checkpoint | None:
        cps = self.checkpoints(aid)
        return cps[-1] if cps else None

    def checkpoints(self, aid: int) -> list[Checkpoint]:
        rows = self.conn.execute(
            "SELECT n, ts_ns, CAST(state AS BLOB), CAST(digest AS BLOB) FROM checkpoints "
            "WHERE aid = ? ORDER BY n",
            (aid,),
        ).fetchall()
        out = []
        for n, ts, blob, digest in rows:
            if _ckpt_digest(aid, n, ts, bytes(blob)) != bytes(digest):
                raise self._damaged(f"checkpoint {n} of agent {aid} does not match its digest")
            out.append(Checkpoint(aid, n, ts, msgpack.unpackb(bytes(blob), raw=False,
                                                              strict_map_key=False)))  # fmt: skip
        return out

    def _damaged(self, why: str) -> IntegrityError:
        return IntegrityError(
            f"kernel journal {self.path} failed its integrity check: {why}. Boot stops here and "
            f"nothing was changed; {recovery_hint(self.path)}",
            path=str(self.path),
        )

    def _stream(self) -> Iterator[tuple[int, R.Record]]:
        """Every committed record in order, verified as it is read (snapshot first)."""
        snap = self.conn.execute("SELECT upto, CAST(body AS BLOB), CAST(chain AS BLOB), CAST(digest AS BLOB) FROM snapshot").fetchone()
        head, expect = _genesis(self.journal_id), 1
        if snap is not None:
            upto, body, chain, digest = int(snap[0]), bytes(snap[1]), bytes(snap[2]), bytes(snap[3])
            if hashlib.blake2b(body + chain, digest_size=DIGEST).digest() != digest:
                raise self._damaged(f"the snapshot (records up to {upto}) does not match its digest")
            try:
                pairs = msgpack.unpackb(body, raw=False, strict_map_key=False)
                for kind, rb in pairs:
                    yield 0, R.decode(kind, rb)
            except IntegrityError as e:
                raise self._damaged(f"the snapshot holds a bad record: {e.message}") from None
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
                raise self._damaged(f"the snapshot is not readable: {e}") from None
            head, expect = chain, upto + 1
        cur = self.conn.execute(
            "SELECT seq, kind, CAST(body AS BLOB), CAST(chain AS BLOB) FROM ops ORDER BY seq"
        )
        while rows := cur.fetchmany(8192):
            for seq, kind, body, chain in rows:
                if seq != expect:
                    raise self._damaged(f"record {expect} is missing (found {seq} instead)")
                body = bytes(body)
                head = _link(head, seq, kind, body)
                if head != bytes(chain):
                    raise self._damaged(f"record {seq} does not continue the hash chain")
                try:
                    rec = R.decode(kind, body)
                except IntegrityError as e:
                    raise self._damaged(f"record {seq}: {e.message}") from None
                yield seq, rec
                expect += 1

    def quick_check(self) -> None:
        rows = self.conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise self._damaged("SQLite quick_check: " + "; ".join(str(r[0]) for r in rows[:5]))

    def replay(self, clock: Callable[[], int] = lambda: 0) -> tuple[KernelImage, ReplayReport]:
        """Verify the file and fold every committed record into a :class:`KernelImage`.

        Any failure raises :class:`IntegrityError` with the file and the recovery command;
        no partial image is ever returned.
        """
        t0 = time.perf_counter()
        try:
            self.quick_check()
        except sqlite3.DatabaseError as e:
            raise self._damaged(f"SQLite cannot read it: {e}") from None
        image = KernelImage(clock)
        n, last = 0, 0
        try:
            for seq, rec in self._stream():
                try:
                    image.apply(rec)
                except (IntegrityError, KeyError, ValueError, TypeError) as e:
                    at = f"record {seq}" if seq else "the snapshot"
                    raise self._damaged(f"{at} ({type(rec).__name__}) contradicts the state: {e}") from None
                n += 1
                last = seq or last
        except sqlite3.DatabaseError as e:
            raise self._damaged(f"SQLite cannot read it: {e}") from None
        snap = self.conn.execute("SELECT upto FROM snapshot").fetchone()
        upto = int(snap[0]) if snap else 0
        ckpts = self._verify_checkpoints(image)
        image.broker.restored()
        report = ReplayReport(str(self.path), upto, n, max(last, upto), ckpts, time.perf_counter() - t0)
        return image, report

    def _verify_checkpoints(self, image: KernelImage) -> int:
        n = 0
        latest: dict[int, int] = {}
        for aid, k, ts, blob, digest in self.conn.execute(
            "SELECT aid, n, ts_ns, CAST(state AS BLOB), CAST(digest AS BLOB) FROM checkpoints"
        ):
            if _ckpt_digest(aid, k, ts, bytes(blob)) != bytes(digest):
                raise self._damaged(f"checkpoint {k} of agent {aid} does not match its digest")
            latest[aid] = max(latest.get(aid, 0), k)
            n += 1
        for aid, k in image.checkpoints.items():
            if latest.get(aid) != k:
                raise self._damaged(f"agent {aid}'s checkpoint {k} is journaled but not stored")
        return n

    # -- compaction ---------------------------------------------------------------------------------
    def compact(self, image: KernelImage | None = None) -> int:
        """Replace the ops so far with one snapshot; returns the sequence it covers.

        ``image`` must be the state after every appended record (the kernel's live image);
        without it the journal is replayed from disk first.
        """
        self.commit()
        if image is None:
            image, _ = self.replay()
        with self._io_lock, self._buf_lock:
            self._check()
            if self._ops or self._ckpts:
                raise InvalidArgument("records were appended during compaction; compact again")
            upto, chain = self._seq, self._head
            pairs = [list(R.encode(r)) for r in image.records()]
            body = msgpack.packb(pairs, use_bin_type=True)
            digest = hashlib.blake2b(body + chain, digest_size=DIGEST).digest()
            try:
                self.conn.execute("BEGIN")
                self.conn.execute("INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?, ?, ?)",
                                  (upto, body, chain, digest))  # fmt: skip
                self.conn.execute("DELETE FROM ops WHERE seq <= ?", (upto,))
                self.conn.execute("COMMIT")
            except BaseException as e:
                self._failed = e
                raise KernelPanic(f"journal compaction failed ({e}); the kernel must stop") from e
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return upto

    def size_bytes(self) -> int:
        """The journal's bytes on disk (database, WAL and shared memory files)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        if self._failed is None and (self._ops or self._ckpts):
            self.commit()
        self.conn.close()

    def abandon(self) -> None:
        """Close without committing what is buffered (what a crash does; for tests)."""
        self._ops, self._ckpts = [], []
        self.conn.close()
