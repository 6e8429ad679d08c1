"""Crash safety of the journal store: SIGKILL a journaling process at random points, many times.

Each round starts a child that replays the journal and then journals a deterministic mixed
workload (spawns, grants, revokes, deletes, durable sends and takes, exits, checkpoints, stream
publishes, deliveries, acks, naks), printing ``ACK seq`` only after each commit returns.  The
parent kills it with SIGKILL after a random number of acknowledgements (so the kill lands at a
random point of the next batch or commit) and then checks that:

* the journal verifies (SQLite quick_check, the hash chain, checkpoint digests) and replays;
* every acknowledged operation is present (the recovered sequence covers every ACK);
* the journal ends exactly at an operation boundary, and the replayed state equals the state
  the same workload produces over exactly that prefix (so nothing is half-applied, reordered
  or invented);
* no capability revoked (or deleted) by a journaled operation has come back, in this round or
  any earlier one;
* the latest checkpoint of every agent is the one last journaled.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aios.kmod.journal.replay import KernelImage
from aios.kmod.journal.store import Journal

from .workload import Workload, fingerprint

CHILD = Path(__file__).with_name("crash_child.py")


def _replay(path: Path) -> tuple[KernelImage, int]:
    if not path.exists():
        return KernelImage(), 0
    j = Journal(path)
    try:
        image, report = j.replay()
    finally:
        j.conn.close()
    return image, report.last_seq


def crash_rounds(tmp_path: Path, rounds: int, seed: int) -> dict[str, int]:
    path = tmp_path / "journal" / "journal.db"
    rng = random.Random(seed)
    ever_revoked: set[int] = set()
    stats = {"rounds": 0, "acked": 0, "records": 0, "kills_mid_batch": 0}
    for _ in range(rounds):
        pre, pre_last = _replay(path)
        wseed = rng.randrange(1 << 30)
        kill_after = rng.choice([0, 1, 1, 2, 3, 5, 8, 13])
        proc = subprocess.Popen([sys.executable, str(CHILD), str(path), str(wseed)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        start = proc.stdout.readline()
        assert start.startswith("START"), start
        acked = pre_last
        for _ in range(kill_after):
            line = proc.stdout.readline()
            if not line.startswith("ACK"):
                break
            acked = max(acked, int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:  # acknowledgements printed before the kill landed
            if line.startswith("ACK"):
                acked = max(acked, int(line.split()[1]))
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        j = Journal(path)
        try:
            image, report = j.replay()  # verifies: raises on any damage
            assert report.last_seq >= acked, "an acknowledged operation is missing"
            w = Workload(pre, wseed)
            seq = pre_last
            latest: dict[int, Any] = {}
            if not pre.agents:
                seq += len(w.bootstrap().records)
            while seq < report.last_seq:
                op = w.step()
                seq += len(op.records)
                ever_revoked.update(op.revoked)
                if op.checkpoint is not None:
                    latest[op.checkpoint[0]] = op.checkpoint[1]
            assert seq == report.last_seq, "the journal ends inside an operation"
            assert fingerprint(image, w.now) == fingerprint(pre, w.now), "replayed state differs from the prefix"
            # a deleted authority with children stays in the tree as a ghost, in no slot: not back
            held = {cid for cid, c in image.caps.items() if not c.ghost}
            assert not ever_revoked & held, "a revoked capability came back"
            for aid, state in latest.items():
                if aid in image.agents:
                    cp = j.latest_checkpoint(aid)
                    assert cp is not None and cp.state == state
        finally:
            j.conn.close()
        stats["rounds"] += 1
        stats["acked"] = acked
        stats["records"] = report.last_seq
        stats["kills_mid_batch"] += report.last_seq > acked
    return stats


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    stats = crash_rounds(tmp_path, rounds=8, seed=1)
    assert stats["rounds"] == 8 and stats["records"] > 0


@pytest.mark.slow
def test_sigkill_at_random_points_100_rounds(tmp_path: Path) -> None:
    stats = crash_rounds(tmp_path, rounds=100, seed=2)
    assert stats["rounds"] == 100 and stats["records"] > 0
