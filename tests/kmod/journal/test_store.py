"""The journal store: acknowledgement, group commit, files, integrity, retention, compaction."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument, KernelPanic
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage
from aios.kmod.journal.salvage import salvage
from aios.kmod.journal.store import Journal

from .workload import Workload, fingerprint


def _spawn(aid: int) -> list[R.Record]:
    return [R.AgentSpawned(aid, 0, f"a{aid}", "m:f", "inproc", {}, {"k": [1]}, "", 0),
            R.ObjectCreated(aid, R.OBJ_ENDPOINT, aid), R.CapInstalled(aid, aid, 1, aid, 7, 0, 0)]


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "journal.db"


def _workload_journal(path: Path, steps: int = 300, seed: int = 3) -> tuple[Journal, Workload]:
    """A journal of ``steps`` workload operations, committed (one frame) every four."""
    j = Journal(path, batch_max=100_000)
    w = Workload(KernelImage(), seed)
    j.append_many(w.bootstrap().records)
    for i in range(steps):
        op = w.step()
        if op.checkpoint is not None:
            j.checkpoint(*op.checkpoint)
        else:
            j.append_many(op.records)
        if i % 4 == 3:
            j.commit()
    j.commit()
    return j, w


def _frame_of(path: Path, seq: int) -> tuple[int, int]:
    c = sqlite3.connect(path)
    row = c.execute("SELECT first, last FROM frames WHERE first <= ? AND last >= ?", (seq, seq)).fetchone()
    c.close()
    return int(row[0]), int(row[1])


def test_nothing_is_acknowledged_before_its_commit(jpath: Path) -> None:
    j = Journal(jpath)
    seq = j.append_many(_spawn(1))
    put = j.append(R.MailboxPut(1, 1, 1, 0, b"durable"))
    assert (seq, put) == (3, 4) and j.acknowledged == 0 and j.pending == 4
    j.abandon()  # a crash: the buffer is gone, and nobody was told
    j = Journal(jpath)
    image, rep = j.replay()
    assert rep.last_seq == 0 and image.agents == {}
    j.append_many(_spawn(1))
    put = j.append(R.MailboxPut(1, 1, 1, 0, b"durable"))
    assert j.commit() == put == j.acknowledged
    j.abandon()
    image, rep = Journal(jpath).replay()
    assert rep.last_seq == put and image.mailboxes[1][1].payload == b"durable"


def test_group_commit_writes_many_operations_in_one_transaction(jpath: Path) -> None:
    j = Journal(jpath, batch_max=1000)
    before = j.conn.total_changes
    for aid in range(1, 301):
        j.append_many(_spawn(aid))
    assert j.conn.total_changes == before  # appends do no I/O
    j.commit()
    assert j.conn.total_changes - before == 1 and j.acknowledged == 900  # one row, one fsync
    assert j.conn.execute("SELECT first, last FROM frames").fetchall() == [(1, 900)]


def test_a_full_batch_commits_by_itself_without_splitting_an_operation(jpath: Path) -> None:
    j = Journal(jpath, batch_max=10)
    for aid in range(1, 5):
        j.append_many(_spawn(aid))  # 3 records each: the 4th op fills the batch
    assert j.acknowledged == 12 and j.pending == 0


def test_files_are_private(jpath: Path, tmp_path: Path) -> None:
    jpath.parent.mkdir(mode=0o755)
    os.chmod(jpath.parent, 0o755)
    old = os.umask(0)
    try:
        j = Journal(jpath)
        j.append_many(_spawn(1))
        j.commit()
        assert stat.S_IMODE(os.stat(jpath.parent).st_mode) == 0o700
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(f"{jpath}{suffix}").st_mode) == 0o600, suffix
        j.close()
    finally:
        os.umask(old)


def _tamper(path: Path, sql: str, *args: object) -> None:
    c = sqlite3.connect(path)
    c.execute(sql, args)
    c.commit()
    c.close()


def _expect_damage(path: Path, what: str) -> IntegrityError:
    with pytest.raises(IntegrityError) as ei:
        j = Journal(path)
        try:
            j.replay()
        finally:
            j.conn.close()
    msg = str(ei.value)
    assert str(path) in msg and "python -m aios.kmod.journal salvage" in msg
    assert what in msg, msg
    return ei.value


def test_a_changed_record_breaks_the_chain(jpath: Path) -> None:
    j, _w = _workload_journal(jpath)
    j.close()
    first, last = _frame_of(jpath, 40)
    _tamper(jpath, "UPDATE frames SET body = ? WHERE first = ?", R.pack(R.CapRevoked(1)), first)
    _expect_damage(jpath, f"records {first}-{last} (one commit) do not continue the hash chain")


def test_a_missing_record_is_named(jpath: Path) -> None:
    j, _w = _workload_journal(jpath)
    j.close()
    first, last = _frame_of(jpath, 17)
    _tamper(jpath, "DELETE FROM frames WHERE first = ?", first)
    _expect_damage(jpath, f"records {first}-{last} are missing")


def test_a_record_from_another_journal_does_not_fit(jpath: Path, tmp_path: Path) -> None:
    j, _w = _workload_journal(jpath, steps=50)
    j.close()
    other = tmp_path / "other" / "journal.db"
    j2, _w2 = _workload_journal(other, steps=50)
    j2.close()
    c = sqlite3.connect(jpath)
    c.execute("ATTACH ? AS o", (str(other),))
    c.execute("DELETE FROM frames WHERE first = 1")
    c.execute("INSERT INTO frames SELECT * FROM o.frames WHERE first = 1")
    c.commit()
    c.close()
    _expect_damage(jpath, "records 1-")


def test_a_corrupt_page_fails_loudly(jpath: Path) -> None:
    j, _w = _workload_journal(jpath, steps=600)
    j.close()
    data = bytearray(jpath.read_bytes())
    assert len(data) > 8 * 4096
    data[5 * 4096 : 5 * 4096 + 300] = os.urandom(300)
    jpath.write_bytes(bytes(data))
    _expect_damage(jpath, "")


def test_not_a_journal(tmp_path: Path) -> None:
    p = tmp_path / "j" / "x.db"
    p.parent.mkdir()
    p.write_bytes(os.urandom(8192))
    _expect_damage(p, "SQLite cannot")
    q = tmp_path / "j" / "other.db"
    c = sqlite3.connect(q)
    c.execute("CREATE TABLE t(x)")
    c.commit()
    c.close()
    _expect_damage(q, "something else")


def test_checkpoints_keep_the_last_n_from_the_first(jpath: Path) -> None:
    j = Journal(jpath, keep_checkpoints=3)
    j.append_many(_spawn(7))
    for i in range(1, 6):
        assert j.checkpoint(7, {"step": i, "blob": bytes([i])}) == i
    j.commit()
    assert [c.n for c in j.checkpoints(7)] == [3, 4, 5]
    assert j.latest_checkpoint(7).state == {"step": 5, "blob": b"\x05"}  # type: ignore[union-attr]
    image, _ = j.replay()
    assert image.checkpoints == {7: 5}
    j.forget_checkpoints(7)
    j.commit()
    assert j.checkpoints(7) == [] and j.replay()[0].checkpoints == {}


def test_bad_checkpoint_input_changes_nothing(jpath: Path) -> None:
    j = Journal(jpath)
    with pytest.raises(InvalidArgument):
        j.checkpoint(1, {"f": object()})
    with pytest.raises(InvalidArgument):
        j.checkpoint(1, b"x" * (17 << 20))
    with pytest.raises(InvalidArgument):
        j.checkpoint(-1, {})
    assert j.pending == 0


def test_damaged_or_missing_checkpoints_are_detected(jpath: Path) -> None:
    j = Journal(jpath)
    j.append_many(_spawn(7))
    j.checkpoint(7, {"v": 1})
    j.commit()
    j.close()
    _tamper(jpath, "UPDATE checkpoints SET state = ? WHERE aid = 7", b"\x81\xa1v\x02")
    _expect_damage(jpath, "checkpoint 1 of agent 7 does not match its digest")
    _tamper(jpath, "DELETE FROM checkpoints WHERE aid = 7")
    _expect_damage(jpath, "checkpoint 1 is journaled but not stored")


def test_compaction_keeps_the_state_and_the_chain(jpath: Path) -> None:
    j, w = _workload_journal(jpath, steps=400)
    image, rep = j.replay()
    before = fingerprint(image, w.now)
    size = j.size_bytes()
    upto = j.compact(image)
    assert upto == rep.last_seq and j.conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0
    assert j.size_bytes() < size
    assert j.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # pages given back
    assert fingerprint(j.replay()[0], w.now) == before
    for _ in range(50):  # journaling goes on after the snapshot
        op = w.step()
        if op.checkpoint is not None:
            j.checkpoint(*op.checkpoint)
        else:
            j.append_many(op.records)
    j.close()
    j = Journal(jpath)
    image, rep2 = j.replay()
    assert rep2.snapshot_upto == upto and rep2.last_seq > upto
    assert fingerprint(image, w.now) == fingerprint(w.img, w.now)
    j.close()
    _tamper(jpath, "UPDATE snapshot SET body = substr(body, 1, length(body) - 1) || x'00'")
    _expect_damage(jpath, "snapshot")


def test_a_failed_commit_makes_the_journal_unusable(jpath: Path) -> None:
    j = Journal(jpath)
    j.append_many(_spawn(1))
    j.conn.close()
    with pytest.raises(KernelPanic):
        j.commit()
    with pytest.raises(KernelPanic):
        j.append(R.AgentReaped(1))


def test_salvage_keeps_the_verified_prefix(jpath: Path) -> None:
    j, _w = _workload_journal(jpath, steps=300)
    j.close()
    first, last = _frame_of(jpath, 120)
    _tamper(jpath, "UPDATE frames SET chain = zeroblob(16) WHERE first = ?", first)
    rep = salvage(jpath)
    assert rep.kept_records == first - 1 and f"records {first}-{last}" in rep.stopped_at
    assert Path(rep.damaged_copy).exists()
    image, report = Journal(jpath).replay()
    assert report.snapshot_upto == 0 and image.summary() == rep.summary


def test_the_recovery_command_works(jpath: Path) -> None:
    j, _w = _workload_journal(jpath, steps=100)
    j.close()
    cmd = [sys.executable, "-m", "aios.kmod.journal"]
    ok = subprocess.run([*cmd, "verify", str(jpath)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and json.loads(ok.stdout)["agents"] >= 1
    first, _last = _frame_of(jpath, 30)
    _tamper(jpath, "DELETE FROM frames WHERE first = ?", first)
    bad = subprocess.run([*cmd, "verify", str(jpath)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and f"records {first}-" in bad.stderr and "missing" in bad.stderr
    fix = subprocess.run([*cmd, "salvage", str(jpath)], capture_output=True, text=True, check=False)
    assert fix.returncode == 0 and json.loads(fix.stdout)["kept_records"] == first - 1
    again = subprocess.run([*cmd, "verify", str(jpath)], capture_output=True, text=True, check=False)
    assert again.returncode == 0
