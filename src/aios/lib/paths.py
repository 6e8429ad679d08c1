"""Where the security state lives under ``$AIOS_HOME`` (one place for every path).

::

    $AIOS_HOME/                 0711 (agents' uids traverse to their dirs and images)
      keys/                 0700
        keystore.json       KDF parameters and a check value (no secrets)
        master.key          0600, only when no passphrase was given
        node.id             random node id (names the audit origin)
        node.key / .pub     sealed ML-DSA-65 seed / public key
        node-history.json   every node public key, with retirement times
        rotations/N.json    key-rotation statements
        agents/<id>.*       per-agent sealed seed, public key, binding
        publishers/         publisher signing keys (``aios keys create``)
        trusted/<name>.toml the image trust store (``aios keys trust``; read on every use)
      audit/audit.db        the Merkle audit log (SQLite, WAL)
      attest/eventlog.json  measured-boot event log (software PCRs)
      tokens/revoked.db     revoked bearer tokens
      memory/               memoryd's records and vector indexes
      images/<digest>/      verified agent images (0755 dirs, 0444 files: agents read them)
      agents/<id>/          each isolated agent's own directory (owned by its uid)

Every *private* directory (:data:`PRIVATE_DIRS`) is 0700 and every file in it
0600, SQLite's ``-wal`` and ``-shm`` included: :func:`private_dir` and
:func:`private_file` make them so, and :mod:`aios.lib.home` checks the
whole tree at boot.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

PRIVATE_DIRS: Final = ("keys", "audit", "attest", "tokens", "memory")
SQLITE_SIDECARS: Final = ("-wal", "-shm", "-journal")


def keys_dir(home: Path) -> Path:
    return home / "keys"


def trust_dir(home: Path) -> Path:
    """The image trust store: the CLI writes it, the kernel reads it on every verification."""
    return keys_dir(home) / "trusted"


def publishers_dir(home: Path) -> Path:
    return keys_dir(home) / "publishers"


def images_dir(home: Path) -> Path:
    return home / "images"


def audit_db_path(home: Path) -> Path:
    return home / "audit" / "audit.db"


def attest_dir(home: Path) -> Path:
    return home / "attest"


def event_log_path(home: Path) -> Path:
    return attest_dir(home) / "eventlog.json"


def memory_dir(home: Path) -> Path:
    return home / "memory"


def audit_origin(node_id: str) -> str:
    """The checkpoint origin line for this node's audit log."""
    return f"aios.local/{node_id}/audit"


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a 0700 directory."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Make ``path`` exist as a 0600 file (created so, never briefly readable), and
    bring SQLite's sidecar files beside it to 0600 (SQLite creates them with the
    database file's mode, so a 0600 database keeps them 0600 from then on)."""
    private_dir(path.parent) if not path.parent.exists() else None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in SQLITE_SIDECARS:
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if side.stat().st_mode & 0o777 != 0o600:
                side.chmod(0o600)
    return path
