"""The kernel journal on disk: SQLite in WAL mode, frames in a hash chain, group commit.

Design
------
**Tables.**  ``frames(first, last, body, chain)`` is the journal proper.  A
frame is what one commit wrote: records ``first`` to ``last``
(:mod:`aios.kmod.journal.records`), packed back to back in ``body``.  Storing
a commit as one row, as SQLite's own WAL and PostgreSQL's do with their
frames and pages, is what makes group commit cheap: a thousand durable sends
cost one row, one transaction and one fsync.  ``snapshot`` holds at most one
compacted image: the records that rebuild the state as of sequence ``upto``
(:meth:`KernelImage.records`) with the chain value there and a digest; the
frames it covers are then deleted.  ``checkpoints(aid, n, ts_ns, state,
digest)`` holds agent checkpoints (``ctx.checkpoint(state)``), the last
``keep`` per agent, older ones pruned in the transaction that adds a new one,
from the first.  ``meta`` holds the format version and the journal's random
id.

**The chain.**  ``chain = BLAKE2b-128(previous chain || first || last || body)``,
starting from a value derived from the journal id.  Replay recomputes it frame
by frame: a changed, missing, reordered or foreign frame breaks it there, and
the error names the records it held.  Together with SQLite's ``PRAGMA
quick_check`` (b-tree and page structure) and the digests of checkpoints and
the snapshot, this detects corruption and torn or mixed files.  It is not
tamper evidence (nothing here is keyed; the audit log is the tamper-evident
record): whoever can rewrite the file can rewrite the chain.

**Group commit.**  :meth:`Journal.append` assigns the next sequence and packs
the record; it does no I/O and computes no hash.  :meth:`Journal.commit`
writes everything buffered as one frame in **one** transaction with
``synchronous=FULL`` and returns the highest sequence it made durable: only
then is an operation *acknowledged* (a durable send answered, a revoke
reported done).  The kernel module appends from its loop thread and commits
from a flusher thread or at the end of a scheduling round; ``append``
commits by itself when ``batch_max`` records are waiting, never in the middle
of an operation (:meth:`Journal.append_many`).  A commit that fails leaves
the journal unusable (every later call raises): its frame may or may not be
on disk, so the kernel must stop rather than guess (the lesson of
PostgreSQL's fsync failures).

**Crash semantics.**  SIGKILL or a power cut loses at most the records not
yet committed, which nobody was told about.  WAL makes each commit
all-or-nothing, so the file always holds an acknowledged prefix of whole
frames.

**Files.**  The directory is made (or tightened to) 0700 and the database is
created 0600 before SQLite opens it; SQLite gives ``-wal`` and ``-shm`` the
database's mode.
"""

from __future__ import annotations

import gc
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

from aios.abi.errors import IntegrityError, InvalidArgument, KernelPanic
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage

