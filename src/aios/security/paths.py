"""Where the security state lives under ``$AIOS_HOME`` (one place for every path).

::

    $AIOS_HOME/
      keys/                 0700
        keystore.json       KDF parameters and a check value (no secrets)
        master.key          0600, only when no passphrase was given
        node.id             random node id (names the audit origin)
        node.key / .pub     sealed ML-DSA-65 seed / public key
        node-history.json   every node public key, with retirement times
        rotations/N.json    key-rotation statements
        agents/<id>.*       per-agent sealed seed, public key, binding
      audit/audit.db        the Merkle audit log (SQLite, WAL)
      attest/eventlog.json  measured-boot event log (software PCRs)
"""

from __future__ import annotations

import os
from pathlib import Path


def aios_home() -> Path:
    return Path(os.environ.get("AIOS_HOME", ".aios"))


def keys_dir(home: Path) -> Path:
    return home / "keys"


def audit_db_path(home: Path) -> Path:
    return home / "audit" / "audit.db"


def attest_dir(home: Path) -> Path:
    return home / "attest"


def event_log_path(home: Path) -> Path:
    return attest_dir(home) / "eventlog.json"


def audit_origin(node_id: str) -> str:
    """The checkpoint origin line for this node's audit log."""
    return f"aios.local/{node_id}/audit"
