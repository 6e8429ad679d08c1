"""The token revocation list: ``$AIOS_HOME/tokens/revoked.db`` (SQLite, WAL).

A revocation id is the hex SHA-256 prefix of one token block's signature
(see :mod:`aios.lib.tokens`).  Revoking an id rejects every token that
contains that block, which is the token itself and everything attenuated from
it.  The kernel keeps the ids in memory as a set (``RevocationList.ids()``)
and passes ``ids.__contains__`` as ``is_revoked`` to ``tokens.verify``; this
module is the durable side, written by ``aios token revoke``.  A damaged file
is a :class:`~aios.abi.errors.StorageError` that names it and what to do
(:func:`aios.lib.storage.storage_edge`), at boot and on every later use.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from aios.abi.errors import InvalidArgument
from aios.lib.storage import storage_edge

_RID = re.compile(r"^[0-9a-f]{32}$")
WHAT = "the token revocation list"
HINT = ("restore it from a backup; moving it aside starts an empty list, which un-revokes "
        "every token it named (revoke them again with `aios token revoke`)")


class RevocationList:
    def __init__(self, path: Path) -> None:
        from aios.lib.paths import private_dir, private_file

        self.path = path
        with self._edge():
            private_dir(path.parent)
            private_file(path)
            self._db = sqlite3.connect(str(path))
            self._db.execute("PRAGMA journal_mode=WAL")
            private_file(path)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS revoked ("
                " rid TEXT PRIMARY KEY, at REAL NOT NULL, reason TEXT NOT NULL DEFAULT '')"
            )
            self._db.commit()

    def _edge(self) -> Any:
        return storage_edge(self.path, WHAT, HINT)

    @classmethod
    def at_home(cls, home: Path) -> RevocationList:
        return cls(home / "tokens" / "revoked.db")

    def revoke(self, rid: str, reason: str = "", *, at: float | None = None) -> bool:
        """Record ``rid``; ``False`` if it was already revoked."""
        rid = rid.strip().lower()
        if not _RID.match(rid):
            raise InvalidArgument(f"not a revocation id: {rid!r} (32 hex digits)")
        with self._edge():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO revoked (rid, at, reason) VALUES (?, ?, ?)",
                (rid, time.time() if at is None else at, reason),
            )
            self._db.commit()
        return cur.rowcount == 1

    def __contains__(self, rid: object) -> bool:
        with self._edge():
            row = self._db.execute("SELECT 1 FROM revoked WHERE rid = ?", (rid,)).fetchone()
        return row is not None

    def is_revoked(self, rid: str) -> bool:
        return rid in self

    def ids(self) -> frozenset[str]:
        with self._edge():
            return frozenset(r[0] for r in self._db.execute("SELECT rid FROM revoked"))

    def entries(self) -> list[tuple[str, float, str]]:
        with self._edge():
            return [
                (str(r[0]), float(r[1]), str(r[2]))
                for r in self._db.execute("SELECT rid, at, reason FROM revoked ORDER BY at")
            ]

    def close(self) -> None:
        self._db.close()
