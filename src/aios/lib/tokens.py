"""Attenuable bearer tokens for capabilities that leave the kernel.

Inside a kernel a capability is a slot; outside (another node, an external
tool, a person) it travels as a token.  The design follows Eclipse Biscuit's
idea of a chain of signed blocks with an ephemeral key handed down the chain,
in a format of our own, signed with ML-DSA-65 (FIPS 204).  The byte layout is
specified in ``docs/tokens.md``; in short::

    token  = msgpack [ 1, [block, ...], [sig, ...], proof ]
    block  = msgpack map (bytes as signed, kept verbatim in the token)
             {"v": 1, "i": index, "prev": H(sig of block i-1) (b"" for i=0),
              "next": public key of the next signer, caveats...}
    proof  = ["key", seed of the private key for block[-1].next]     (open)
           | ["seal", signature by that key over sig[-1]]           (sealed)

Block 0 is signed by the issuing node's root key and holds the grant: the
object, rights, expiry, and optionally audience and rate.  Block *i* is signed
by the private key whose public key block *i-1* named in ``next``, and it
includes ``prev``, a hash of block *i-1*'s signature.  Whoever holds an open token holds
that private key, so anyone can attenuate offline: write a block with fewer
rights (or a shorter expiry, an audience, a rate cap), sign it with the proof
key, name a fresh key as ``next``, hand on the fresh private key.  Sealing
signs the chain with the proof key and drops it: no more blocks.

Why tampering fails:

* altering a block breaks its signature;
* re-signing block *i* needs the key named in block *i-1* (or the root key
  for block 0), which only earlier holders had;
* dropping or reordering blocks breaks the ``prev``/``next`` links (and the
  ``i`` fields); dropping the *last* block needs the previous proof key, which
  the attenuator did not pass on;
* widening is impossible by construction: the verifier intersects rights and
  takes the minimum expiry and rate over all blocks, and every block's
  audience must name the verifier, so a block can only ever take away.

Every block's revocation id is the SHA-256 of its signature (hex, 32 chars):
unique, unforgeable, and shared by every token derived from that block, so
revoking one id rejects the token and all its descendants.

A token is verified once, when it is imported into a capability space
(:func:`verify` returns a :class:`Grant`); from then on the slot is checked
like any other.  This module is pure apart from drawing fresh keys from
``os.urandom``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from aios.abi.errors import (
    IntegrityError,
    InvalidArgument,
    PermissionDenied,
    TokenExpired,
    TokenRevoked,
)
from aios.abi.rights import RIGHT_NAMES

VERSION: Final = 1
CONTEXT: Final = b"aios-token-v1"
SEAL_CONTEXT: Final = b"aios-token-v1-seal"
TEXT_PREFIX: Final = "aios1."
MAX_BLOCKS: Final = 32
MAX_TOKEN_BYTES: Final = 512 * 1024
PK_BYTES: Final = 1952
SIG_BYTES: Final = 3309
SEED_BYTES: Final = 32
RIGHTS: Final = frozenset(RIGHT_NAMES)  # the kernel's rights, by name


@dataclass(frozen=True, slots=True)
class Caveats:
    """What one block says; ``None`` means "this block does not restrict it"."""

    rights: frozenset[str] | None = None
    expiry: int | None = None  # unix seconds
    audience: str | None = None
    rate: int | None = None  # uses per second


@dataclass(frozen=True, slots=True)
class Grant:
    """The effective authority of a verified token."""

    object: str
    issuer: str
    rights: frozenset[str]
    expiry: int | None
    audience: str | None
    rate: int | None
    revocation_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlockView:
    """A decoded block, for ``aios token inspect`` (signatures not checked)."""

    index: int
    caveats: Caveats
    object: str
    issuer: str
    revocation_id: str


# -- encoding --------------------------------------------------------------------


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise IntegrityError(f"token is not well-formed: {exc}") from exc


def to_text(token: bytes) -> str:
    return TEXT_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")


def from_text(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(TEXT_PREFIX):
        raise InvalidArgument(f"not an AIOS token (expected prefix {TEXT_PREFIX!r})")
    body = text[len(TEXT_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise InvalidArgument(f"token text is not base64url: {exc}") from exc


def _link(signature: bytes) -> bytes:
    """What block *i* stores of block *i-1*: the SHA-256 of its signature."""
    return hashlib.sha256(b"aios-token-link\0" + signature).digest()


def revocation_id(signature: bytes) -> str:
    return hashlib.sha256(signature).hexdigest()[:32]


def _check_rights(rights: Iterable[str]) -> frozenset[str]:
    names = frozenset(rights)
    unknown = names - RIGHTS
    if unknown:
        raise InvalidArgument(f"unknown rights {sorted(unknown)}")
    return names


def _caveat_map(c: Caveats) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if c.rights is not None:
        m["rights"] = sorted(c.rights)
    if c.expiry is not None:
        m["exp"] = int(c.expiry)
    if c.audience is not None:
        m["aud"] = c.audience
    if c.rate is not None:
        if c.rate < 0:
            raise InvalidArgument("rate must be >= 0")
        m["rate"] = int(c.rate)
    return m


def _caveats_of(block: dict[str, Any]) -> Caveats:
    try:
        rights = block.get("rights")
        return Caveats(
            rights=_check_rights(rights) if rights is not None else None,
            expiry=int(block["exp"]) if "exp" in block else None,
            audience=str(block["aud"]) if "aud" in block else None,
            rate=int(block["rate"]) if "rate" in block else None,
        )
    except (TypeError, ValueError, InvalidArgument) as exc:
        raise IntegrityError(f"token block has malformed caveats: {exc}") from exc


# -- token structure ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parsed:
    blocks: tuple[bytes, ...]
    sigs: tuple[bytes, ...]
    proof_kind: str
    proof: bytes


def _parse(token: bytes) -> _Parsed:
    if not isinstance(token, bytes | bytearray) or len(token) > MAX_TOKEN_BYTES:
        raise IntegrityError("token missing or too large")
    doc = _unpack(bytes(token))
    if not (isinstance(doc, list) and len(doc) == 4 and doc[0] == VERSION):
        raise IntegrityError("token is not an AIOS v1 token")
    _, blocks, sigs, proof = doc
    if not (
        isinstance(blocks, list)
        and isinstance(sigs, list)
        and 1 <= len(blocks) == len(sigs) <= MAX_BLOCKS
        and all(isinstance(b, bytes) for b in blocks)
        and all(isinstance(s, bytes) for s in sigs)
        and isinstance(proof, list)
        and len(proof) == 2
        and proof[0] in ("key", "seal")
        and isinstance(proof[1], bytes)
    ):
        raise IntegrityError("token structure is malformed")
    return _Parsed(tuple(blocks), tuple(sigs), proof[0], proof[1])


def _serialize(blocks: Iterable[bytes], sigs: Iterable[bytes], kind: str, proof: bytes) -> bytes:
    return _pack([VERSION, list(blocks), list(sigs), [kind, proof]])


def _block_doc(raw: bytes, index: int) -> dict[str, Any]:
    doc = _unpack(raw)
    if not isinstance(doc, dict) or doc.get("v") != VERSION or doc.get("i") != index:
        raise IntegrityError(f"token block {index} is malformed or out of order")
    if not isinstance(doc.get("next"), bytes) or len(doc["next"]) != PK_BYTES:
        raise IntegrityError(f"token block {index} has no valid next key")
    if not isinstance(doc.get("prev"), bytes):
        raise IntegrityError(f"token block {index} has no chain link")
    return doc


def _fresh_key() -> mldsa.MLDSA65PrivateKey:
    return mldsa.MLDSA65PrivateKey.from_seed_bytes(os.urandom(SEED_BYTES))


def _public(key_bytes: bytes) -> mldsa.MLDSA65PublicKey:
    try:
        return mldsa.MLDSA65PublicKey.from_public_bytes(key_bytes)
    except ValueError as exc:
        raise IntegrityError(f"bad ML-DSA-65 public key: {exc}") from exc


# -- operations ----------------------------------------------------------------------


def mint(
    root_key: mldsa.MLDSA65PrivateKey,
    *,
    object: str,
    rights: Iterable[str],
    issuer: str = "",
    expiry: int | None = None,
    audience: str | None = None,
    rate: int | None = None,
) -> bytes:
    """Block 0: the issuing node grants ``rights`` on ``object``."""
    names = _check_rights(rights)
    if not names:
        raise InvalidArgument("a token must grant at least one right")
    nxt = _fresh_key()
    doc = {
        "v": VERSION,
        "i": 0,
        "prev": b"",
        "obj": object,
        "iss": issuer,
        "next": nxt.public_key().public_bytes_raw(),
        **_caveat_map(Caveats(names, expiry, audience, rate)),
    }
    raw = _pack(doc)
    sig = root_key.sign(raw, CONTEXT)
    return _serialize([raw], [sig], "key", nxt.private_bytes_raw())


def attenuate(
    token: bytes,
    *,
    rights: Iterable[str] | None = None,
    expiry: int | None = None,
    audience: str | None = None,
    rate: int | None = None,
) -> bytes:
    """Append a narrowing block; needs no key but the one inside the token.

    Refuses (``InvalidArgument``) a block that would not narrow: rights not in
    the current set, a later expiry, a second different audience or a higher
    rate.  The verifier would ignore such widening anyway.
    """
    p = _parse(token)
    if p.proof_kind != "key":
        raise InvalidArgument("token is sealed: it cannot be attenuated")
    cur = effective_caveats(token)
    if rights is not None:
        new = _check_rights(rights)
        if cur.rights is not None and not new <= cur.rights:
            raise InvalidArgument(f"attenuation cannot add rights {sorted(new - cur.rights)}")
    if expiry is not None and cur.expiry is not None and expiry > cur.expiry:
        raise InvalidArgument("attenuation cannot extend the expiry")
    if audience is not None and cur.audience is not None and audience != cur.audience:
        raise InvalidArgument(f"token is already bound to audience {cur.audience!r}")
    if rate is not None and cur.rate is not None and rate > cur.rate:
        raise InvalidArgument("attenuation cannot raise the rate cap")
    if len(p.blocks) >= MAX_BLOCKS:
        raise InvalidArgument(f"token already has {MAX_BLOCKS} blocks")
    try:
        signer = mldsa.MLDSA65PrivateKey.from_seed_bytes(p.proof)
    except ValueError as exc:
        raise IntegrityError(f"token proof key is malformed: {exc}") from exc
    nxt = _fresh_key()
    doc = {
        "v": VERSION,
        "i": len(p.blocks),
        "prev": _link(p.sigs[-1]),
        "next": nxt.public_key().public_bytes_raw(),
        **_caveat_map(
            Caveats(frozenset(rights) if rights is not None else None, expiry, audience, rate)
        ),
    }
    raw = _pack(doc)
    sig = signer.sign(raw, CONTEXT)
    return _serialize([*p.blocks, raw], [*p.sigs, sig], "key", nxt.private_bytes_raw())


def seal(token: bytes) -> bytes:
    """Sign the chain with the proof key and drop it: no further attenuation."""
    p = _parse(token)
    if p.proof_kind != "key":
        raise InvalidArgument("token is already sealed")
    try:
        signer = mldsa.MLDSA65PrivateKey.from_seed_bytes(p.proof)
    except ValueError as exc:
        raise IntegrityError(f"token proof key is malformed: {exc}") from exc
    return _serialize(p.blocks, p.sigs, "seal", signer.sign(p.sigs[-1], SEAL_CONTEXT))


def inspect(token: bytes) -> tuple[tuple[BlockView, ...], bool]:
    """Decode without verifying: the blocks and whether the token is sealed."""
    p = _parse(token)
    views = []
    for i, (raw, sig) in enumerate(zip(p.blocks, p.sigs, strict=True)):
        doc = _block_doc(raw, i)
        views.append(
            BlockView(
                index=i,
                caveats=_caveats_of(doc),
                object=str(doc.get("obj", "")),
                issuer=str(doc.get("iss", "")),
                revocation_id=revocation_id(sig),
            )
        )
    return tuple(views), p.proof_kind == "seal"


def effective_caveats(token: bytes) -> Caveats:
    """The combined restriction of all blocks (unverified; for tools)."""
    views, _ = inspect(token)
    return _combine(v.caveats for v in views)


def _combine(caveats: Iterable[Caveats]) -> Caveats:
    rights: frozenset[str] | None = None
    expiry: int | None = None
    audience: str | None = None
    rate: int | None = None
    for c in caveats:
        if c.rights is not None:
            rights = c.rights if rights is None else rights & c.rights
        if c.expiry is not None:
            expiry = c.expiry if expiry is None else min(expiry, c.expiry)
        if c.audience is not None:
            audience = c.audience if audience is None else audience
        if c.rate is not None:
            rate = c.rate if rate is None else min(rate, c.rate)
    return Caveats(rights, expiry, audience, rate)


def verify(
    token: bytes,
    root_public_key: bytes | mldsa.MLDSA65PublicKey,
    *,
    now: float,
    audience: str | None = None,
    is_revoked: Callable[[str], bool] = lambda _rid: False,
) -> Grant:
    """Check every signature and link, revocation, expiry and audience.

    Raises :class:`IntegrityError` (bad structure, signature, link or proof),
    :class:`TokenRevoked`, :class:`TokenExpired` or :class:`PermissionDenied`
    (the token names another audience).  ``now`` is unix seconds.
    """
    p = _parse(token)
    signer = (
        root_public_key
        if isinstance(root_public_key, mldsa.MLDSA65PublicKey)
        else _public(root_public_key)
    )
    prev_sig = b""
    docs: list[dict[str, Any]] = []
    for i, (raw, sig) in enumerate(zip(p.blocks, p.sigs, strict=True)):
        try:
            signer.verify(sig, raw, CONTEXT)
        except InvalidSignature:
            raise IntegrityError(f"token block {i}: signature does not verify") from None
        doc = _block_doc(raw, i)
        if doc["prev"] != (_link(prev_sig) if i else b""):
            raise IntegrityError(f"token block {i}: chain link broken")
        docs.append(doc)
        prev_sig = sig
        signer = _public(doc["next"])
    if p.proof_kind == "key":
        try:
            holder = mldsa.MLDSA65PrivateKey.from_seed_bytes(p.proof).public_key()
        except ValueError:
            raise IntegrityError("token proof key is malformed") from None
        if holder.public_bytes_raw() != docs[-1]["next"]:
            raise IntegrityError("token proof does not match its last block")
    else:
        try:
            signer.verify(p.proof, prev_sig, SEAL_CONTEXT)
        except InvalidSignature:
            raise IntegrityError("token seal does not verify") from None

    rids = tuple(revocation_id(s) for s in p.sigs)
    for rid in rids:
        if is_revoked(rid):
            raise TokenRevoked(f"token revoked (revocation id {rid})", revocation_id=rid)
    cavs = [_caveats_of(d) for d in docs]
    if cavs[0].rights is None:
        raise IntegrityError("token block 0 grants no rights")
    for c in cavs:
        if c.audience is not None and c.audience != audience:
            raise PermissionDenied(
                f"token is for audience {c.audience!r}, not {audience!r}", audience=c.audience
            )
        if c.expiry is not None and now >= c.expiry:
            raise TokenExpired(f"token expired at {c.expiry}", expiry=c.expiry)
    eff = _combine(cavs)
    return Grant(
        object=str(docs[0].get("obj", "")),
        issuer=str(docs[0].get("iss", "")),
        rights=eff.rights if eff.rights is not None else frozenset(),
        expiry=eff.expiry,
        audience=eff.audience,
        rate=eff.rate,
        revocation_ids=rids,
    )


def load_seed_key(seed: bytes) -> mldsa.MLDSA65PrivateKey:
    """An ML-DSA-65 key from its 32-byte seed (FIPS 204 ``xi``)."""
    if len(seed) != SEED_BYTES:
        raise InvalidArgument(f"an ML-DSA-65 seed is {SEED_BYTES} bytes, got {len(seed)}")
    return mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
