"""memoryd's SQLite: the schema, opening it privately, and the row codecs.

One database (``memory.sqlite``, WAL; ``:memory:`` when the core has no
directory) holds every namespace, record, core block and core-block version.
Recall records are also indexed for full-text search in an external-content
FTS5 table (porter stemming, BM25 ranking), so deleting a recall record must
first tell FTS5 the text it indexed: :func:`delete_rows` does both.  The
functions here are the only ones that know the column order of a row.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from aios.abi.errors import InvalidArgument
from aios.kmod.memoryd.records import Namespace, Record, Retention, Tier

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
  name TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL,
  quota_items INTEGER NOT NULL, quota_bytes INTEGER NOT NULL, retention TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  id INTEGER PRIMARY KEY, ns TEXT NOT NULL, tier TEXT NOT NULL, role TEXT,
  text TEXT NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL, expires REAL,
  bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS records_ns_tier ON records (ns, tier, created);
CREATE VIRTUAL TABLE IF NOT EXISTS recall_fts USING fts5(text, content='', tokenize='porter');
CREATE TABLE IF NOT EXISTS core_blocks (
  ns TEXT NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL, lim INTEGER NOT NULL,
  version INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (ns, label));
CREATE TABLE IF NOT EXISTS core_history (
  ns TEXT NOT NULL, label TEXT NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL,
  updated REAL NOT NULL, PRIMARY KEY (ns, label, version));
"""

RECORD_COLS = "id, ns, tier, text, meta, created, expires, role"  # what record_from_row reads


def open_db(directory: Path | None) -> sqlite3.Connection:
    """The database under ``directory`` (0700, files 0600), or in memory for None."""
    if directory is not None:
        from aios.lib.paths import private_dir, private_file

        private_dir(directory)  # memory is private: 0700, files 0600 (sidecars too)
        db_path = private_file(directory / "memory.sqlite")
        db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        private_file(db_path)
        db.execute("PRAGMA synchronous=NORMAL")
    else:
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.executescript(SCHEMA)
    return db


def record_from_row(row: tuple[Any, ...]) -> Record:
    rid, ns, tier, text, meta, created, expires, role = row
    return Record(int(rid), ns, Tier(tier), text, json.loads(meta), created, expires, role)


def retention_json(ret: dict[Tier, Retention]) -> str:
    return json.dumps({t.value: [r.ttl_s, r.max_items] for t, r in ret.items()})


def namespace_from_row(row: tuple[Any, ...]) -> Namespace:
    name, owner, created, qi, qb, ret = row
    retention = {Tier(t): Retention(v[0], v[1]) for t, v in json.loads(ret).items()}
    return Namespace(name, owner, created, qi, qb, retention)


def fts_query(text: str) -> str:
    """An FTS5 query matching any of the words of ``text`` (at most 32)."""
    words = re.findall(r"\w+", text.lower())
    if not words:
        raise InvalidArgument("text query has no words")
    return " OR ".join(f'"{w}"' for w in words[:32])


def fts_delete(db: sqlite3.Connection, rid: int) -> None:
    row = db.execute("SELECT text FROM records WHERE id = ?", (rid,)).fetchone()
    if row is not None:
        db.execute("INSERT INTO recall_fts (recall_fts, rowid, text) VALUES ('delete', ?, ?)",
                   (rid, row[0]))


def delete_rows(db: sqlite3.Connection, name: str, tier: Tier, ids: list[int]) -> None:
    """Delete records of one namespace and tier (and their full-text entries)."""
    if tier is Tier.RECALL:
        for rid in ids:
            fts_delete(db, rid)
    db.executemany("DELETE FROM records WHERE id = ? AND ns = ?", [(i, name) for i in ids])
