"""The journal kernel module: its syscalls (171-174) and ``install``.

``install(kernel, config)`` always registers the block; with a home and ``config.journal`` it
opens ``$AIOS_HOME/journal/journal.db``, replays it (an integrity failure stops the boot with
the file and the recovery command), restores what the image says may come back
(:mod:`aios.kmod.journal.restore`), journals the live result as one snapshot, and from then
on journals every change (:mod:`aios.kmod.journal.service`).  Without a journal the syscalls
answer ``NoSuchObject`` naming the module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import AgentGone, InvalidArgument, QuotaExceeded, WouldBlock
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights
from aios.abi.sysno import Sys
from aios.kernel.args import as_int, copy_plain
from aios.kernel.ipc import check_payload
from aios.kernel.sys_ipc import charge_ipc, hand_off
from aios.kmod.journal import records as R
from aios.kmod.journal.restore import Reinstater
from aios.kmod.journal.service import JOURNAL, JournalService, journal_path, plain
from aios.kmod.journal.store import Journal

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.kernel import Kernel


def sys_ipc_send_durable(k: Kernel, a: Agent, ep: Any, payload: Any) -> int | None:
    """A send that survives a crash: queued now, answered once journaled.  ``payload`` is
    bytes, or a list of up to ``IPC_MAX_BATCH`` of them sent in order (returns how many were
    queued: as many as fit).  A full mailbox refuses it (WouldBlock) and nothing is journaled."""
    svc = k.ext[JOURNAL]
    cap = a.cspace.lookup(ep, ObjKind.ENDPOINT, Rights.WRITE)
    mb = cap.obj.payload
    if mb.closed:
        raise AgentGone(f"mailbox of agent {mb.owner} is closed")
    many = type(payload) in (list, tuple)
    if many:
        if not 1 <= len(payload) <= limits.IPC_MAX_BATCH:
            raise InvalidArgument(f"payloads must be a list of 1 to {limits.IPC_MAX_BATCH} bytes objects")
        payloads = [check_payload(p) for p in payload]
    else:
        payloads = [check_payload(payload)]
    room = mb.room() + len(mb.recv_waiters)
    if room <= 0:
        raise WouldBlock(f"mailbox of agent {mb.owner} is full; the durable send was not queued")
    payloads = payloads[:room]
    charge_ipc(k, a, len(payloads))
    sent: list[tuple[Message, bool]] = []
    q = mb.q
    for p in payloads:
        msg = Message(next(k.msg_seq), a.aid, cap.badge, p)
        try:
            if not hand_off(k, mb, msg):
                break
        except QuotaExceeded:
            if sent:
                break  # what fit the sender's quota went; the rest did not
            raise
        sent.append((msg, bool(q) and q[-1] is msg))
    svc.durable_put(cap.obj, mb, sent)
    if not sent:
        raise WouldBlock(f"mailbox of agent {mb.owner} is full; the durable send was not queued")
    return len(sent) if many else None


def sys_agent_checkpoint(k: Kernel, a: Agent, state: Any) -> int:
    """Save ``state`` (a dict of plain data, at most ``SPEC_MAX_BYTES`` encoded) as the caller's
    latest checkpoint; answered once journaled.  The journal keeps the last few; after a crash the agent restarts from its
    entry with the latest one as its state."""
    svc = k.ext[JOURNAL]
    if type(state) is not dict:
        raise InvalidArgument("a checkpoint is a dict of plain data (the agent's state)")
    # at most what a spawn accepts as state, so a restart can always use it
    state = copy_plain(state, "checkpoint", limits.SPEC_MAX_BYTES)
    n = svc.checkpoint(a, state)
    a.state = state
    return n


def sys_agent_history(k: Kernel, a: Agent, auth_slot: Any = 2) -> list[dict[str, Any]]:
    """Exited agents the journal keeps (the caller's children; everyone with ADMIN)."""
    svc = k.ext[JOURNAL]
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.NONE)
    everyone = bool(auth.rights & Rights.ADMIN)
    rows = []
    for row, ex in svc.history.values():
        if everyone or row.parent == a.aid:
            rows.append({"aid": row.aid, "name": row.name, "parent": row.parent, "entry": row.entry, "kind": row.executor,
                         "executor": row.executor, "state": "exited", "exit": ex.status,
                         "fault": ex.fault, "exited_ns": ex.time_ns})  # fmt: skip
    return rows


