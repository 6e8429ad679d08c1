"""The audit log on disk: an RFC 6962 Merkle log in SQLite with group commit.

Design
------
**Tables.**  ``leaves(idx, ts_ns, agent, kind, data, hash)`` holds one row per
entry; ``data`` is the exact leaf input, ``hash`` its RFC 6962 leaf hash.
The leaf input is ``idx (8 bytes, big-endian) || record`` so that an entry
names its own position: a copy of an old entry re-inserted anywhere is
caught by the first cheap check.  ``nodes(level, idx, hash)`` holds the
perfect-subtree hashes at every ``STRIDE``-th level (4, 8, 12, ...).  Any
other perfect subtree is folded from at most ``2**(STRIDE-1)`` = 8 rows of a
stored level below it, read in one range query, so a root or proof for *any*
tree size costs O(log n) indexed reads, while the node table stays ~n/15
rows and appends stay cheap.  ``checkpoints(size, ts_ns, text)`` holds the
signed checkpoints; ``meta`` the origin and format version.  ``agent``,
``kind`` and ``ts_ns`` are copies of record fields, for filtering only;
``verify`` trusts nothing but ``data`` and the signatures.

**Group commit.**  :meth:`AuditLog.append` assigns the next index, hashes the
leaf, advances the in-memory right edge of the tree (a
:class:`~aios.lib.audit.merkle.CompactRange`) and buffers the rows; it
does no I/O.  :meth:`AuditLog.commit` writes the buffered rows, plus a
checkpoint when :class:`~aios.lib.audit.checkpoint.CheckpointPolicy`
says one is due, in **one** transaction with ``synchronous=FULL``.  Only
when that returns is an entry *acknowledged*: ``acknowledged_size`` moves
and the caller may tell anyone the entry exists.  ``append`` commits by
itself when ``batch_max`` rows are buffered; the kernel calls ``flush`` on a
timer and on shutdown.

**Crash semantics.**  A SIGKILL or power cut loses at most the unacknowledged
buffer.  SQLite's WAL makes each batch all-or-nothing, so on reopen the log
is exactly the acknowledged prefix of some batch boundary, and the right
edge is rebuilt from the stored perfect subtrees (``CompactRange.load``).

**Boot check.**  :func:`check_tail` is what a kernel runs before it appends
to an existing log: the latest checkpoint's signature and origin, then the
last :data:`BOOT_WINDOW` entries (and at least every entry after that
checkpoint) recomputed from their data (index, leaf hash, stored perfect
nodes) on top of the stored subtrees before them, up to the signed root.  It
costs O(window + log n), well under a second, and refuses to extend a log
whose recent part or signed edge is damaged; a changed byte in an older entry
is found by the full :func:`verify_log` (``aios audit verify --full``), which
an operator runs periodically.  Errors of the database itself become
:class:`~aios.abi.errors.StorageError` naming the file.

**Verification.**  :meth:`AuditLog.verify` streams every row, checks that each
row's index is the next one and that its data names that index, recomputes
every leaf hash and every perfect node, compares them with what is stored,
recomputes the root at every checkpoint size and checks each checkpoint's
signature, origin and monotonic size.  It reports the first bad entry.

The object is safe to share between the kernel thread and a flusher thread:
one lock guards the buffer and the connection.
"""

from __future__ import annotations

import functools
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.audit import merkle
from aios.lib.audit.checkpoint import (
    Checkpoint,
    CheckpointPolicy,
    NoteSigner,
    TrustedKey,
    parse,
    sign_checkpoint,
    verify_checkpoint,
)
from aios.lib.storage import storage_edge, storage_error