FORMAT: Final = "aios-journal/1"
DIGEST: Final = 16
MAX_CHECKPOINT: Final = 16 << 20
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS frames(
  first INTEGER PRIMARY KEY, last INTEGER NOT NULL, body BLOB NOT NULL, chain BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot(
  id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL, body BLOB NOT NULL,
  chain BLOB NOT NULL, digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
  aid INTEGER NOT NULL, n INTEGER NOT NULL, ts_ns INTEGER NOT NULL, state BLOB NOT NULL,
  digest BLOB NOT NULL, PRIMARY KEY(aid, n)) WITHOUT ROWID;
"""
_HDR: Final = struct.Struct(">QQ")
_CKPT: Final = struct.Struct(">QQQ")


def _link(prev: bytes, first: int, last: int, body: bytes) -> bytes:
    h = hashlib.blake2b(prev, digest_size=DIGEST)
    h.update(_HDR.pack(first, last))
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
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
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
        self._parts: list[bytes] = []  # packed records not yet committed
        self._ckpts: list[tuple[str, int, int, int, bytes, bytes]] = []
        self._ckpt_n: dict[int, int] = {}
        self._failed: BaseException | None = None
        last = self.conn.execute(
            "SELECT last, CAST(chain AS BLOB) FROM frames ORDER BY first DESC LIMIT 1"
        ).fetchone()
        snap = self.conn.execute("SELECT upto, CAST(chain AS BLOB) FROM snapshot").fetchone()
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
        part = R.pack(rec)
        with self._buf_lock:
            if self._failed is not None:
                self._check()
            self._parts.append(part)
            self._seq += 1
            seq, full = self._seq, len(self._parts) >= self.batch_max
        if full:
            self.commit()
        return seq

    def append_many(self, recs: Iterable[R.Record]) -> int:
        """Buffer the records of one operation; an automatic commit never splits them."""
        packed = list(map(R.pack, recs))
        with self._buf_lock:
            if self._failed is not None:
                self._check()
            self._parts += packed
            self._seq += len(packed)
            seq, full = self._seq, len(self._parts) >= self.batch_max
        if full:
            self.commit()
        return seq

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
            self._parts.append(R.pack(R.Checkpointed(aid, n)))  # same commit as the row
            self._seq += 1
        return n

    def forget_checkpoints(self, aid: int) -> None:
        """Drop every checkpoint of ``aid`` (an agent reaped for good)."""
        with self._buf_lock:
            self._check()
            self._ckpts.append(("forget", aid, 0, 0, b"", b""))
            self._ckpt_n.pop(aid, None)
            self._parts.append(R.pack(R.Checkpointed(aid, 0)))
            self._seq += 1

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
                parts, self._parts = self._parts, []
                ckpts, self._ckpts = self._ckpts, []
                upto = self._seq
            if not parts and not ckpts:
                return self.acknowledged
            first = upto - len(parts) + 1
            body = b"".join(parts)
            chain = _link(self._head, first, upto, body) if parts else self._head
            try:
                self.conn.execute("BEGIN")
                if parts:
                    self.conn.execute("INSERT INTO frames VALUES (?, ?, ?, ?)",
                                      (first, upto, body, chain))  # fmt: skip
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
            self._head = chain
            self.acknowledged = upto
            return upto

    def _check(self) -> None:
        if self._failed is not None:
            raise KernelPanic(f"journal {self.path} is unusable after a failed commit") from self._failed

    @property
    def pending(self) -> int:
        return len(self._parts) + len(self._ckpts)

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

    def _frames(self) -> Iterator[tuple[int, int, list[R.Record]]]:
        """``(first, last, records)`` for the snapshot (first = last = 0) and then every
        committed frame, verified as they are read."""
        snap = self.conn.execute(
            "SELECT upto, CAST(body AS BLOB), CAST(chain AS BLOB), CAST(digest AS BLOB) FROM snapshot"
        ).fetchone()
        head, expect = _genesis(self.journal_id), 1
        if snap is not None:
            upto, body, chain, digest = int(snap[0]), bytes(snap[1]), bytes(snap[2]), bytes(snap[3])
            if hashlib.blake2b(body + chain, digest_size=DIGEST).digest() != digest:
                raise self._damaged(f"the snapshot (records up to {upto}) does not match its digest")
            try:
                yield 0, 0, list(R.unpack_frame(body))
            except IntegrityError as e:
                raise self._damaged(f"the snapshot holds a bad record: {e.message}") from None
            head, expect = chain, upto + 1
        cur = self.conn.execute(
            "SELECT first, last, CAST(body AS BLOB), CAST(chain AS BLOB) FROM frames ORDER BY first"
        )
        while rows := cur.fetchmany(256):
            for first, last, body, chain in rows:
                if first != expect:
                    raise self._damaged(
                        f"records {expect}-{first - 1} are missing (the next commit starts at {first})"
                    )
                head = _link(head, first, last, body)
                if head != chain:
                    raise self._damaged(
                        f"records {first}-{last} (one commit) do not continue the hash chain")
                try:
                    recs = list(R.unpack_frame(body))
                except IntegrityError as e:
                    raise self._damaged(f"records {first}-{last}: {e.message}") from None
                if len(recs) != last - first + 1:
                    raise self._damaged(f"records {first}-{last}: the commit holds {len(recs)}")
                yield first, last, recs
                expect = last + 1

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
        # the image is hundreds of thousands of long-lived objects: the cyclic collector would
        # rescan them over and over while they are built (it doubles replay time), and the fold
        # makes no cycles worth collecting
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._replay(clock, t0)
        finally:
            if was_enabled:
                gc.enable()

    def _replay(self, clock: Callable[[], int], t0: float) -> tuple[KernelImage, ReplayReport]:
        try:
            self.quick_check()
        except sqlite3.DatabaseError as e:
            raise self._damaged(f"SQLite cannot read it: {e}") from None
        image = KernelImage(clock)
        n, last = 0, 0
        try:
            for first, last_in_frame, recs in self._frames():
                seq = first
                for rec in recs:
                    try:
                        image.apply(rec)
                    except (IntegrityError, KeyError, ValueError, TypeError) as e:
                        at = f"record {seq}" if seq else "the snapshot"
                        raise self._damaged(
                            f"{at} ({type(rec).__name__}) contradicts the state: {e}") from None
                    seq += 1 if seq else 0
                n += len(recs)
                last = last_in_frame or last
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
        """Replace the frames so far with one snapshot; returns the sequence it covers.

        ``image`` must be the state after every appended record (the kernel's live image);
        without it the journal is replayed from disk first.
        """
        self.commit()
        if image is None:
            image, _ = self.replay()
        with self._io_lock, self._buf_lock:
            self._check()
            if self._parts or self._ckpts:
                raise InvalidArgument("records were appended during compaction; compact again")
            upto, chain = self._seq, self._head
            body = b"".join(R.pack(r) for r in image.records())
            digest = hashlib.blake2b(body + chain, digest_size=DIGEST).digest()
            try:
                self.conn.execute("BEGIN")
                self.conn.execute("INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?, ?, ?)",
                                  (upto, body, chain, digest))  # fmt: skip
                self.conn.execute("DELETE FROM frames WHERE last <= ?", (upto,))
                self.conn.execute("COMMIT")
            except BaseException as e:
                self._failed = e
                raise KernelPanic(f"journal compaction failed ({e}); the kernel must stop") from e
        self.conn.executescript("PRAGMA incremental_vacuum;")  # runs to completion (sqlite3_exec)
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
        if self._failed is None and (self._parts or self._ckpts):
            self.commit()
        self.conn.close()

    def abandon(self) -> None:
        """Close without committing what is buffered (what a crash does; for tests)."""
        self._parts, self._ckpts = [], []
        self.conn.close()
