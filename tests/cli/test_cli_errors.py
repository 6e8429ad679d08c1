"""The CLI explains failures in one line; tracebacks only with ``--debug``.

Finding 6 of the robustness review: ``aios audit verify`` / ``aios audit log``
printed raw ``sqlite3`` tracebacks on a damaged log, and ``aios spawn`` with a
100 KB argument printed ``OSError: File name too long``.  Finding 5: ``aios up``
started on a damaged audit log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aioscli import aios

from aios.host import start_kernel
from aios.kernel.clock import MonotonicClock
from aios.lib.paths import audit_db_path


def booted_home(tmp_path: Path) -> Path:
    home = tmp_path / "h"
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 22, home=home, behavior=False)
    k.close()
    return home


def test_spawn_with_a_huge_argument_is_a_clear_error(tmp_path: Path) -> None:
    r = aios(tmp_path / "h", "spawn", "a" * 100_000, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("error: [EINVAL] the image argument is 100000 characters long")
    assert "Traceback" not in r.stderr and len(r.stderr) < 400


def test_a_damaged_audit_log_gives_one_line_and_debug_gives_the_traceback(tmp_path: Path) -> None:
    home = booted_home(tmp_path)
    path = audit_db_path(home)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    raw = bytearray(path.read_bytes())
    raw[100:4096] = b"\xa5" * (4096 - 100)  # the first page's b-tree header and cells
    path.write_bytes(bytes(raw))
    for cmd in (["audit", "verify"], ["audit", "log"]):
        r = aios(home, *cmd, check=False)
        assert r.returncode != 0, r
        assert "Traceback" not in r.stderr, r.stderr
        assert str(path) in r.stderr and "aios audit verify --full" in r.stderr, r.stderr
    r = aios(home, "audit", "verify", "--debug", check=False)
    assert "Traceback" in r.stderr and "sqlite3" in r.stderr


def test_up_refuses_a_damaged_audit_log_and_says_what_to_do(tmp_path: Path) -> None:
    home = booted_home(tmp_path)
    db = sqlite3.connect(audit_db_path(home))
    idx, data = db.execute("SELECT idx, data FROM leaves ORDER BY idx DESC LIMIT 1").fetchone()
    db.execute("UPDATE leaves SET data = ? WHERE idx = ?", (bytes(data[:-2]) + b"!}", idx))
    db.commit()
    db.close()
    r = aios(home, "up", "-d", check=False)
    assert r.returncode == 1, r
    assert "kernel failed to start" in r.stderr
    assert "[EBADMSG]" in r.stderr and str(audit_db_path(home)) in r.stderr
    assert "--accept-broken-log" in r.stderr and "Traceback" not in r.stderr
    assert not (home / "kernel.pid").exists()
