"""Syscall shims for binary IPC: send, receive, call/reply, batches.

The hot path is short on purpose: one slot lookup, one payload check, and
either a hand-off to a parked receiver or an append to the mailbox.

A message waiting in a mailbox queue is a kernel buffer charged to its
*sender's* memory quota (kernel/accounts.py: ``MSG_COST`` plus the payload)
from the moment it is queued until a receiver takes it or the mailbox is
destroyed; a send that does not fit the quota fails with EDQUOT and changes
nothing.  A message handed straight to a waiting receiver costs nothing.  A
sender parked on a full mailbox holds its one message (or batch) in its wait;
it is charged when it moves into the queue, then without refusal (it was
accepted when the sender parked).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import AgentGone, InvalidArgument, NoSuchObject, QuotaExceeded, WouldBlock
from aios.abi.limits import MSG_COST
from aios.abi.message import Message
from aios.abi.rights import ObjKind, Rights
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel.agents import Agent
from aios.kernel.args import as_int
from aios.kernel.capabilities import Capability
from aios.kernel.ipc import Mailbox, check_payload
from aios.kernel.waits import BLOCK, Wait

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

ENDPOINT = ObjKind.ENDPOINT
READ = Rights.READ
WRITE = Rights.WRITE


def charge_ipc(k: Kernel, a: Agent, n: int) -> None:
    """Charge ``n`` messages to the IPC-rate quota of the agent's authority chain."""
    try:
        auth = a.cspace.get(SLOT_AUTHORITY)
    except Exception:
        raise QuotaExceeded("agent holds no authority to charge IPC to") from None
    if auth.limits is None:
        raise QuotaExceeded("agent holds no authority to charge IPC to")
    k.cdt.take_tokens(auth, n)


def _open(a: Agent, slot: Any, need: Rights) -> tuple[Capability, Mailbox]:
    cap = a.cspace.lookup(slot, ENDPOINT, need)
    mb: Mailbox = cap.obj.payload
    if mb.closed:
        raise AgentGone(f"mailbox of agent {mb.owner} is closed")
    return cap, mb


def hand_off(k: Kernel, mb: Mailbox, msg: Message) -> bool:
    """Give ``msg`` to a parked receiver or queue it (charged to its sender: QuotaExceeded
    if that does not fit); False if the mailbox is full."""
    rw = mb.recv_waiters
    if rw:
        w = rw.pop()
        if w is not None:
            receiver = w.agent
            if msg.call:
                _note_receiver(k, msg, receiver)
            k.wake(w, [msg] if w.data else msg)
            mb.delivered += 1
            return True
    if len(mb.q) < mb.depth:
        k.ledger.take(msg.sender, len(msg.payload) + MSG_COST)
        mb.q.append(msg)
        return True
    return False


def _queue_parked(k: Kernel, mb: Mailbox, msgs: list[Message]) -> None:
    """Messages of one parked sender enter the queue: charged, without refusal."""
    if msgs:
        k.ledger.take(msgs[0].sender, sum(len(m[3]) for m in msgs) + MSG_COST * len(msgs), True)
        mb.q.extend(msgs)


def _taken(k: Kernel, msgs: list[Message]) -> None:
    """Messages left the queue for a receiver: refund their senders."""
    k.refund_messages(msgs)


def _note_receiver(k: Kernel, msg: Message, receiver: Agent) -> None:
    k.call_received(msg.call, receiver.aid)
    probe = k.registry.ipc_probe
    if probe is not None:
        probe.received(msg.call, receiver)


def _refill(k: Kernel, mb: Mailbox) -> None:
    """Room appeared: move parked senders' messages in, oldest first."""
    sw = mb.send_waiters
    while len(mb.q) < mb.depth and sw:
        w = sw.pop()
        if w is None:
            return
        d = w.data
        if type(d) is Message:
            _queue_parked(k, mb, [d])
            k.wake(w, None)
        elif d[0] == "batch":
            msgs: list[Message] = d[1]
            room = mb.depth - len(mb.q)
            _queue_parked(k, mb, msgs[:room])
            k.wake(w, min(room, len(msgs)))
        else:  # ("callmsg", msg, call id): now queued; keep waiting for the reply
            _, msg, cid = d
            _queue_parked(k, mb, [msg])
            w.queue = None
            w.data = ("call", cid)
            k.calls[cid] = (w, 0)


def sys_ipc_send(k: Kernel, a: Agent, ep: Any, payload: Any) -> Any:
    cap, mb = _open(a, ep, WRITE)
    if type(payload) is not bytes or len(payload) > limits.IPC_MAX_PAYLOAD:
        payload = check_payload(payload)
    charge_ipc(k, a, 1)
    msg = Message(next(k.msg_seq), a.aid, cap.badge, payload)
    probe = k.registry.ipc_probe
    if probe is not None:
        probe.sent(a, 1, len(payload))
    if hand_off(k, mb, msg):
        return None
    return k.park(a, mb.send_waiters, None, data=msg)


def sys_ipc_send_nowait(k: Kernel, a: Agent, ep: Any, payload: Any) -> None:
    cap, mb = _open(a, ep, WRITE)
    payload = check_payload(payload)
    if mb.full() and not mb.recv_waiters:
        raise WouldBlock(f"mailbox of agent {mb.owner} is full")
    charge_ipc(k, a, 1)
    hand_off(k, mb, Message(next(k.msg_seq), a.aid, cap.badge, payload))
    probe = k.registry.ipc_probe
    if probe is not None:
        probe.sent(a, 1, len(payload))


