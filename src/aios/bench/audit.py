"""``aios bench audit``: durable audit appends, verification and proofs.

* ``durable_appends_per_s``: audit records through :class:`AuditLog` (leaf
  hashing, tree nodes, group commit of ``--batch`` rows per transaction with
  ``synchronous=FULL``, signed checkpoints every 1024 entries / 1 s), timed
  from the first append to the final acknowledged commit;
* ``baseline_sqlite_rows_per_s``: the *same rows* (index, time, agent, type,
  data, hash) inserted in the same batches into a plain WAL table with
  ``synchronous=FULL``, same run, same disk;
* ``ratio`` = durable / baseline;
* ``verify_s`` (and ``verify_1m_s`` when ``--n`` is 1,000,000): a full
  :meth:`LogReader.verify` of that log (every hash, node, checkpoint);
* ``proof_us``: one inclusion proof for a random entry, generated from the
  store, and ``proof_verify_us`` to check it.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from aios.lib.audit import merkle
from aios.lib.audit.checkpoint import CheckpointPolicy
from aios.lib.audit.log import AuditLog, LogReader, connect, leaf_data
from aios.lib.audit.recorder import AuditRecord
from aios.lib.crypto import pqc
from aios.lib.identity import NodeIdentity

ORIGIN = "aios.local/bench/audit"


def _records(n: int) -> list[tuple[bytes, str, int, int]]:
    kinds = ["cap.grant", "policy.decision", "agent.lifecycle.spawn", "security.ipc.denied"]
    t0 = time.time_ns()
    out = []
    for i in range(n):
        kind = kinds[i % 4]
        rec = AuditRecord(
            t0 + i, kind, i % 997, i % 64, "allow" if i % 5 else "deny", "ok", {"slot": i % 4096}
        )
        out.append((rec.encode(), kind, i % 997, t0 + i))
    return out


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench audit")
    ap.add_argument("--n", type=int, default=1_000_000, help="entries in the log (default 1M)")
    ap.add_argument("--batch", type=int, default=1024, help="rows per group commit")
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where to put the databases (default: a temp dir)")
    args = ap.parse_args(argv)

    _pk, seed = pqc.sig_keygen("mldsa65")
    key = pqc.sig_private_key("mldsa65", seed)
    node = NodeIdentity("aios-node-bench", key.public_key().public_bytes_raw(), key)
    records = _records(args.n)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "audit.db"
        log = AuditLog(
            path, ORIGIN, node, CheckpointPolicy(every_n=1024, every_ms=1000), batch_max=args.batch
        )
        t = time.perf_counter()
        for rec, kind, agent, ts in records:
            log.append(rec, kind, agent, ts)
        log.commit()
        durable_s = time.perf_counter() - t
        log.close()

        # baseline: the same rows, same batches, plain WAL table, FULL sync
        rows = [(i, ts, agent, kind, leaf_data(i, rec), merkle.leaf_hash(leaf_data(i, rec)))
                for i, (rec, kind, agent, ts) in enumerate(records)]  # fmt: skip
        base = connect(Path(tmp) / "baseline.db")
        base.execute(
            "CREATE TABLE t(idx INTEGER PRIMARY KEY, ts_ns INTEGER, agent INTEGER, kind TEXT, data BLOB, hash BLOB)"
        )
        t = time.perf_counter()
        for lo in range(0, len(rows), args.batch):
            base.execute("BEGIN")
            base.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows[lo : lo + args.batch])
            base.execute("COMMIT")
        base_s = time.perf_counter() - t
        base.close()
        del rows

        reader = LogReader.open(path)
        t = time.perf_counter()
        report = reader.verify([node.trusted()])
        verify_s = time.perf_counter() - t
        if not report.ok:
            raise RuntimeError(f"benchmark log failed to verify: {report}")

        rng = random.Random(1)
        size = reader.size()
        root = reader.root(size)
        picks = [rng.randrange(size) for _ in range(args.proofs)]
        t = time.perf_counter()
        proofs = [reader.inclusion_proof(i, size) for i in picks]
        proof_s = time.perf_counter() - t
        leaves = [merkle.leaf_hash(reader.entry(i).data) for i in picks]
        t = time.perf_counter()
        ok = all(
            merkle.verify_inclusion(lh, i, size, p, root)
            for lh, i, p in zip(leaves, picks, proofs, strict=True)
        )
        pverify_s = time.perf_counter() - t
        if not ok:
            raise RuntimeError("an inclusion proof failed")
        db_mb = path.stat().st_size / 1e6
        reader.conn.close()

    durable = args.n / durable_s
    baseline = args.n / base_s
    out: dict[str, Any] = {
        "entries": args.n,
        "batch": args.batch,
        "durable_appends_per_s": round(durable),
        "baseline_sqlite_rows_per_s": round(baseline),
        "ratio": round(durable / baseline, 3),
        "verify_s": round(verify_s, 3),
        "checkpoints": report.checkpoints,
        "proof_us": round(proof_s / args.proofs * 1e6, 1),
        "proof_verify_us": round(pverify_s / args.proofs * 1e6, 1),
        "db_mb": round(db_mb, 1),
    }
    if args.n == 1_000_000:
        out["verify_1m_s"] = out["verify_s"]
    return out
