"""Hybrid key agreement (ML-KEM-768 + X25519) and a sealed channel.

Design
------
A channel that crosses a trust boundary (another node, an imported agent)
must stay confidential if *either* ML-KEM-768 or X25519 is broken: the
first guards against a future quantum adversary recording traffic today,
the second against a flaw in the young lattice implementations.  So both
run and both secrets feed the key schedule.

The responder publishes ``R = ek (1184 B) || X25519 pk (32 B)``.  The
initiator:

1. ``(ss_k, ct) = ML-KEM-768.Encaps(ek)``;
2. makes an ephemeral X25519 key ``e`` and ``ss_x = X25519(e, R.x)``;
3. sends ``E = ct (1088 B) || e.pub (32 B)``;
4. derives ``okm = HKDF-SHA256(ikm = ss_k || ss_x, salt = LABEL,
   info = LABEL || SHA-256(R || E), L = 64)``.

The transcript hash binds both public values and both ciphertext values
into the key, so a key cannot be replayed under a different ciphertext or
responder key (the X-Wing argument: ML-KEM is IND-CCA, and its ciphertext
is in the transcript, so the combiner stays secure if only one half holds).
``okm[:32]`` keys initiator-to-responder traffic, ``okm[32:]`` the reverse,
and ``SHA-256(R || E)`` is the session id both sides can log.

The :class:`SealedChannel` frames records with ChaCha20-Poly1305.  The
96-bit nonce is ``0x00000000 || seq (8 bytes, big-endian)`` where ``seq``
counts records per direction; the receiver accepts only the next ``seq``,
so replay, reordering and deletion are detected (as ``IntegrityError``),
and a nonce is never reused under one key.  The session id is AAD of every
record; callers may add their own AAD.

Everything is pure computation: no sockets.  Moving ``E`` and the records
is the caller's job.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.crypto import pqc

LABEL: Final = b"aios-hybrid-v1 mlkem768+x25519 hkdf-sha256"
KEM: Final = "mlkem768"
EK_LEN: Final = pqc.KEMS[KEM].public_len
CT_LEN: Final = pqc.KEMS[KEM].ciphertext_len
X_LEN: Final = 32
PUBLIC_LEN: Final = EK_LEN + X_LEN
ENCAPSULATION_LEN: Final = CT_LEN + X_LEN
TAG_LEN: Final = 16
MAX_RECORD: Final = 1 << 24


@dataclass(frozen=True, slots=True)
class HybridKeyPair:
    """A responder's key pair; ``private`` is ``kem seed (64) || x25519 (32)``."""

    public: bytes
    private: bytes


@dataclass(frozen=True, slots=True)
class SessionKeys:
    session_id: bytes
    initiator_to_responder: bytes
    responder_to_initiator: bytes


def hybrid_keygen() -> HybridKeyPair:
    ek, kseed = pqc.kem_keygen(KEM)
    xpriv = x25519.X25519PrivateKey.generate()
    return HybridKeyPair(
        public=ek + xpriv.public_key().public_bytes_raw(),
        private=kseed + xpriv.private_bytes_raw(),
    )


def _x25519(priv: x25519.X25519PrivateKey, peer: bytes) -> bytes:
    try:
        return priv.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    except ValueError as exc:  # low-order point: all-zero shared secret
        raise InvalidArgument(f"X25519 refused the peer key: {exc}") from None


def _derive(ss_k: bytes, ss_x: bytes, public: bytes, encapsulation: bytes) -> SessionKeys:
    transcript = hashlib.sha256(public + encapsulation).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=LABEL, info=LABEL + transcript).derive(
        ss_k + ss_x
    )
    return SessionKeys(transcript, okm[:32], okm[32:])


def hybrid_encapsulate(responder_public: bytes) -> tuple[SessionKeys, bytes]:
    """Initiator side: ``(keys, encapsulation)``; send the encapsulation."""
    pub = pqc.as_bytes(responder_public, "hybrid public key", PUBLIC_LEN)
    ss_k, ct = pqc.kem_encapsulate(KEM, pub[:EK_LEN])
    eph = x25519.X25519PrivateKey.generate()
    ss_x = _x25519(eph, pub[EK_LEN:])
    enc = ct + eph.public_key().public_bytes_raw()
    return _derive(ss_k, ss_x, pub, enc), enc


def hybrid_decapsulate(keypair: HybridKeyPair, encapsulation: bytes) -> SessionKeys:
    """Responder side: the same keys the initiator derived."""
    enc = pqc.as_bytes(encapsulation, "hybrid encapsulation", ENCAPSULATION_LEN)
    priv = pqc.as_bytes(keypair.private, "hybrid private key", 64 + X_LEN)
    ss_k = pqc.kem_decapsulate(KEM, priv[:64], enc[:CT_LEN])
    xpriv = x25519.X25519PrivateKey.from_private_bytes(priv[64:])
    ss_x = _x25519(xpriv, enc[CT_LEN:])
    return _derive(ss_k, ss_x, keypair.public, enc)


def _nonce(seq: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", seq)


@dataclass(slots=True)
class SealedChannel:
    """One end of an AEAD channel keyed by :class:`SessionKeys`."""

    keys: SessionKeys
    initiator: bool
    _send_seq: int = field(default=0, init=False)
    _recv_seq: int = field(default=0, init=False)
    _send: ChaCha20Poly1305 = field(init=False)
    _recv: ChaCha20Poly1305 = field(init=False)

    def __post_init__(self) -> None:
        k_out, k_in = self.keys.initiator_to_responder, self.keys.responder_to_initiator
        if not self.initiator:
            k_out, k_in = k_in, k_out
        self._send = ChaCha20Poly1305(k_out)
        self._recv = ChaCha20Poly1305(k_in)

    @property
    def session_id(self) -> bytes:
        return self.keys.session_id

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt the next record: ``seq (8) || ciphertext || tag``."""
        plaintext = pqc.as_bytes(plaintext, "plaintext", max_len=MAX_RECORD)
        aad = pqc.as_bytes(aad, "aad")
        if self._send_seq >= 1 << 64:
            raise InvalidArgument("channel exhausted its nonce space; rekey")
        seq = self._send_seq
        self._send_seq += 1
        ct = self._send.encrypt(_nonce(seq), plaintext, self.keys.session_id + aad)
        return struct.pack(">Q", seq) + ct

    def open(self, record: bytes, aad: bytes = b"") -> bytes:
        """Decrypt the next record; replayed, reordered or forged ones raise
        ``IntegrityError`` and leave the channel state unchanged."""
        record = pqc.as_bytes(record, "record", max_len=MAX_RECORD + 8 + TAG_LEN)
        aad = pqc.as_bytes(aad, "aad")
        if len(record) < 8 + TAG_LEN:
            raise IntegrityError("sealed record too short")
        (seq,) = struct.unpack(">Q", record[:8])
        if seq != self._recv_seq:
            raise IntegrityError(f"sealed record out of order: got {seq}, want {self._recv_seq}")
        try:
            pt = self._recv.decrypt(_nonce(seq), record[8:], self.keys.session_id + aad)
        except InvalidTag:
            raise IntegrityError("sealed record failed authentication") from None
        self._recv_seq += 1
        return pt
