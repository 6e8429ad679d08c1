"""Signed checkpoints in the C2SP ``tlog-checkpoint`` / ``signed-note`` format.

Design
------
A checkpoint commits the log to a size and a root hash.  Its text is::

    <origin>\\n
    <size, decimal>\\n
    <base64 root hash>\\n
    \\n
    — <key name> <base64(key hash (4 bytes) || signature)>\\n

The first three lines are the note *body*; the signature lines follow one
blank line, each starting with U+2014 EM DASH.  The signature is ML-DSA-65
by the node key over the body bytes, with the FIPS 204 context
``b"aios/checkpoint/v1"`` (domain separation from every other statement
the node key signs).  The 4-byte key hash names the key without carrying
it: ``SHA-256(name || 0x0A || type || public key)[:4]``, the signed-note
rule, with ``type = 0xFF || "ML-DSA-65"``.  Signed-note assigns type bytes to
Ed25519 and a few others; we know of no assignment for ML-DSA, so this type
is our own choice, written down here and in ``docs/audit.md``.

A verifier holds the expected origin and the trusted keys, and (for a
monitor) the last checkpoint it accepted.  It rejects: another origin; a
note with no valid signature by a trusted key (wrong key, bad signature,
unknown key hash); a size smaller than the last accepted one (rollback);
the same size with a different root (a fork).  Proving that a *larger*
checkpoint extends the last one needs a consistency proof from the log;
:func:`aios.lib.audit.merkle.verify_consistency` does that part.

:class:`CheckpointPolicy` decides *when* to sign: every ``every_n`` entries
or ``every_ms`` milliseconds, whichever comes first, and never for an
unchanged tree.  It is pure and reads no clock: the caller passes ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.crypto import pqc

CONTEXT: Final = b"aios/checkpoint/v1"
ALG: Final = "mldsa65"
ALG_ID: Final = b"\xffML-DSA-65"
EM_DASH: Final = "\u2014"


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash that names ``public_key`` in signature lines."""
    return hashlib.sha256(name.encode() + b"\n" + ALG_ID + public_key).digest()[:4]


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


class NoteSigner(Protocol):
    """What can sign a checkpoint (the node identity)."""

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes, context: bytes = b"") -> bytes: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n".encode()


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{EM_DASH} {self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    def text(self) -> str:
        return self.checkpoint.body().decode() + "\n" + "".join(s.line() for s in self.signatures)


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> SignedCheckpoint:
    if not _valid_name(signer.name):
        raise InvalidArgument(f"bad key name {signer.name!r}")
    sig = signer.sign(cp.body(), CONTEXT)
    return SignedCheckpoint(
        cp, (NoteSignature(signer.name, note_key_hash(signer.name, signer.public_key), sig),)
    )


def parse(text: str) -> SignedCheckpoint:
    """Parse checkpoint text strictly; anything malformed is ``IntegrityError``."""
    if not isinstance(text, str):
        raise IntegrityError("checkpoint must be text")
    body, sep, sigs = text.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise IntegrityError("checkpoint has no signature block")
    lines = body.split("\n")
    if len(lines) < 3:
        raise IntegrityError("checkpoint body needs origin, size and root lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not origin or not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise IntegrityError("checkpoint origin or size line is malformed")
    try:
        root_hash = base64.b64decode(root_s, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError("checkpoint root hash is not base64") from None
    if len(root_hash) != 32:
        raise IntegrityError("checkpoint root hash is not 32 bytes")
    if len(lines) > 3:
        raise IntegrityError("checkpoint extension lines are not supported")
    out: list[NoteSignature] = []
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or not _valid_name(parts[1]):
            raise IntegrityError(f"malformed signature line {line[:60]!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise IntegrityError("signature is not base64") from None
        if len(blob) < 5:
            raise IntegrityError("signature too short")
        out.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    return SignedCheckpoint(Checkpoint(origin, int(size_s), root_hash), tuple(out))


@dataclass(frozen=True, slots=True)
class TrustedKey:
    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        return note_key_hash(self.name, self.public_key)


def verify_checkpoint(
    text: str,
    origin: str,
    keys: Sequence[TrustedKey],
    previous: Checkpoint | None = None,
) -> Checkpoint:
    """Return the checkpoint in ``text`` if it is acceptable, else raise ``IntegrityError``."""
    signed = parse(text)
    cp = signed.checkpoint
    if cp.origin != origin:
        raise IntegrityError(f"checkpoint origin {cp.origin!r} is not {origin!r}")
    body = cp.body()
    good = False
    for sig in signed.signatures:
        for key in keys:
            if (
                sig.name == key.name
                and hmac.compare_digest(sig.key_hash, key.key_hash)
                and pqc.verify(ALG, key.public_key, body, sig.signature, CONTEXT)
            ):
                good = True
    if not good:
        raise IntegrityError("checkpoint carries no valid signature by a trusted key")
    if previous is not None:
        if cp.size < previous.size:
            raise IntegrityError(f"checkpoint size {cp.size} is below the accepted {previous.size}")
        if cp.size == previous.size and cp.root_hash != previous.root_hash:
            raise IntegrityError(f"two different roots for size {cp.size}: the log forked")
    return cp


@dataclass(slots=True)
class CheckpointPolicy:
    """Sign every ``every_n`` entries or ``every_ms`` ms, whichever comes first."""

    every_n: int = 1024
    every_ms: int = 1000
    last_size: int = 0
    last_ns: int = 0

    def __post_init__(self) -> None:
        if self.every_n < 1 or self.every_ms < 0:
            raise InvalidArgument("checkpoint policy needs every_n >= 1 and every_ms >= 0")

    def due(self, size: int, now_ns: int) -> bool:
        if size <= self.last_size:
            return False
        return (
            size - self.last_size >= self.every_n
            or now_ns - self.last_ns >= self.every_ms * 1_000_000
        )

    def mark(self, size: int, now_ns: int) -> None:
        self.last_size, self.last_ns = size, now_ns
