"""The boot-time check of ``$AIOS_HOME``'s permissions.

The home holds the node's sealed keys, the audit log, the token revocation
list, the measured-boot log and the agents' memory.  Their protection is the
host's file permissions, so the kernel checks them before it opens any of
them (the security boot step calls :func:`check_home` first):

* a home that another user could write (group- or world-writable, or owned
  by someone else) is refused: whoever can write it can swap the keys, the
  trust store or the audit log underneath the kernel.  The error names the
  path and the command that fixes it;
* inside each private directory (:data:`aios.lib.paths.PRIVATE_DIRS`)
  every directory must be 0700 and every file 0600.  Anything more open is
  fixed on the spot and reported: a file readable by others is a leak, not
  a reason to stay down.

Symlinks inside private directories are refused rather than followed: the
check would otherwise change the mode of whatever they point at.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from aios.abi.errors import PermissionDenied
from aios.lib.paths import PRIVATE_DIRS

log = logging.getLogger("aios.security")


def check_home(home: Path) -> list[str]:
    """Refuse an unsafe ``home``; tighten private files and directories.  Returns what was fixed."""
    st = os.lstat(home)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionDenied(f"refusing to start: {home} is not a directory")
    if st.st_mode & 0o022:
        who = "group- and world" if st.st_mode & 0o022 == 0o022 else (
            "group" if st.st_mode & 0o020 else "world")
        raise PermissionDenied(
            f"refusing to start: {home} is {who}-writable (mode {st.st_mode & 0o7777:04o}), so another "
            f"user could replace its keys, trust store or audit log; fix it with: chmod go-w {home}"
        )
    if st.st_uid != os.geteuid():
        raise PermissionDenied(
            f"refusing to start: {home} belongs to uid {st.st_uid}, not to the kernel's uid "
            f"{os.geteuid()}; fix it with: chown {os.geteuid()} {home}"
        )
    fixed: list[str] = []
    for name in PRIVATE_DIRS:
        top = home / name
        if not os.path.lexists(top):
            continue
        for root, dirs, files in os.walk(top, followlinks=False):
            for d in [root, *(os.path.join(root, x) for x in dirs)]:
                fixed += _tighten(Path(d), 0o700)
            for f in files:
                fixed += _tighten(Path(root) / f, 0o600)
    for f in fixed:
        log.warning("aios: %s was readable or writable by others; fixed", f)
    return fixed


def _tighten(p: Path, mode: int) -> list[str]:
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        raise PermissionDenied(f"refusing to start: {p} is a symlink inside a private directory")
    if st.st_uid != os.geteuid():
        raise PermissionDenied(
            f"refusing to start: {p} belongs to uid {st.st_uid}; fix it with: chown -R {os.geteuid()} {p}")
    if st.st_mode & 0o077:
        os.chmod(p, 0o700 if stat.S_ISDIR(st.st_mode) else mode)
        return [f"{p} ({st.st_mode & 0o777:03o})"]
    return []
