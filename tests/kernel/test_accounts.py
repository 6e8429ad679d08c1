"""The ledger of kernel buffers (sans-IO): charges against an authority chain."""

from __future__ import annotations

import pytest

from aios.abi.errors import QuotaExceeded
from aios.abi.rights import ObjKind, Rights
from aios.kernel.accounts import EventAccount, Ledger, payload_bytes
from aios.kernel.capabilities import CapabilityDerivationTree
from aios.kernel.quotas import Quota, Resource


def setup(memory: int = 1000) -> tuple[CapabilityDerivationTree, Ledger, object]:
    cdt = CapabilityDerivationTree(lambda: 0, lambda cap, charges: None)
    root_space = cdt.new_space(1)
    root = cdt.root(root_space, cdt.new_object(ObjKind.AUTHORITY), Rights.READ, quota=Quota(memory=memory * 10))
    child = cdt.derive(root, cdt.new_space(7), Rights.READ, quota=Quota(memory=memory))
    auths = {7: child}
    return cdt, Ledger(cdt, auths.get), child


def test_buffers_count_against_the_chain_and_refuse_past_the_quota() -> None:
    _, ledger, child = setup()
    ledger.take(7, 600)
    assert child.used[Resource.MEMORY] == 600 and child.parent.used[Resource.MEMORY] == 600
    with pytest.raises(QuotaExceeded):
        ledger.take(7, 401)
    assert child.used[Resource.MEMORY] == 600  # a refusal changes nothing
    ledger.check(7, 400)
    assert ledger.balance(7) == 600
    ledger.give(7, 600)
    assert child.used[Resource.MEMORY] == 0 and child.parent.used[Resource.MEMORY] == 0


def test_forced_charges_and_the_kernels_own() -> None:
    _, ledger, _child = setup()
    ledger.take(7, 900)
    ledger.take(7, 500, force=True)  # accepted earlier (a parked sender): counted anyway
    assert ledger.balance(7) == 1400
    ledger.take(0, 10**9)  # the kernel's own buffers are not charged
    assert 0 not in ledger.accounts


def test_an_account_outlives_its_agent_until_its_buffers_are_gone() -> None:
    cdt, ledger, child = setup()
    parent = child.parent
    ledger.take(7, 300)
    ledger.close(7)  # the agent ended with 300 bytes still queued elsewhere
    assert 7 in ledger.accounts
    cdt.delete(child)  # its space is dropped: the authority stays as a ghost holding the charge
    assert child.ghost and child in parent.children and parent.used[Resource.MEMORY] == 300
    ledger.give(7, 300)
    assert 7 not in ledger.accounts and parent.used[Resource.MEMORY] == 0
    assert not child.valid and not parent.children and not parent.charges  # the ghost is gone


def test_no_authority_means_no_buffers() -> None:
    cdt = CapabilityDerivationTree(lambda: 0, lambda cap, charges: None)
    ledger = Ledger(cdt, lambda aid: None)
    with pytest.raises(QuotaExceeded):
        ledger.take(5, 1)
    assert not EventAccount(ledger, 5).take(1)


def test_payload_estimate() -> None:
    assert payload_bytes(("abc", b"de", ["f", b"gh"], {"k": "xyz"}, 7)) == 3 + 2 + 3 + 3


def test_quota_is_reserved_ahead_and_given_back_when_the_buffers_go() -> None:
    from aios.kernel.accounts import RESERVE

    _, ledger, child = setup(memory=10 * RESERVE)
    for _ in range(100):
        ledger.take(7, 100)  # one chain walk, then counted against the reservation
    assert ledger.balance(7) == 10_000
    assert child.used[Resource.MEMORY] == 100 + RESERVE
    ledger.take(7, 3 * RESERVE)
    ledger.give(7, 3 * RESERVE)
    assert child.used[Resource.MEMORY] <= 10_000 + 2 * RESERVE  # at most a step or two ahead
    ledger.give(7, 10_000)
    assert child.used[Resource.MEMORY] == 0
