"""aios.lib.audit.log: group commit, proofs from the store, verify and tampering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from nodes import make_node

from aios.abi.errors import IntegrityError, InvalidArgument, StorageError
from aios.lib.audit import merkle
from aios.lib.audit.checkpoint import CheckpointPolicy, TrustedKey, parse, verify_checkpoint
from aios.lib.audit.log import STRIDE, AuditLog, LogReader, leaf_data
from aios.lib.identity import NodeIdentity

ORIGIN = "aios.local/test/audit"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(f'{{"i":{i}}}'.encode(), kind="security.test", agent=i % 5, ts_ns=1000 + i)


@pytest.fixture
def node() -> NodeIdentity:
    return make_node()


def test_group_commit_acknowledges_only_after_commit(tmp_path: Path, node: NodeIdentity) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=10)
    acks: list[int] = []
    log.on_commit.append(acks.append)
    fill(log, 7)
    assert log.acknowledged_size == 0 and log.pending == 7
    assert LogReader.open(tmp_path / "a.db").size() == 0  # nothing durable yet
    fill(log, 3, 7)  # the 10th append fills the batch: commit
    assert log.acknowledged_size == 10 and log.pending == 0 and acks == [10]
    fill(log, 2, 10)
    assert log.commit() == 12 and acks == [10, 12]
    assert LogReader.open(tmp_path / "a.db").size() == 12


def test_roots_and_proofs_for_every_size_match_memory_tree(
    tmp_path: Path, node: NodeIdentity
) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=37)
    n = 2 ** (STRIDE + 2) + 11  # crosses a stored level and a folded one
    fill(log, n)
    log.commit()
    mem = merkle.MemoryTree.from_leaves(leaf_data(i, f'{{"i":{i}}}'.encode()) for i in range(n))
    for size in range(0, n + 1):
        assert log.root(size) == mem.root(size)
    for size in (1, 16, 17, 63, n):
        for i in range(size):
            assert log.inclusion_proof(i, size) == merkle.inclusion_proof(mem, i, size)
        for m in range(1, size + 1):
            assert log.consistency_proof(m, size) == merkle.consistency_proof(mem, m, size)
    with pytest.raises(InvalidArgument):
        log.root(n + 1)


def test_reopen_resumes_the_tree(tmp_path: Path, node: NodeIdentity) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=1000)
    fill(log, 45)
    log.close()
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=1000)
    assert log.acknowledged_size == 45
    fill(log, 30, 45)
    log.commit()
    mem = merkle.MemoryTree.from_leaves(leaf_data(i, f'{{"i":{i}}}'.encode()) for i in range(75))
    assert log.root() == mem.root()
    assert log.entry(44).record == b'{"i":44}'
    assert LogReader.open(tmp_path / "a.db").verify([node.trusted()]).ok
    with pytest.raises(InvalidArgument):
        AuditLog(tmp_path / "a.db", "other.origin/log", node)


def test_checkpoints_every_n_or_t_and_verify(tmp_path: Path, node: NodeIdentity) -> None:
    clock = FakeClock()
    log = AuditLog(
        tmp_path / "a.db",
        ORIGIN,
        node,
        CheckpointPolicy(every_n=20, every_ms=50),
        batch_max=5,
        clock=clock,
    )
    fill(log, 19)  # 3 batches of 5 committed (+4 pending): no checkpoint yet
    reader = LogReader.open(tmp_path / "a.db")
    assert reader.checkpoints() == []
    fill(log, 1, 19)  # size 20: every_n reached
    assert [s for s, _ in reader.checkpoints()] == [20]
    fill(log, 2, 20)
    log.commit()
    assert [s for s, _ in reader.checkpoints()] == [20]
    clock.t += 50_000_000  # 50 ms later the next commit signs
    fill(log, 1, 22)
    log.commit()
    assert [s for s, _ in reader.checkpoints()] == [20, 23]
    clock.t += 100_000_000
    assert log.commit() == 23 and len(reader.checkpoints()) == 2  # unchanged tree: nothing to sign
    text = reader.latest_checkpoint()
    assert text is not None
    cp = verify_checkpoint(text, ORIGIN, [node.trusted()])
    assert cp.size == 23 and cp.root_hash == log.root(23)
    report = reader.verify([node.trusted()])
    assert report.ok and report.size == 23 and report.checkpoints == 2
    assert not reader.verify([make_node().trusted()]).ok  # wrong key


def _committed_log(tmp_path: Path, node: NodeIdentity, n: int = 100) -> Path:
    path = tmp_path / "a.db"
    log = AuditLog(
        path, ORIGIN, node, CheckpointPolicy(every_n=1000, every_ms=10**9), batch_max=1000
    )
    fill(log, n)
    log.checkpoint()
    log.close()
    return path


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def _rewrite_consistently(path: Path) -> None:
    """What a thorough attacker does: recompute every stored hash from the data."""
    db = _raw(path)
    rows = db.execute("SELECT idx, data FROM leaves ORDER BY idx").fetchall()
    db.execute("DELETE FROM nodes")
    edge = merkle.CompactRange()
    for idx, data in rows:
        h = merkle.leaf_hash(data)
        db.execute("UPDATE leaves SET hash = ? WHERE idx = ?", (h, idx))
        for level, nidx, nh in edge.append(h):
            if level % STRIDE == 0:
                db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, nidx, nh))
    db.close()


def _breaks_last_checkpoint(path: Path, node: NodeIdentity) -> bool:
    reader = LogReader.open(path)
    text = reader.latest_checkpoint()
    assert text is not None
    cp = verify_checkpoint(text, ORIGIN, [node.trusted()])
    size = reader.size()
    if size < cp.size:
        return True
    proof = reader.consistency_proof(cp.size, size)
    return not merkle.verify_consistency(cp.size, size, proof, cp.root_hash, reader.root(size))


def test_tamper_edit(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    db = _raw(path)
    db.execute("UPDATE leaves SET data = ? WHERE idx = 42", (leaf_data(42, b'{"i":"forged"}'),))
    db.close()
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 42
    # a client holding the checkpoint rejects the entry's inclusion proof
    reader = LogReader.open(path)
    cp = parse(reader.latest_checkpoint() or "").checkpoint
    leaf = merkle.leaf_hash(reader.entry(42).data)
    assert not merkle.verify_inclusion(
        leaf, 42, cp.size, reader.inclusion_proof(42, cp.size), cp.root_hash
    )
    _rewrite_consistently(path)
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and "checkpoint" in report.reason
    assert _breaks_last_checkpoint(path, node)


def test_tamper_delete(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    db = _raw(path)
    db.execute("DELETE FROM leaves WHERE idx = 17")
    db.close()
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 17
    db = _raw(path)  # close the gap by renumbering, then rehash: still caught
    db.execute("UPDATE leaves SET idx = idx - 1 WHERE idx > 17")
    db.close()
    _rewrite_consistently(path)
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 17
    assert _breaks_last_checkpoint(path, node)


def test_tamper_reorder(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    db = _raw(path)
    a = db.execute("SELECT ts_ns, agent, kind, data, hash FROM leaves WHERE idx = 30").fetchone()
    b = db.execute("SELECT ts_ns, agent, kind, data, hash FROM leaves WHERE idx = 31").fetchone()
    db.execute("UPDATE leaves SET ts_ns=?, agent=?, kind=?, data=?, hash=? WHERE idx = 30", b)
    db.execute("UPDATE leaves SET ts_ns=?, agent=?, kind=?, data=?, hash=? WHERE idx = 31", a)
    db.close()
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 30
    _rewrite_consistently(path)
    assert _breaks_last_checkpoint(path, node)


def test_tamper_insert_old_entry(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    db = _raw(path)
    old = db.execute("SELECT ts_ns, agent, kind, data, hash FROM leaves WHERE idx = 5").fetchone()
    db.execute("UPDATE leaves SET idx = -(idx + 1) WHERE idx >= 60")  # make room at 60
    db.execute("UPDATE leaves SET idx = -idx WHERE idx < 0")
    db.execute("INSERT INTO leaves VALUES (60, ?, ?, ?, ?, ?)", old)
    db.close()
    report = LogReader.open(path).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 60
    _rewrite_consistently(path)
    assert _breaks_last_checkpoint(path, node)
    # replaying the old entry at the end is caught too
    path2 = _committed_log(tmp_path / "b", node)
    db = _raw(path2)
    db.execute("INSERT INTO leaves VALUES (100, ?, ?, ?, ?, ?)", old)
    db.close()
    report = LogReader.open(path2).verify([node.trusted()])
    assert not report.ok and report.first_bad_entry == 100


def test_tamper_checkpoint_table(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    db = _raw(path)
    text = db.execute("SELECT text FROM checkpoints").fetchone()[0]
    db.execute("UPDATE checkpoints SET text = ?", (text.replace("\n100\n", "\n99\n"),))
    db.close()
    assert not LogReader.open(path).verify([node.trusted()]).ok


def test_untampered_log_verifies(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    report = LogReader.open(path).verify([node.trusted()])
    assert report.ok and report.size == 100 and report.checkpoints == 1
    assert not _breaks_last_checkpoint(path, node)


def test_bad_appends_change_nothing(tmp_path: Path, node: NodeIdentity) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node)
    with pytest.raises(InvalidArgument):
        log.append("text", kind="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        log.append(b"x", kind="")
    with pytest.raises(InvalidArgument):
        log.append(b"x" * (1 << 20 + 1), kind="x")
    assert log.pending == 0 and log.commit() == 0


def test_filters(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node, n=50)
    reader = LogReader.open(path)
    assert [e.index for e in reader.entries(agent=3, limit=1000)] == list(range(3, 50, 5))
    assert len(list(reader.entries(kind="security.*", limit=1000))) == 50
    assert list(reader.entries(kind="cap.*")) == []
    assert [e.index for e in reader.entries(since_ns=1040, until_ns=1043)] == [40, 41, 42]


def test_checkpoint_verifier_rejections(tmp_path: Path, node: NodeIdentity) -> None:
    path = _committed_log(tmp_path, node)
    text = LogReader.open(path).latest_checkpoint() or ""
    cp = verify_checkpoint(text, ORIGIN, [node.trusted()])
    with pytest.raises(IntegrityError):
        verify_checkpoint(text, ORIGIN, [make_node().trusted()])
    with pytest.raises(IntegrityError):  # same key under another name
        verify_checkpoint(text, ORIGIN, [TrustedKey("someone-else", node.public_key)])
    with pytest.raises(IntegrityError):
        verify_checkpoint(text, "aios.local/other/audit", [node.trusted()])
    bigger = type(cp)(cp.origin, cp.size + 1, cp.root_hash)
    with pytest.raises(IntegrityError):
        verify_checkpoint(text, ORIGIN, [node.trusted()], previous=bigger)
    forked = type(cp)(cp.origin, cp.size, bytes(32))
    with pytest.raises(IntegrityError):
        verify_checkpoint(text, ORIGIN, [node.trusted()], previous=forked)
    assert verify_checkpoint(text, ORIGIN, [node.trusted()], previous=cp) == cp


class _FlakyConn:
    """Fails the first INSERT (a disk error mid-commit)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real, self.failed = real, False

    def execute(self, sql: str, *args: object) -> object:
        if not self.failed and sql.startswith("INSERT"):
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)  # type: ignore[arg-type]

    def close(self) -> None:
        self.real.close()


