"""aios.lib.attest: PCR extend, event-log replay, quotes and nonces."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodes import make_node

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib import attest
from aios.lib.attest import PcrBank, Quote, quote, verify_quote


def booted() -> PcrBank:
    bank = PcrBank()
    bank.measure(attest.PCR_KERNEL, b"kernel code", "kernel")
    bank.measure(attest.PCR_CONFIG, b"config", "config")
    bank.measure(attest.PCR_POLICY, b"policies", "policies")
    bank.measure(attest.PCR_AGENTS, b"agent image", "agent 1")
    return bank


def test_extend_is_order_sensitive() -> None:
    a, b = attest.measure(b"a"), attest.measure(b"b")
    z = attest.ZERO
    assert attest.extend(attest.extend(z, a), b) != attest.extend(attest.extend(z, b), a)
    bank = PcrBank()
    v = bank.extend(0, a, "a")
    assert v == attest.extend(z, a) and bank.values[1] == z


def test_replay_reproduces_the_quote(tmp_path: Path) -> None:
    node, bank = make_node("n"), booted()
    q = quote(bank, b"nonce-1", node)
    bank.save_log(tmp_path / "ev.json")
    log = attest.load_event_log(tmp_path / "ev.json")
    replayed = verify_quote(Quote.from_json(q.to_json()), log, node.public_key, b"nonce-1")
    assert replayed.values == bank.values
    assert [i for i, _ in q.pcrs] == [0, 1, 2, 4]


def test_stale_nonce_wrong_key_and_edited_log_fail() -> None:
    node, bank = make_node("n"), booted()
    q = quote(bank, b"nonce-1", node)
    with pytest.raises(IntegrityError, match="nonce"):
        verify_quote(q, bank.log, node.public_key, b"nonce-2")
    with pytest.raises(IntegrityError):
        verify_quote(q, bank.log, make_node("n").public_key, b"nonce-1")
    swapped = [bank.log[1], bank.log[0], *bank.log[2:]]  # different PCRs: still replays the same
    verify_quote(q, swapped, node.public_key, b"nonce-1")
    reordered = [*bank.log[:2], bank.log[3], bank.log[2]]
    verify_quote(q, reordered, node.public_key, b"nonce-1")
    edited = [
        *bank.log[:3],
        attest.LogEvent(attest.PCR_AGENTS, attest.measure(b"evil image"), "agent 1"),
    ]
    with pytest.raises(IntegrityError, match="PCR 4"):
        verify_quote(q, edited, node.public_key, b"nonce-1")
    with pytest.raises(IntegrityError):
        verify_quote(q, bank.log[:-1], node.public_key, b"nonce-1")
    forged = Quote(q.nonce, ((0, bytes(32)), *q.pcrs[1:]), q.signature)
    with pytest.raises(IntegrityError):
        verify_quote(forged, bank.log, node.public_key, b"nonce-1")


def test_same_pcr_order_matters() -> None:
    node = make_node("n")
    bank = PcrBank()
    bank.measure(3, b"svc a", "a")
    bank.measure(3, b"svc b", "b")
    q = quote(bank, b"n", node)
    with pytest.raises(IntegrityError):
        verify_quote(q, list(reversed(bank.log)), node.public_key, b"n")


def test_bad_input() -> None:
    bank, node = PcrBank(), make_node("n")
    with pytest.raises(InvalidArgument):
        bank.extend(24, bytes(32), "x")
    with pytest.raises(InvalidArgument):
        bank.extend(0, b"short", "x")
    with pytest.raises(InvalidArgument):
        quote(bank, b"", node)
    with pytest.raises(InvalidArgument):
        quote(bank, b"n", node, selection=[99])
    assert bank.log == [] and bank.values == [attest.ZERO] * 24
    with pytest.raises(IntegrityError):
        Quote.from_json({"nonce": "zz"})


def test_tpm_detection_reports_honestly() -> None:
    dev = attest.tpm_device()
    status = attest.tpm_status()
    assert (dev is None) == status.startswith("no hardware TPM")