def sys_ipc_recv(k: Kernel, a: Agent, ep: Any = 1, timeout: Any = None) -> Any:
    _, mb = _open(a, ep, READ)
    if a.upgrade_to is not None and mb is a.mailbox:
        from aios.kernel.lifecycle import apply_upgrade

        apply_upgrade(k, a)
        return BLOCK
    q = mb.q
    if q:
        msg = q.popleft()
        k.ledger.give(msg.sender, len(msg.payload) + MSG_COST)
        mb.delivered += 1
        if mb.send_waiters:
            _refill(k, mb)
        if msg.call:
            _note_receiver(k, msg, a)
        return msg
    if timeout == 0:
        raise WouldBlock("mailbox is empty")
    return k.park(a, mb.recv_waiters, timeout)


def sys_ipc_recv_nowait(k: Kernel, a: Agent, ep: Any = 1) -> Any:
    return sys_ipc_recv(k, a, ep, 0)


def sys_ipc_call(k: Kernel, a: Agent, ep: Any, payload: Any, timeout: Any = None) -> Any:
    """Send and wait for the correlated reply; returns the reply payload."""
    cap, mb = _open(a, ep, WRITE)
    payload = check_payload(payload)
    deadline_check = k.deadline(timeout)  # validate before anything changes
    del deadline_check
    charge_ipc(k, a, 1)
    cid = next(k.call_seq)
    msg = Message(next(k.msg_seq), a.aid, cap.badge, payload, cid)
    if not mb.recv_waiters and not mb.full():  # it will be queued: refuse now if that cannot be charged
        k.ledger.check(a.aid, len(payload) + MSG_COST)
    probe = k.registry.ipc_probe
    if probe is not None:
        probe.call(a, cid, mb.owner, len(payload))
    if mb.full() and not mb.recv_waiters:
        return k.park(a, mb.send_waiters, timeout, data=("callmsg", msg, cid))
    k.park(a, None, timeout, data=("call", cid))
    w: Wait = a.wait
    k.calls[cid] = (w, 0)
    hand_off(k, mb, msg)
    return BLOCK


def sys_ipc_reply(k: Kernel, a: Agent, call_id: Any, payload: Any) -> None:
    cid = as_int(call_id, "call_id", 1)
    payload = check_payload(payload)
    entry = k.calls.get(cid)
    if entry is None or entry[1] != a.aid:
        raise NoSuchObject(f"no call {cid} awaiting a reply from agent {a.aid}")
    probe = k.registry.ipc_probe
    if probe is not None:
        probe.replied(a, cid, len(payload))
    k.end_call(cid)
    k.wake(entry[0], payload)


def sys_ipc_send_batch(k: Kernel, a: Agent, ep: Any, payloads: Any) -> Any:
    """Send many messages; returns how many were accepted (blocks only if none fit)."""
    cap, mb = _open(a, ep, WRITE)
    if type(payloads) not in (list, tuple) or not 1 <= len(payloads) <= limits.IPC_MAX_BATCH:
        raise InvalidArgument(f"payloads must be a list of 1 to {limits.IPC_MAX_BATCH} bytes objects")
    if not all(type(p) is bytes for p in payloads) or max(map(len, payloads)) > limits.IPC_MAX_PAYLOAD:
        for p in payloads:
            check_payload(p)  # raises the precise error for the first bad one
    n = len(payloads)
    charge_ipc(k, a, n)
    s0 = next(k.msg_seq)
    k.msg_seq = itertools.count(s0 + n)  # reserve n sequence numbers at once
    new = tuple.__new__
    aid, badge = a.aid, cap.badge
    msgs = [new(Message, (s, aid, badge, p, 0, -1)) for s, p in zip(range(s0, s0 + n), payloads, strict=True)]
    sent = 0
    rw = mb.recv_waiters
    while sent < len(msgs) and rw:
        w = rw.pop()
        if w is None:
            break
        if w.data:  # a batch receiver: data is how many it takes
            take = msgs[sent : sent + w.data]
            k.wake(w, take)
            sent += len(take)
        else:
            k.wake(w, msgs[sent])
            sent += 1
    room = mb.depth - len(mb.q)
    if room > 0 and sent < len(msgs):
        chunk = msgs[sent : sent + room]
        cost = sum(map(len, payloads[sent : sent + room])) + MSG_COST * len(chunk)
        try:
            k.ledger.take(a.aid, cost)
        except QuotaExceeded:
            if sent:
                probe = k.registry.ipc_probe
                if probe is not None:
                    probe.sent(a, sent, sum(map(len, payloads[:sent])))
                return sent  # what the receivers took; the rest did not fit the quota
            raise
        mb.q.extend(chunk)
        sent += len(chunk)
    probe = k.registry.ipc_probe
    if probe is not None and sent:
        probe.sent(a, sent, sum(map(len, payloads[:sent])))
    if sent:
        return sent
    return k.park(a, mb.send_waiters, None, data=("batch", msgs))


def sys_ipc_recv_batch(k: Kernel, a: Agent, ep: Any = 1, max_n: Any = 256, timeout: Any = None) -> Any:
    """Up to ``max_n`` messages; blocks only while the mailbox is empty."""
    _, mb = _open(a, ep, READ)
    n = as_int(max_n, "max_n", 1, limits.IPC_MAX_BATCH)
    q = mb.q
    if q:
        if len(q) <= n:
            out = list(q)
            q.clear()
        else:
            out = [q.popleft() for _ in range(n)]
        _taken(k, out)
        mb.delivered += len(out)
        if mb.send_waiters:
            _refill(k, mb)
        for m in out:
            if m.call:
                _note_receiver(k, m, a)
        return out
    if timeout == 0:
        raise WouldBlock("mailbox is empty")
    return k.park(a, mb.recv_waiters, timeout, data=n)
