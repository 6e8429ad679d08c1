"""The audit buffer's backpressure core, called directly (sans-IO)."""

from __future__ import annotations

import pytest

from aios.lib.audit.backpressure import Backpressure


def test_an_agent_past_its_share_is_held_until_its_backlog_drains() -> None:
    bp = Backpressure(capacity=100, share=10, floor=2)
    held = [bp.appended(i, 7) for i in range(11)]
    assert held == [False] * 10 + [True] and bp.held == {7}
    assert bp.appended(11, 7) is False  # already held: reported once
    assert bp.acknowledged(6) == []  # 6 left: not yet down to half the share
    assert bp.acknowledged(7) == [7] and bp.held == set()
    assert bp.status().pending == 5 and bp.status().pending_max == 12


def test_the_kernel_is_never_held() -> None:
    bp = Backpressure(capacity=4, share=2, floor=1)
    assert not any(bp.appended(i, 0) for i in range(50))
    assert bp.held == set()


def test_a_full_buffer_holds_the_heaviest_producers_not_a_light_one() -> None:
    bp = Backpressure(capacity=64, share=40, floor=4)
    idx = 0
    for _ in range(32):  # two violators fill the buffer, each within its fair share
        for owner in (1, 2):
            assert not bp.appended(idx, owner)
            idx += 1
    assert bp.total == 64 and bp.held == set()
    assert bp.appended(idx, 1) and bp.appended(idx + 1, 2)  # full: fair share is now 64 // 2
    # a light producer arrives: its fair share (64 // 3) is far above its three records
    assert not any(bp.appended(idx + 2 + i, 3) for i in range(3))
    assert bp.held == {1, 2}
    # commits drain the buffer in log order; the violators resume once below half their limit
    assert bp.acknowledged(idx + 2) == [1, 2]
    assert bp.by_owner == {3: 3}


def test_forget_and_bad_configuration() -> None:
    bp = Backpressure(capacity=8, share=2, floor=1)
    for i in range(3):
        bp.appended(i, 5)
    assert bp.held == {5}
    bp.forget(5)
    assert bp.held == set() and bp.releasable() == []
    with pytest.raises(ValueError):
        Backpressure(capacity=4, share=8)