STRIDE: Final = 4
FORMAT_VERSION: Final = "1"
MAX_RECORD: Final = 1 << 20
BOOT_WINDOW: Final = 1 << 16  # entries the boot check recomputes from their data (at least)
RECOVERY: Final = (
    "find the first bad entry with `aios audit verify --full`, then restore the log from a backup, "
    "or start the kernel with `aios up --accept-broken-log` (the damaged file is moved aside and "
    "that decision is itself audited)"
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leaves(
  idx INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, agent INTEGER, kind TEXT NOT NULL,
  data BLOB NOT NULL, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(
  level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
  PRIMARY KEY(level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints(size INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, text TEXT NOT NULL);
"""

_pack_idx = struct.Struct(">Q").pack
T = TypeVar("T")
INSERT_CHUNK: Final = 256  # rows per INSERT statement in a commit


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {table} VALUES " + ", ".join([one] * rows)


def _insert_rows(c: sqlite3.Connection, table: str, width: int, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert ``rows`` with one statement per :data:`INSERT_CHUNK` of them.

    ``executemany`` steps SQLite once per row, and the sqlite3 module gives up
    the GIL around every step: with a busy kernel thread holding the GIL, each
    re-acquisition can wait a whole switch interval, and the commit thread
    falls behind (a convoy).  Multi-row statements step once per chunk."""
    for i in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[i : i + INSERT_CHUNK]
        c.execute(_insert_sql(table, width, len(chunk)), [v for row in chunk for v in row])


def leaf_data(index: int, record: bytes) -> bytes:
    """The leaf input stored for entry ``index``."""
    return _pack_idx(index) + record


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    ts_ns: int
    agent: int | None
    kind: str
    data: bytes

    @property
    def record(self) -> bytes:
        return self.data[8:]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    size: int
    checkpoints: int
    first_bad_entry: int | None = None
    reason: str = ""


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with FULL sync (readers may be other processes)."""
    if readonly:
        if not path.exists():
            raise InvalidArgument(f"no audit log at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        from aios.lib.paths import private_dir, private_file

        private_dir(path.parent)
        private_file(path)  # 0600 before SQLite opens it: its -wal and -shm take the same mode
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        private_file(path)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class _StoredHashes:
    """``PerfectHashes`` answered from the tables (committed rows only)."""

    CACHE_MAX: Final = 1 << 16

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # committed perfect subtrees never change (append-only), so folded
        # hashes of the upper levels are cached; a full cache is just dropped
        self._cache: dict[tuple[int, int], bytes] = {}

    def _level_range(self, level: int, lo: int, hi: int) -> list[bytes]:
        if level == 0:
            rows = self.conn.execute(
                "SELECT hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
                (level, lo, hi),
            ).fetchall()
        if len(rows) != hi - lo:
            raise IntegrityError(f"audit log is missing hashes at level {level} [{lo}, {hi})")
        return [bytes(r[0]) for r in rows]

    def perfect(self, level: int, index: int) -> bytes:
        key = (level, index)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        base = level - level % STRIDE
        span = 1 << (level - base)
        hashes = self._level_range(base, index * span, (index + 1) * span)
        while len(hashes) > 1:
            hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        if level >= STRIDE:
            if len(self._cache) >= self.CACHE_MAX:
                self._cache.clear()
            self._cache[key] = hashes[0]
        return hashes[0]


class AuditLog:
    """An append-only Merkle log with durable group commit and signed checkpoints.

    ``signer=None`` gives a log without checkpoints.  With ``autocommit``
    (the default) the append that fills a batch also commits it; a kernel
    that wants its loop thread never to wait for ``fsync`` turns it off and
    calls :meth:`commit` from a worker thread only.
    """

    def __init__(
        self,
        path: Path,
        origin: str,
        signer: NoteSigner | None = None,
        policy: CheckpointPolicy | None = None,
        batch_max: int = 1024,
        clock: Callable[[], int] = time.monotonic_ns,
        autocommit: bool = True,
    ) -> None:
        if not origin or "\n" in origin:
            raise InvalidArgument("audit log origin must be one non-empty line")
        if batch_max < 1:
            raise InvalidArgument("batch_max must be >= 1")
        self.path = Path(path)
        self.origin = origin
        self.signer = signer
        self.policy = policy or CheckpointPolicy()
        self.batch_max = batch_max
        self.clock = clock
        self.autocommit = autocommit
        # _lock guards the buffer, the right edge and the reader connection;
        # _commit_lock serialises commits, which write outside _lock so that
        # appends never wait for an fsync.  Order: _commit_lock, then _lock.
        self._lock = threading.RLock()
        self._commit_lock = threading.Lock()
        with storage_edge(self.path, "the audit log", RECOVERY):
            self._conn = connect(self.path)
            self._conn.executescript(_SCHEMA)
            self._init_meta()
            self._rconn = connect(self.path, readonly=True)
            size = int(self._conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves").fetchone()[0])
            self._edge = merkle.CompactRange.load(_StoredHashes(self._conn), size)
            last = self._conn.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0]
        self._store = _StoredHashes(self._rconn)
        self._acked: int = size
        self._leaves: list[tuple[int, int, int | None, str, bytes, bytes]] = []
        self._nodes: list[tuple[int, int, bytes]] = []
        self.policy.mark(int(last or 0), self.clock())
        self.on_commit: list[Callable[[int], None]] = []

    def _init_meta(self) -> None:
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            self._conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("origin", self.origin), ("version", FORMAT_VERSION), ("stride", str(STRIDE))],
            )
            return
        if rows.get("origin") != self.origin:
            raise InvalidArgument(f"audit log at {self.path} has origin {rows.get('origin')!r}")
        if rows.get("stride") != str(STRIDE) or rows.get("version") != FORMAT_VERSION:
            raise InvalidArgument("audit log format version is not supported")

    # -- writing ---------------------------------------------------------------

    def append(self, record: bytes, kind: str, agent: int | None = None, ts_ns: int = 0) -> int:
        """Buffer one entry and return its index.  It is durable (acknowledged)
        only once ``acknowledged_size`` exceeds that index."""
        if not isinstance(record, bytes) or len(record) > MAX_RECORD:
            raise InvalidArgument("audit record must be bytes of at most 1 MiB")
        if not isinstance(kind, str) or not kind:
            raise InvalidArgument("audit record kind must be a non-empty string")
        if (
            agent is not None and (not isinstance(agent, int) or isinstance(agent, bool))
        ) or not isinstance(ts_ns, int):
            raise InvalidArgument("audit agent must be an int or None, ts_ns an int")
        with self._lock:
            idx = self._edge.size
            data = leaf_data(idx, record)
            h = merkle.leaf_hash(data)
            self._leaves.append((idx, ts_ns, agent, kind, data, h))
            for level, nidx, nh in self._edge.append(h):
                if level % STRIDE == 0:
                    self._nodes.append((level, nidx, nh))
            full = self.autocommit and len(self._leaves) >= self.batch_max
        if full:
            self.commit()
        return idx

    def commit(self, force_checkpoint: bool = False) -> int:
        """Write the buffer in one FULL-synced transaction; return the acknowledged size."""
        with self._commit_lock:
            with self._lock:
                size = self._edge.size
                leaves, nodes = self._leaves, self._nodes
                self._leaves, self._nodes = [], []
                now = self.clock()
                sign = self.signer is not None and (
                    self.policy.due(size, now)
                    or (force_checkpoint and size > self.policy.last_size)
                )
                root = self._edge.root() if sign else b""
            cp_text = None
            if sign and self.signer is not None:
                cp_text = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer).text()
            if not leaves and cp_text is None:
                return self._acked
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    _insert_rows(c, "leaves", 6, leaves)
                    _insert_rows(c, "nodes", 3, nodes)
                    if cp_text is not None:
                        c.execute(
                            "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?)",
                            (size, time.time_ns(), cp_text),
                        )
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
            except BaseException as exc:
                with self._lock:  # keep the rows for the next attempt, in order
                    self._leaves[:0] = leaves
                    self._nodes[:0] = nodes
                if isinstance(exc, (sqlite3.Error, OSError)):
                    raise storage_error(exc, self.path, "the audit log", RECOVERY) from exc
                raise
            with self._lock:
                self._acked = size
                if cp_text is not None:
                    self.policy.mark(size, now)
            for fn in self.on_commit:
                fn(size)
            return size

    flush = commit

    def checkpoint(self) -> str | None:
        """Commit and sign a checkpoint for the current size now; return its text."""
        self.commit(force_checkpoint=True)
        return self.latest_checkpoint()

    def close(self) -> None:
        self.commit()
        with self._commit_lock, self._lock:
            self._conn.close()
            self._rconn.close()

    # -- reading ---------------------------------------------------------------

    @property
    def acknowledged_size(self) -> int:
        return self._acked

    @property
    def pending(self) -> int:
        return len(self._leaves)

    def root(self, size: int | None = None) -> bytes:
        with self._lock:
            return merkle.root(self._store, self._checked_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        with self._lock:
            return merkle.inclusion_proof(self._store, index, self._checked_size(size))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        with self._lock:
            return merkle.consistency_proof(self._store, size1, self._checked_size(size2))

    def _checked_size(self, size: int | None) -> int:
        if size is None:
            return self._acked
        if not 0 <= size <= self._acked:
            raise InvalidArgument(f"tree size {size} is outside 0..{self._acked}")
        return size

    def entry(self, index: int) -> Entry:
        with self._lock:
            return LogReader(self._rconn).entry(index)

    def latest_checkpoint(self) -> str | None:
        with self._lock:
            return LogReader(self._rconn).latest_checkpoint()


def _edged(fn: Callable[..., T]) -> Callable[..., T]:
    """A LogReader query whose database errors name the log and what to do."""

    @functools.wraps(fn)
    def wrapper(self: LogReader, *args: object, **kw: object) -> T:
        with storage_edge(self.path or "?", "the audit log", RECOVERY):
            return fn(self, *args, **kw)

    return wrapper


class LogReader:
    """Read-side queries; works on a read-only connection the CLI opens while
    the kernel keeps writing."""

    CACHE_MAX: Final = 1 << 16

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # committed perfect subtrees never change (append-only), so folded
        # hashes of the upper levels are cached; a full cache is just dropped
        self._cache: dict[tuple[int, int], bytes] = {}
        self.store = _StoredHashes(conn)
        self.path: Path | None = None  # for error messages (set by open)

    @classmethod
    def open(cls, path: Path) -> LogReader:
        with storage_edge(path, "the audit log", RECOVERY):
            reader = cls(connect(path, readonly=True))
            reader.origin()  # a file that is not a database fails here, not later
        reader.path = path
        return reader

    def check_tail(self, keys: Sequence[TrustedKey] | None = None) -> VerifyReport:
        """The fast boot check (latest checkpoint and the recent entries)."""
        with storage_edge(self.path or "?", "the audit log", RECOVERY):
            return check_tail(self.conn, self.origin(), keys)

    @_edged
    def origin(self) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
        if row is None:
            raise IntegrityError("audit log has no origin")
        return str(row[0])

    @_edged
    def size(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves").fetchone()[0])

    @_edged
    def entry(self, index: int) -> Entry:
        row = self.conn.execute(
            "SELECT idx, ts_ns, agent, kind, data FROM leaves WHERE idx = ?", (index,)
        ).fetchone()
        if row is None:
            raise InvalidArgument(f"no audit entry {index}")
        return Entry(row[0], row[1], row[2], row[3], bytes(row[4]))

    def entries(
        self,
        agent: int | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 100,
        start: int = 0,
        newest_first: bool = False,
    ) -> Iterator[Entry]:
        """Entries matching every given filter (``kind`` may end in ``*`` as a prefix match),
        in log order or, ``newest_first``, the latest ``limit`` of them latest first."""
        where: list[str] = ["idx >= ?"]
        args: list[object] = [start]
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        if kind is not None:
            if kind.endswith("*"):
                where.append("substr(kind, 1, ?) = ?")
                args += [len(kind) - 1, kind[:-1]]
            else:
                where.append("kind = ?")
                args.append(kind)
        if since_ns is not None:
            where.append("ts_ns >= ?")
            args.append(since_ns)
        if until_ns is not None:
            where.append("ts_ns < ?")
            args.append(until_ns)
        sql = f"SELECT idx, ts_ns, agent, kind, data FROM leaves WHERE {' AND '.join(where)} ORDER BY idx{' DESC' if newest_first else ''} LIMIT ?"
        with storage_edge(self.path or "?", "the audit log", RECOVERY):
            rows = self.conn.execute(sql, (*args, limit)).fetchall()
        for row in rows:
            yield Entry(row[0], row[1], row[2], row[3], bytes(row[4]))

    @_edged
    def checkpoints(self) -> list[tuple[int, str]]:
        return [
            (int(s), str(t))
            for s, t in self.conn.execute("SELECT size, text FROM checkpoints ORDER BY size")
        ]

    @_edged
    def latest_checkpoint(self) -> str | None:
        row = self.conn.execute(
            "SELECT text FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    @_edged
    def root(self, size: int) -> bytes:
        return merkle.root(self.store, size)

    @_edged
    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(self.store, index, size)

    @_edged
    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return merkle.consistency_proof(self.store, size1, size2)

    def verify(self, keys: Sequence[TrustedKey] | None = None) -> VerifyReport:
        """Recompute everything; ``keys`` (if given) must sign every checkpoint."""
        with storage_edge(self.path or "?", "the audit log", RECOVERY):
            return verify_log(self.conn, self.origin(), keys)


def _bad(size: int, cps: int, index: int, reason: str) -> VerifyReport:
    return VerifyReport(False, size, cps, index, reason)


def check_tail(
    conn: sqlite3.Connection, origin: str, keys: Sequence[TrustedKey] | None,
    window: int = BOOT_WINDOW,
) -> VerifyReport:
    """The boot check (see the module docstring): the latest checkpoint's signature,
    and the last ``window`` entries (at least every entry after that checkpoint)
    recomputed from their data up to the signed root.  ``ok`` False names the first
    bad entry and the reason."""
    row = conn.execute("SELECT size, text FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    size = int(conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves").fetchone()[0])
    cp: Checkpoint | None = None
    if row is not None:
        cp_size, text = int(row[0]), str(row[1])
        try:
            cp = verify_checkpoint(text, origin, keys) if keys is not None else parse(text).checkpoint
        except IntegrityError as exc:
            return _bad(size, 0, max(cp_size - 1, 0), f"latest checkpoint (size {cp_size}): {exc.message}")
        if cp.origin != origin or cp.size != cp_size:
            return _bad(size, 0, max(cp_size - 1, 0), "latest checkpoint row does not match its text")
        if size < cp_size:
            return _bad(size, 1, size, f"the log has {size} entries but a checkpoint signs {cp_size}")
    checkpoints = 0 if cp is None else 1
    start = max(0, min(cp.size if cp is not None else size, size - window))
    store = _StoredHashes(conn)
    try:
        edge = merkle.CompactRange.load(store, start)
        if cp is not None and cp.size == start and merkle.root(store, start) != cp.root_hash:
            return _bad(size, 1, max(start - 1, 0), f"the stored tree at size {start} differs from the signed checkpoint")
    except IntegrityError as exc:
        return _bad(size, checkpoints, max(start - 1, 0), exc.message)
    expect = start
    for idx, data, h in conn.execute("SELECT idx, data, hash FROM leaves WHERE idx >= ? ORDER BY idx", (start,)):
        if idx != expect:
            return _bad(size, checkpoints, expect, f"entry {expect} is missing (next stored index is {idx})")
        if len(data) < 8 or struct.unpack(">Q", data[:8])[0] != idx:
            return _bad(size, checkpoints, idx, f"entry {idx} does not carry its own index (moved or replayed)")
        lh = merkle.leaf_hash(data)
        if lh != h:
            return _bad(size, checkpoints, idx, f"entry {idx}: data does not match its stored leaf hash")
        for level, nidx, nh in edge.append(lh):
            if level % STRIDE == 0:
                got = conn.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, nidx)).fetchone()
                if got is None or bytes(got[0]) != nh:
                    first = nidx << level
                    return _bad(size, checkpoints, first,
                                f"stored node ({level}, {nidx}) over entries from {first} does not match")
        expect += 1
        if cp is not None and expect == cp.size and edge.root() != cp.root_hash:
            return _bad(size, 1, expect - 1, f"root at size {expect} differs from the signed checkpoint")
    return VerifyReport(True, size, checkpoints)


def verify_log(
    conn: sqlite3.Connection, origin: str, keys: Sequence[TrustedKey] | None
) -> VerifyReport:
    """Stream the log and check every hash, node, checkpoint root and signature."""
    stored_nodes = {
        (lv, ix): bytes(h) for lv, ix, h in conn.execute("SELECT level, idx, hash FROM nodes")
    }
    cp_rows = conn.execute("SELECT size, text FROM checkpoints ORDER BY size").fetchall()
    checkpoints: list[tuple[int, Checkpoint]] = []
    previous: Checkpoint | None = None
    for size, text in cp_rows:
        try:
            if keys is None:
                cp = parse(text).checkpoint
                if cp.origin != origin:
                    raise IntegrityError("checkpoint origin differs from the log's")
            else:
                cp = verify_checkpoint(text, origin, keys, previous)
        except IntegrityError as exc:
            return _bad(
                -1,
                len(checkpoints),
                max(int(size) - 1, 0),
                f"checkpoint at size {size}: {exc.message}",
            )
        if cp.size != int(size):
            return _bad(
                -1,
                len(checkpoints),
                max(int(size) - 1, 0),
                "checkpoint row size differs from its text",
            )
        checkpoints.append((cp.size, cp))
        previous = cp
    cp_iter = iter(checkpoints)
    next_cp = next(cp_iter, None)
    edge = merkle.CompactRange()
    seen_nodes = 0
    expect = 0
    sha = merkle.leaf_hash
    for idx, data, h in conn.execute("SELECT idx, data, hash FROM leaves ORDER BY idx"):
        if idx != expect:
            return _bad(
                expect, 0, expect, f"entry {expect} is missing (next stored index is {idx})"
            )
        if len(data) < 8 or struct.unpack(">Q", data[:8])[0] != idx:
            return _bad(
                expect, 0, idx, f"entry {idx} does not carry its own index (moved or replayed)"
            )
        lh = sha(data)
        if lh != h:
            return _bad(expect, 0, idx, f"entry {idx}: data does not match its stored leaf hash")
        for level, nidx, nh in edge.append(lh):
            if level % STRIDE == 0:
                if stored_nodes.get((level, nidx)) != nh:
                    first = nidx << level
                    return _bad(
                        expect,
                        0,
                        first,
                        f"stored node ({level}, {nidx}) over entries from {first} does not match",
                    )
                seen_nodes += 1
        expect += 1
        while next_cp is not None and next_cp[0] == expect:
            if edge.root() != next_cp[1].root_hash:
                return _bad(
                    expect,
                    0,
                    expect - 1,
                    f"root at size {expect} differs from the signed checkpoint",
                )
            next_cp = next(cp_iter, None)
    if next_cp is not None:
        return _bad(
            expect,
            0,
            expect,
            f"checkpoint at size {next_cp[0]} is beyond the log's {expect} entries",
        )
    if seen_nodes != len(stored_nodes):
        return _bad(
            expect, len(checkpoints), expect, "the node table holds nodes the leaves do not produce"
        )
    return VerifyReport(True, expect, len(checkpoints))
