"""Binary IPC: per-agent mailboxes (whitepaper subsystem #4).

A mailbox is a bounded FIFO of :class:`Message` owned by one agent and
reached by others through ENDPOINT capabilities (WRITE to send, READ to
receive).  Payloads are bytes of at most ``limits.IPC_MAX_PAYLOAD`` (64 KiB).
The mailbox itself is pure data; blocking is the kernel's: a full mailbox
parks senders on ``send_waiters`` (backpressure), an empty one parks the
owner on ``recv_waiters``.  Delivery is serial: the owner takes one message
at a time, so an agent handles one message at a time; because there is one
queue, order per sender is FIFO.  Every message carries a global arrival
sequence number, which is how ``merge`` interleaves two mailboxes in arrival
order.

A *call* is a send whose message carries a call id; the receiver answers
with ``IPCReply(call_id, payload)`` and the caller, parked on its reply wait,
gets the reply payload.  Replies bypass the mailbox, like seL4 reply caps.
"""

from __future__ import annotations

from collections import deque

from aios.abi import limits
from aios.abi.errors import InvalidArgument, MessageTooLarge
from aios.abi.message import Message
from aios.kernel.waits import WaitQueue


def check_payload(payload: object) -> bytes:
    if type(payload) is not bytes:
        if isinstance(payload, (bytearray, memoryview)):
            payload = bytes(payload)
        else:
            raise InvalidArgument("IPC payload must be bytes")
    if len(payload) > limits.IPC_MAX_PAYLOAD:
        raise MessageTooLarge(
            f"payload of {len(payload)} bytes exceeds {limits.IPC_MAX_PAYLOAD}", size=len(payload)
        )
    return payload


class Mailbox:
    __slots__ = ("closed", "delivered", "depth", "owner", "q", "recv_waiters", "send_waiters")

    def __init__(self, owner: int, depth: int = limits.MAILBOX_DEPTH) -> None:
        self.owner = owner
        self.depth = depth
        self.q: deque[Message] = deque()
        self.recv_waiters = WaitQueue()
        self.send_waiters = WaitQueue()
        self.closed = False
        self.delivered = 0

    def full(self) -> bool:
        return len(self.q) >= self.depth

    def room(self) -> int:
        return self.depth - len(self.q)

    def __len__(self) -> int:
        return len(self.q)


def merge_in_arrival_order(a: Mailbox, b: Mailbox) -> deque[Message]:
    """The messages of two mailboxes as one queue, ordered by arrival."""
    out: deque[Message] = deque()
    qa, qb = a.q, b.q
    while qa and qb:
        out.append(qa.popleft() if qa[0].seq < qb[0].seq else qb.popleft())
    out.extend(qa)
    out.extend(qb)
    qa.clear()
    qb.clear()
    return out
