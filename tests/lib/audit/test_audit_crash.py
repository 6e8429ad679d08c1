"""Crash test: SIGKILL a process that is auditing events, repeatedly.

After each kill the log reopens, verifies (hashes, nodes, checkpoint
signatures), and every entry the child acknowledged (printed only after its
batch committed with synchronous=FULL) is present with the right content.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from aios.lib.audit.checkpoint import TrustedKey
from aios.lib.audit.log import AuditLog, LogReader
from aios.lib.audit.recorder import AuditRecord
from aios.lib.crypto import pqc

ORIGIN = "aios.local/crash/audit"
SEED = bytes(range(32))
SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import sys
from pathlib import Path
from aios.lib.crypto import pqc
from aios.lib.identity import NodeIdentity
from aios.lib.audit.checkpoint import CheckpointPolicy
from aios.lib.audit.log import AuditLog
from aios.lib.audit.recorder import AuditRecorder

path, run, seed = Path(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
key = pqc.sig_private_key("mldsa65", seed)
node = NodeIdentity("crash-node", key.public_key().public_bytes_raw(), key)
log = AuditLog(path, "aios.local/crash/audit", node, CheckpointPolicy(every_n=50, every_ms=5), batch_max=10_000)
rec = AuditRecorder(log)
print("start", log.acknowledged_size, flush=True)
i = 0
while True:
    for _ in range(1 + i % 13):
        rec.on_event("security.test", {"agent": run, "run": run, "n": i})
        i += 1
    size = rec.flush()
    print("ack", size, run, i - 1, flush=True)
"""


def test_sigkill_repeatedly_keeps_every_acknowledged_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    rng = random.Random(6962)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    acked = 0
    last: tuple[int, int, int] | None = None
    for run in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(run), SEED.hex()],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        first = child.stdout.readline().split()
        assert first[0] == "start" and int(first[1]) >= acked
        want = rng.randint(1, 40)
        for _ in range(want):
            parts = child.stdout.readline().split()
            assert parts and parts[0] == "ack", parts
            size, r, n = (int(x) for x in parts[1:])
            acked = max(acked, size)
            last = (size, r, n)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()

        reader = LogReader.open(path)
        pk = pqc.sig_keygen("mldsa65", SEED)[0]
        report = reader.verify([TrustedKey("crash-node", pk)])
        assert report.ok, report
        assert report.size >= acked
        assert last is not None
        rec = AuditRecord.decode(reader.entry(last[0] - 1).record)
        assert (rec.agent, rec.detail["run"], rec.detail["n"]) == (last[1], last[1], last[2])
        reader.conn.close()
    # every run's records are a gap-free prefix 0, 1, 2, ... of what it appended
    reader = LogReader.open(path)
    seen: dict[int, list[int]] = {}
    for e in reader.entries(limit=10**9):
        r = AuditRecord.decode(e.record)
        seen.setdefault(int(r.detail["run"]), []).append(int(r.detail["n"]))
    assert sorted(seen) == list(range(6))
    for ns in seen.values():
        assert ns == list(range(len(ns)))
    reader.conn.close()
    # the survivor can be reopened for writing and continues the same tree
    log = AuditLog(path, ORIGIN)
    assert log.acknowledged_size >= acked
    log.append(json.dumps({"after": "crash"}).encode(), kind="security.test")
    assert log.commit() == log.acknowledged_size