def sys_journal_status(k: Kernel, a: Agent) -> dict[str, Any]:
    return k.ext[JOURNAL].status()


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.IPC_SEND_DURABLE: sys_ipc_send_durable,
    Sys.AGENT_CHECKPOINT: sys_agent_checkpoint,
    Sys.AGENT_HISTORY: sys_agent_history,
    Sys.JOURNAL_STATUS: sys_journal_status,
}


def install(k: Kernel, cfg: Any) -> JournalService | None:
    """Register the block; with ``cfg.home`` and ``cfg.journal``, open, replay, restore and
    start journaling."""
    k.registry.syscalls.block("journal").add_all(HANDLERS)
    home = getattr(cfg, "home", None)
    if home is None or not getattr(cfg, "journal", False):
        return None
    keep = as_int(getattr(cfg, "journal_keep_checkpoints", 3), "journal_keep_checkpoints", 1, 1000)
    j = Journal(journal_path(home), batch_max=1 << 16, keep_checkpoints=keep)
    try:
        svc = open_journal(k, j)
    except BaseException:
        j.conn.close()
        raise
    return svc


def open_journal(k: Kernel, j: Journal) -> JournalService:
    """Replay ``j``, restore the kernel from it, journal the result, start journaling."""
    from aios.kmod.memoryd.service import MEMORYD

    image, report = j.replay()
    svc = JournalService(k, j)
    t0 = time.perf_counter()
    reinstater = Reinstater(k, image, j, k.ext.get(MEMORYD))
    r = reinstater.run()
    # what did not come back stays visible in `aios ps -a`, as exited
    now = time.time_ns()
    for row in image.agents.values():
        if row.exited:
            svc.remember(_spawned(row), R.AgentExited(row.aid, row.status, row.fault, row.exited_ns))
    for lost in r.lost:
        row = image.agents[lost["aid"]]
        svc.remember(_spawned(row), R.AgentExited(row.aid, None, f"lost in a kernel restart: {lost['reason']}", now))
    svc.rows.update(r.rows)
    for aid, n in image.checkpoints.items():
        if aid in r.rows or aid in svc.history:
            svc.ckpt[aid] = n
        else:
            j.forget_checkpoints(aid)
    svc.boot = len(image.boots) + 1
    k.cdt.observer = svc  # from here on every change is journaled
    for obj, mb, msg in reinstater.requeued:
        svc.requeue(obj, mb, msg)
    for op in ("spawn", "clone", "split", "specialize"):
        k.hooks.add_post(op, svc.spawned)
    k.registry.on_agent_exit(svc.exited)
    k.registry.on_shutdown(svc.close, 900)
    k.ext[JOURNAL] = svc
    svc.compact()
    svc.append(R.Booted(svc.boot, now, report.last_seq, k.agents.next_id - 1))
    svc.flush()
    svc.start()
    svc.recovered = {"boot": svc.boot, "replayed_records": report.records, "replay_s": round(report.seconds, 4),
                     "restore_s": round(time.perf_counter() - t0, 4), **r.summary()}
    if svc.boot > 1:
        k.publish("kernel.recovered", 0, **plain(svc.recovered))
    return svc


def _spawned(row: Any) -> R.AgentSpawned:
    return R.AgentSpawned(row.aid, row.parent, row.name, row.entry, row.executor, row.opts, row.state,
                          row.unit, row.spawned_ns)  # fmt: skip
