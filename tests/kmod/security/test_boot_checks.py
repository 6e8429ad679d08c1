"""Boot refuses damaged state, with one clear error naming the file and the way out.

Findings 5 and 6 of the robustness review: ``aios up`` started silently on an
audit log with a flipped byte, and a corrupt ``revoked.db`` or
``keystore.json`` failed boot with a raw ``sqlite3`` / ``json`` traceback.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aios.abi.errors import IntegrityError, StorageError
from aios.host import start_kernel
from aios.kernel.clock import MonotonicClock
from aios.lib.audit.log import LogReader
from aios.lib.paths import audit_db_path


def boot(home: Path, **kw: object) -> None:
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 22, home=home, behavior=False, **kw)
    k.close()


def flip_recent_entry(home: Path) -> int:
    """Change one byte of a recent entry's record (its stored hash stays): tampering."""
    db = sqlite3.connect(audit_db_path(home))
    idx, data = db.execute("SELECT idx, data FROM leaves ORDER BY idx DESC LIMIT 1 OFFSET 2").fetchone()
    data = bytearray(data)
    data[-3] ^= 0x01
    db.execute("UPDATE leaves SET data = ? WHERE idx = ?", (bytes(data), idx))
    db.commit()
    db.close()
    return int(idx)


def test_a_flipped_byte_in_the_audit_log_stops_the_boot(tmp_path: Path) -> None:
    home = tmp_path / "h"
    boot(home)
    bad = flip_recent_entry(home)
    with pytest.raises(IntegrityError) as e:
        boot(home)
    msg = e.value.message
    assert str(audit_db_path(home)) in msg and f"entry {bad}" in msg
    assert "aios audit verify --full" in msg and "--accept-broken-log" in msg
    r = LogReader.open(audit_db_path(home))
    assert r.size() > 0 and not r.check_tail().ok  # refused before anything was appended
    r.conn.close()


def test_accepting_a_broken_log_moves_it_aside_and_audits_that(tmp_path: Path) -> None:
    home = tmp_path / "h"
    boot(home)
    flip_recent_entry(home)
    boot(home, accept_broken_log=True)
    aside = [p for p in audit_db_path(home).parent.iterdir() if ".broken-" in p.name and p.suffix != ""]
    assert aside, list(audit_db_path(home).parent.iterdir())
    r = LogReader.open(audit_db_path(home))
    kinds = [e.kind for e in r.entries(limit=10)]
    assert kinds[:2] == ["security.boot", "audit.broken_log_accepted"]
    assert r.verify().ok
    r.conn.close()
    boot(home)  # the new log is sound: a plain boot works again


def test_a_log_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    home = tmp_path / "h"
    boot(home)
    path = audit_db_path(home)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(StorageError) as e:
        boot(home)
    assert str(path) in e.value.message and "aios audit verify --full" in e.value.message


def test_corrupt_keystore_and_revocation_list_name_their_file(tmp_path: Path) -> None:
    home = tmp_path / "h"
    boot(home)
    keystore = home / "keys" / "keystore.json"
    good = keystore.read_bytes()
    keystore.write_text('{"version": 1, "salt": ')  # truncated
    with pytest.raises(StorageError) as e:
        boot(home)
    assert str(keystore) in e.value.message and "backup" in e.value.message
    keystore.write_bytes(good)
    revoked = home / "tokens" / "revoked.db"
    for suffix in ("-wal", "-shm"):
        revoked.with_name(revoked.name + suffix).unlink(missing_ok=True)
    revoked.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StorageError) as e:
        boot(home)
    assert str(revoked) in e.value.message and "aios token revoke" in e.value.message
