"""aios.lib.crypto.hybrid: ML-KEM-768 + X25519 key agreement and the sealed channel."""

from __future__ import annotations

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.crypto import hybrid


def _pair() -> tuple[hybrid.SealedChannel, hybrid.SealedChannel, hybrid.HybridKeyPair, bytes]:
    kp = hybrid.hybrid_keygen()
    keys_i, enc = hybrid.hybrid_encapsulate(kp.public)
    keys_r = hybrid.hybrid_decapsulate(kp, enc)
    assert keys_i == keys_r
    return (
        hybrid.SealedChannel(keys_i, initiator=True),
        hybrid.SealedChannel(keys_r, initiator=False),
        kp,
        enc,
    )


def test_sizes_and_agreement() -> None:
    a, b, kp, enc = _pair()
    assert len(kp.public) == 1184 + 32 and len(enc) == 1088 + 32
    assert a.session_id == b.session_id
    assert b.open(a.seal(b"hello", b"hdr"), b"hdr") == b"hello"
    assert a.open(b.seal(b"back")) == b"back"
    assert a.keys.initiator_to_responder != a.keys.responder_to_initiator


def test_each_half_changes_the_key() -> None:
    kp = hybrid.hybrid_keygen()
    keys, enc = hybrid.hybrid_encapsulate(kp.public)
    ct, xpub = enc[: hybrid.CT_LEN], enc[hybrid.CT_LEN :]
    flipped_ct = bytes([ct[0] ^ 1]) + ct[1:]  # ML-KEM implicit rejection: different ss_k
    assert hybrid.hybrid_decapsulate(kp, flipped_ct + xpub) != keys
    flipped_x = xpub[:-1] + bytes([xpub[-1] ^ 0x40])
    assert hybrid.hybrid_decapsulate(kp, ct + flipped_x) != keys


def test_replay_reorder_forgery_detected_and_state_kept() -> None:
    a, b, _, _ = _pair()
    r1, r2 = a.seal(b"one"), a.seal(b"two")
    with pytest.raises(IntegrityError):
        b.open(r2)  # out of order
    assert b.open(r1) == b"one"
    with pytest.raises(IntegrityError):
        b.open(r1)  # replay
    forged = r2[:-1] + bytes([r2[-1] ^ 1])
    with pytest.raises(IntegrityError):
        b.open(forged)
    with pytest.raises(IntegrityError):
        b.open(r2, b"wrong aad")
    assert b.open(r2) == b"two"
    with pytest.raises(IntegrityError):
        b.open(b"short")


def test_bad_inputs() -> None:
    kp = hybrid.hybrid_keygen()
    with pytest.raises(InvalidArgument):
        hybrid.hybrid_encapsulate(kp.public[:-1])
    with pytest.raises(InvalidArgument):
        hybrid.hybrid_decapsulate(kp, b"\x00" * 10)
    with pytest.raises(InvalidArgument):  # low-order X25519 point
        hybrid.hybrid_encapsulate(kp.public[: hybrid.EK_LEN] + bytes(32))
