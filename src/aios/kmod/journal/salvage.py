"""Salvage a damaged journal: keep the verified prefix, set the damaged file aside.

A journal that fails its integrity check stops the boot (``Journal.replay``
raises with the file and this command).  The operator then chooses: restore
a backup, or salvage.  Salvage reads the snapshot and then records in order
for as long as they verify (the hash chain) and fold (the image accepts
them), and stops at the first that does not; intact checkpoints are kept.
It writes a *new* journal holding that state as a snapshot, checks the new
file by replaying it, and only then moves the damaged file (with its -wal
and -shm) to ``NAME.damaged-<time>`` and the new one into place.  What was
dropped is reported, never silently: the kernel's ``kernel.recovered`` event
will list the agents that did not come back.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from aios.abi.errors import IntegrityError
from aios.kmod.journal.replay import KernelImage
from aios.kmod.journal.store import Journal, _ckpt_digest


@dataclass(frozen=True, slots=True)
class SalvageReport:
    path: str
    kept_records: int
    stopped_at: str  # why reading stopped ("" when the whole file verified)
    kept_checkpoints: int
    dropped_checkpoints: int
    damaged_copy: str
    summary: dict[str, int]


def salvage(path: Path) -> SalvageReport:
    path = Path(path)
    image = KernelImage()
    kept, reason = 0, ""
    good_ckpts: list[tuple[int, int, int, bytes, bytes]] = []
    dropped_ckpts = 0
    try:
        old = Journal(path)
    except (IntegrityError, sqlite3.DatabaseError) as e:
        old, reason = None, str(e)
    if old is not None:
        # whole commits only: find the last one that verifies and folds, then fold up to it
        good_upto, failed = -1, False  # the snapshot counts as the commit ending at 0
        try:
            for _first, last, recs in old._frames():
                for rec in recs:
                    image.apply(rec)
                kept += len(recs)
                good_upto = last
        except (IntegrityError, KeyError, ValueError, TypeError, sqlite3.DatabaseError) as e:
            reason, failed = str(e), True
        if failed:  # the failing commit may have been folded halfway: fold again, up to it
            image = KernelImage()
            try:
                for _first, last, recs in old._frames():
                    if last > good_upto:
                        break
                    for rec in recs:
                        image.apply(rec)
            except (IntegrityError, sqlite3.DatabaseError):
                pass  # the bad commit itself: already excluded
        try:
            for aid, n, ts, blob, digest in old.conn.execute(
                "SELECT aid, n, ts_ns, state, digest FROM checkpoints ORDER BY aid, n"
            ):
                if _ckpt_digest(aid, n, ts, bytes(blob)) == bytes(digest):
                    good_ckpts.append((aid, n, ts, bytes(blob), bytes(digest)))
                else:
                    dropped_ckpts += 1
        except sqlite3.DatabaseError as e:
            reason = reason or str(e)
        old.conn.close()

    # checkpoints must agree with the kept prefix: none newer than it journaled, and the latest
    # one it names must exist (else fall back to the newest older one that does)
    by_aid: dict[int, list[tuple[int, int, int, bytes, bytes]]] = {}
    for row in good_ckpts:
        by_aid.setdefault(row[0], []).append(row)
    good_ckpts = []
    for aid, rows in by_aid.items():
        limit = image.checkpoints.get(aid, 0)
        keep = [r for r in rows if r[1] <= limit]
        dropped_ckpts += len(rows) - len(keep)
        good_ckpts += keep
        if keep:
            image.checkpoints[aid] = keep[-1][1]
    for aid in [a for a in image.checkpoints if a not in {r[0] for r in good_ckpts}]:
        del image.checkpoints[aid]

    tmp = path.with_name(path.name + ".salvage")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    new = Journal(tmp)
    new.compact(image)
    new.conn.execute("BEGIN")
    new.conn.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)", good_ckpts)
    new.conn.execute("COMMIT")
    new.close()
    check = Journal(tmp)
    rebuilt, _report = check.replay()
    check.close()

    stamp = time.strftime("%Y%m%dT%H%M%S")
    damaged = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{damaged}{suffix}")
    os.replace(tmp, path)
    return SalvageReport(str(path), kept, reason, len(good_ckpts), dropped_ckpts, str(damaged),
                         rebuilt.summary())  # fmt: skip
