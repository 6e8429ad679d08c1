"""The boot-time check of $AIOS_HOME: refuse what others can write, tighten what they can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aios.abi.errors import PermissionDenied
from aios.lib.home import check_home
from aios.lib.paths import private_dir, private_file


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_private_helpers_create_0700_and_0600(tmp_path: Path) -> None:
    d = private_dir(tmp_path / "a" / "b")
    f = private_file(d / "x.db")
    (d / "x.db-wal").write_bytes(b"")
    os.chmod(d / "x.db-wal", 0o644)
    private_file(f)  # sidecars follow
    assert (mode(d), mode(f), mode(d / "x.db-wal")) == (0o700, 0o600, 0o600)


def test_check_home_refuses_writable_and_fixes_readable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    audit = home / "audit"
    audit.mkdir(mode=0o755)
    (audit / "audit.db").write_bytes(b"x")
    os.chmod(audit / "audit.db", 0o644)
    (home / "images").mkdir(mode=0o755)  # public by design: left alone
    fixed = check_home(home)
    assert len(fixed) == 2 and mode(audit) == 0o700 and mode(audit / "audit.db") == 0o600
    assert mode(home / "images") == 0o755 and check_home(home) == []
    for bad in (0o775, 0o757):
        os.chmod(home, bad)
        with pytest.raises(PermissionDenied, match=f"chmod go-w {home}"):
            check_home(home)
    os.chmod(home, 0o711)
    (audit / "link").symlink_to("/etc/passwd")
    with pytest.raises(PermissionDenied, match="symlink"):
        check_home(home)
    assert mode(Path("/etc/passwd")) == 0o644  # not followed
