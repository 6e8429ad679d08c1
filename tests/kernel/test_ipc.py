"""Mailbox data structure."""

from __future__ import annotations

import pytest

from aios.abi import limits
from aios.abi.errors import InvalidArgument, MessageTooLarge
from aios.abi.message import Message
from aios.kernel.ipc import Mailbox, check_payload, merge_in_arrival_order


def test_payload_limits() -> None:
    assert check_payload(b"x" * limits.IPC_MAX_PAYLOAD)
    with pytest.raises(MessageTooLarge):
        check_payload(b"x" * (limits.IPC_MAX_PAYLOAD + 1))
    with pytest.raises(InvalidArgument):
        check_payload("text")
    assert check_payload(bytearray(b"ab")) == b"ab"


def test_merge_in_arrival_order() -> None:
    a, b = Mailbox(1), Mailbox(2)
    for seq in (1, 4, 5):
        a.q.append(Message(seq, 9, 0, b"a%d" % seq))
    for seq in (2, 3, 6):
        b.q.append(Message(seq, 9, 0, b"b%d" % seq))
    merged = merge_in_arrival_order(a, b)
    assert [m.seq for m in merged] == [1, 2, 3, 4, 5, 6]
    assert not a.q and not b.q