def test_failed_commit_keeps_the_batch_for_retry(tmp_path: Path, node: NodeIdentity) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=100)
    fill(log, 5)
    log._conn = _FlakyConn(log._conn)  # type: ignore[assignment]
    with pytest.raises(StorageError, match="disk I/O error"):
        log.commit()
    assert log.acknowledged_size == 0 and log.pending == 5
    fill(log, 2, 5)
    assert log.commit() == 7
    assert [log.entry(i).record for i in (0, 6)] == [b'{"i":0}', b'{"i":6}']
    log.checkpoint()
    assert LogReader.open(tmp_path / "a.db").verify([node.trusted()]).ok


def test_autocommit_off_leaves_commits_to_the_flusher(tmp_path: Path, node: NodeIdentity) -> None:
    log = AuditLog(tmp_path / "a.db", ORIGIN, node, batch_max=2, autocommit=False)
    fill(log, 5)
    assert log.acknowledged_size == 0 and log.pending == 5
    assert log.flush() == 5
    with pytest.raises(InvalidArgument):
        log.append(b"x", kind="k", agent="seven")  # type: ignore[arg-type]
    assert log.pending == 0


def test_appends_and_a_flusher_thread(tmp_path: Path, node: NodeIdentity) -> None:
    import threading

    log = AuditLog(tmp_path / "a.db", ORIGIN, node, CheckpointPolicy(every_n=500), batch_max=64)
    done = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not done.is_set():
                log.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=flusher)
    t.start()
    fill(log, 3000)
    done.set()
    t.join()
    assert not errors
    assert log.commit() == 3000
    mem = merkle.MemoryTree.from_leaves(leaf_data(i, f'{{"i":{i}}}'.encode()) for i in range(3000))
    assert log.root() == mem.root()
    assert LogReader.open(tmp_path / "a.db").verify([node.trusted()]).ok
