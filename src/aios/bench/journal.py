"""``aios bench journal``: the kernel journal at the store level.

Store level means: the records the kernel module will write for each
operation, built, folded into the in-memory image (the state the kernel keeps
anyway) and, in the journaled run, appended to a
:class:`~aios.kmod.journal.store.Journal` with group commit (``synchronous=FULL``;
a flusher thread commits whatever has accumulated every ``--flush-ms``, default
2 ms, while the loop goes on, which is how the kernel module will run it; the
clock stops when the last commit has returned, so every operation is
acknowledged).  Until the journal is wired into the kernel these
figures do not include a syscall's own cost; once it is, this benchmark will
drive the kernel path instead.

* ``spawn_per_s`` / ``grant_per_s`` / ``durable_sends_per_s``: journaled
  operations per second (a spawn is eight records: the agent, its two objects,
  four capabilities and a quota charge; a grant one capability; a durable send
  one 128-byte message), and ``*_memory_per_s``: the same operations,
  unjournaled, in the same run;
* ``journal_ratio``: journaled over unjournaled, for the three kinds together
  (total operations over total time);
* ``durable_sends_unbatched_per_s``: durable sends committed one per
  transaction, what group commit saves; ``durable_sends_inline_per_s``: the
  loop itself committing every ``--inline-batch`` (1,024) sends, no thread;
* ``recovery_s_10k_agents``: open, verify (SQLite ``quick_check``, the hash
  chain, checkpoint digests) and replay a journal holding ``--agents`` agents
  and ``--caps`` capabilities (default 10,000 and 100,000) as written, and
  ``recovery_compacted_s`` after compaction into a snapshot;
* ``journal_bytes_per_agent``: that journal's bytes on disk per agent (as
  written, WAL folded in), and ``journal_bytes_per_agent_compacted``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage
from aios.kmod.journal.store import Journal

ALL = (1 << 14) - 1
PAYLOAD = bytes(range(128))


class _Ops:
    """Builds the records of kernel operations over an image, with fresh ids."""

    def __init__(self, image: KernelImage) -> None:
        self.img = image
        self.aid = self.oid = self.cid = self.chid = self.msg = 0
        self.agents: list[tuple[int, int, int]] = []  # (aid, endpoint oid, authority cid)
        recs = self.spawn(parent=0, root=True)
        for r in recs:
            image.apply(r)

    def spawn(self, parent: int = 1, root: bool = False) -> list[R.Record]:
        self.aid += 1
        aid = self.aid
        o_agent, o_ep = self.oid + 1, self.oid + 2
        self.oid += 2
        c_self, c_ep, c_auth, c_ctl = (self.cid + i for i in range(1, 5))
        self.cid += 4
        recs: list[R.Record] = [
            R.AgentSpawned(aid, parent, f"agent-{aid}", "bench.agents:main", "inproc", {},
                           {}, "", 0),
            R.ObjectCreated(o_agent, R.OBJ_AGENT, aid),
            R.ObjectCreated(o_ep, R.OBJ_ENDPOINT, aid),
            R.CapInstalled(c_self, aid, 0, o_agent, 1, 0, 0),
            R.CapInstalled(c_ep, aid, 1, o_ep, 7, 0, 0),
        ]  # fmt: skip
        if root:
            self.oid += 1
            recs.append(R.ObjectCreated(self.oid, R.OBJ_AUTHORITY, None))
            recs.append(R.CapInstalled(c_auth, aid, 2, self.oid, ALL, 0, 0, (1 << 40, 10**7, None, 88761)))
            recs.append(R.CapInstalled(c_ctl, aid, 3, o_agent, 1, 0, c_self))
        else:
            pauth = self.agents[0][2]
            recs.append(R.CapInstalled(c_auth, aid, 2, self.img.caps[pauth].oid, 0b111000, 0, pauth,
                                       (1 << 26, 16, None, 1024)))  # fmt: skip
            recs.append(R.CapInstalled(c_ctl, parent, 5 + aid, o_agent, 0b11011, 0, c_self))
            self.chid += 1
            recs.append(R.Charged(self.chid, pauth, R.RES_AGENTS, 1, aid))
        self.agents.append((aid, o_ep, c_auth))
        return recs

    def spawn_nth(self, _i: int) -> list[R.Record]:
        return self.spawn()

    def grant(self, i: int) -> list[R.Record]:
        aid, o_ep, _ = self.agents[1 + i % (len(self.agents) - 1)]
        dest = self.agents[1 + (i * 7919) % (len(self.agents) - 1)][0]
        self.cid += 1
        # a send capability to ``aid``'s mailbox, derived from its own (slot 1)
        return [R.CapInstalled(self.cid, dest, 64 + i, o_ep, 2, i, self._ep_cap[aid])]

    _ep_cap: dict[int, int]

    def index(self) -> None:
        self._ep_cap = {c.holder: c.cid for c in self.img.caps.values() if c.slot == 1}

    def send(self, i: int) -> list[R.Record]:
        _aid, o_ep, _ = self.agents[1 + i % (len(self.agents) - 1)]
        self.msg += 1
        return [R.MailboxPut(o_ep, self.msg, 1, 0, PAYLOAD)]


def _timed(
    n: int, make: Callable[[int], list[R.Record]], image: KernelImage, journal: Journal | None,
    batch: int, flush_s: float = 0.002,
) -> float:  # fmt: skip
    """Seconds for ``n`` operations.  With a journal and ``batch`` 0, a flusher thread commits
    whatever has accumulated every ``flush_s`` (the kernel module's design, like the audit
    log's flush interval); else the loop itself commits every ``batch`` operations.  Either
    way the clock stops when the last commit has returned: every operation is acknowledged."""
    apply = image.apply
    t0 = time.perf_counter()
    if journal is None:
        for i in range(n):
            for r in make(i):
                apply(r)
        return time.perf_counter() - t0
    append = journal.append_many
    if batch:
        for i in range(n):
            recs = make(i)
            for r in recs:
                apply(r)
            append(recs)
            if i % batch == batch - 1:
                journal.commit()
        journal.commit()
        return time.perf_counter() - t0
    done = threading.Event()
    interval = flush_s

    def flusher() -> None:
        last = 0.0
        while True:
            wait = last + interval - time.perf_counter()
            if wait > 0 and not done.is_set():
                time.sleep(wait)
            if journal.pending:
                last = time.perf_counter()
                journal.commit()
            elif done.is_set():
                return
            else:
                last = time.perf_counter()

    th = threading.Thread(target=flusher, name="journal-flusher")
    th.start()
    for i in range(n):
        recs = make(i)
        for r in recs:
            apply(r)
        append(recs)
    done.set()
    th.join()
    return time.perf_counter() - t0


def _throughput(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total_j = total_m = 0.0
    total_ops = 0
    for journaled in (False, True):
        image = KernelImage()
        ops = _Ops(image)
        journal = None
        if journaled:
            journal = Journal(tmp / "tput" / "journal.db", batch_max=1 << 30)
        fl = args.flush_ms / 1000
        spawn_s = _timed(args.spawns, ops.spawn_nth, image, journal, args.batch, fl)
        ops.index()
        grant_s = _timed(args.grants, ops.grant, image, journal, args.batch, fl)
        send_s = _timed(args.sends, ops.send, image, journal, args.batch, fl)
        suffix = "" if journaled else "_memory"
        out[f"spawn{suffix}_per_s"] = round(args.spawns / spawn_s)
        out[f"grant{suffix}_per_s"] = round(args.grants / grant_s)
        out[f"durable_sends{suffix}_per_s"] = round(args.sends / send_s)
        if journaled:
            total_j = spawn_s + grant_s + send_s
            assert journal is not None
            journal.close()
        else:
            total_m = spawn_s + grant_s + send_s
        total_ops = args.spawns + args.grants + args.sends
    out["journal_ratio"] = round((total_ops / total_j) / (total_ops / total_m), 3)
    for kind in ("spawn", "grant", "durable_sends"):
        out[f"{kind}_ratio"] = round(out[f"{kind}_per_s"] / out[f"{kind}_memory_per_s"], 3)

    # one transaction per durable send: what group commit buys
    image = KernelImage()
    ops = _Ops(image)
    for _ in range(8):
        for r in ops.spawn():
            image.apply(r)
    journal = Journal(tmp / "single" / "journal.db")
    s = _timed(args.unbatched, ops.send, image, journal, 1)
    journal.close()
    out["durable_sends_unbatched_per_s"] = round(args.unbatched / s)
    # the loop committing every --inline-batch sends itself (no flusher thread)
    journal = Journal(tmp / "inline" / "journal.db", batch_max=1 << 30)
    s = _timed(args.sends, ops.send, image, journal, args.inline_batch)
    journal.close()
    out["durable_sends_inline_per_s"] = round(args.sends / s)
    return out


def _recovery(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = tmp / "recovery" / "journal.db"
    journal = Journal(path, batch_max=1 << 30)
    image = KernelImage()
    ops = _Ops(image)
    journal.append_many(image.records())  # the root agent
    for i in range(args.agents - 1):
        recs = ops.spawn()
        for r in recs:
            image.apply(r)
        journal.append_many(recs)
        if i % 1024 == 0:
            journal.commit()
    ops.index()
    i = 0
    while len(image.caps) < args.caps:
        recs = ops.grant(i)
        for r in recs:
            image.apply(r)
        journal.append_many(recs)
        i += 1
        if i % 1024 == 0:
            journal.commit()
    for a in range(2, args.agents + 1, 10):  # a checkpoint for every tenth agent
        journal.checkpoint(a, {"step": a, "notes": "x" * 64})
    journal.commit()
    journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = journal.size_bytes()
    journal.close()

    t0 = time.perf_counter()
    j = Journal(path)
    recovered, report = j.replay()
    recovery_s = time.perf_counter() - t0
    if len(recovered.agents) != args.agents or len(recovered.caps) != len(image.caps):
        raise RuntimeError("recovery lost state")
    j.compact(recovered)
    compact_size = j.size_bytes()
    j.close()
    t0 = time.perf_counter()
    j = Journal(path)
    again, _ = j.replay()
    compacted_s = time.perf_counter() - t0
    j.close()
    if again.summary() != recovered.summary():
        raise RuntimeError("compaction changed the state")
    return {
        "agents": len(recovered.agents),
        "capabilities": len(recovered.caps),
        "records": report.records,
        "recovery_s_10k_agents": round(recovery_s, 3),
        "recovery_compacted_s": round(compacted_s, 3),
        "journal_bytes_per_agent": round(size / args.agents),
        "journal_bytes_per_agent_compacted": round(compact_size / args.agents),
    }


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench journal")
    ap.add_argument("--spawns", type=int, default=20_000)
    ap.add_argument("--grants", type=int, default=100_000)
    ap.add_argument("--sends", type=int, default=200_000)
    ap.add_argument("--unbatched", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=0,
                    help="0: a flusher thread commits what has accumulated (default); N: the "
                         "loop commits every N operations")
    ap.add_argument("--flush-ms", type=float, default=2.0,
                    help="the flusher thread's commit interval (it commits whatever accumulated)")
    ap.add_argument("--inline-batch", type=int, default=1024,
                    help="operations per commit for durable_sends_inline_per_s")
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--caps", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to put the journals (default: a temp dir)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        tput = _throughput(tmp, args)
        rec = _recovery(tmp, args)
    head = {
        "durable_sends_per_s": tput["durable_sends_per_s"],
        "journal_ratio": tput["journal_ratio"],
        "recovery_s_10k_agents": rec["recovery_s_10k_agents"],
        "journal_bytes_per_agent": rec["journal_bytes_per_agent"],
        "batch": args.batch,
    }
    return {**head, **tput, **rec}
