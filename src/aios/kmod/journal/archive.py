"""Signed agent archives: what ``aios agent export|import`` will carry between nodes.

An archive packs one agent so that another kernel (or this one, later) can
bring it back: its spawn record (name, entry or image, executor, options), its
state (the latest checkpoint, else the declared state it was spawned with),
the capabilities it may *claim* and the memory namespaces it owns.  Claims are
descriptions (kind, rights, badge, what the object stands for), never live
capabilities: an importing kernel grants what its own policy and the
importer's authority allow, and rights can only narrow on the way.

Format (all integers big-endian)::

    "AIOSAGT1" || u32 len || header || u32 len || body || signature

``header`` is msgpack ``{"alg": "mldsa65", "key": NAME}``; ``body`` is msgpack
of the archive's fields; ``signature`` is ML-DSA-65 (FIPS 204) over
``magic || header || body`` with the context string ``aios/agent-export/v1``,
so no other AIOS signature (checkpoints, bindings, rotations, tokens) can be
passed off as an archive.  The signer is the node identity
(``aios.lib.identity.NodeIdentity``) or any object with ``name`` and
``sign(message, context)``.

:func:`unpack` checks sizes, finds the signer among the trusted keys by name,
verifies the signature over the raw bytes, and only then decodes the body,
so untrusted bytes are never parsed beyond a 4 KiB header.  Any failure is
:class:`~aios.abi.errors.IntegrityError` (or ``InvalidArgument`` for a file that
is not an archive at all) and yields nothing.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgpack

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchAgent
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage
from aios.lib.audit.checkpoint import TrustedKey
from aios.lib.crypto import pqc

MAGIC: Final = b"AIOSAGT1"
CONTEXT: Final = b"aios/agent-export/v1"
ALG: Final = "mldsa65"
MAX_HEADER: Final = 4096
MAX_ARCHIVE: Final = 64 << 20
_LEN: Final = struct.Struct(">I")
SIG_LEN: Final = pqc.SIGS[ALG].signature_len


class Signer(Protocol):
    @property
    def name(self) -> str: ...

    def sign(self, message: bytes, context: bytes = b"") -> bytes: ...


@dataclass(frozen=True, slots=True)
class CapClaim:
    """A capability the agent held: what it names and with which rights."""

    slot: int
    kind: int
    rights: int
    badge: int
    ref: Any  # what the object stands for (a namespace name, a directory name, an agent id)
    limits: tuple[int | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class AgentArchive:
    aid: int
    name: str
    entry: str
    executor: str
    opts: dict[str, Any]
    state: Any
    claims: tuple[CapClaim, ...]
    namespaces: tuple[tuple[str, int], ...]  # (namespace, rights) it owns
    image: bytes = b""  # the signed image's bytes, for an image: entry
    checkpoint: int = 0  # which checkpoint ``state`` is (0: the spawn state)
    created_ns: int = 0
    signer: str = field(default="", compare=False)


def from_image(
    image: KernelImage, aid: int, *, checkpoint: tuple[int, Any] | None = None,
    image_bytes: bytes = b"",
) -> AgentArchive:  # fmt: skip
    """The archive of agent ``aid`` as the journal knows it (``checkpoint`` = (n, state))."""
    a = image.agents.get(aid)
    if a is None:
        raise NoSuchAgent(f"no agent {aid} in the journal")
    names = {cid: n for n, cid in image.directory.items()}
    claims: list[CapClaim] = []
    owned: list[tuple[str, int]] = []
    for slot, c in sorted(image.cspace(aid).items()):
        obj = image.objects[c.oid]
        ref = names.get(c.cid, obj.ref if obj.kind in (R.OBJ_MEMNS, R.OBJ_TOPIC) else None)
        claims.append(CapClaim(slot, obj.kind, c.rights, c.badge, ref, c.limits))
        if obj.kind == R.OBJ_MEMNS and not c.parent:
            owned.append((str(obj.ref), c.rights))
    n, state = checkpoint if checkpoint is not None else (0, a.state)
    return AgentArchive(aid, a.name, a.entry, a.executor, a.opts, state, tuple(claims),
                        tuple(owned), image_bytes, n, time.time_ns())  # fmt: skip


def _body(arc: AgentArchive) -> bytes:
    claims = [[c.slot, c.kind, c.rights, c.badge, c.ref, c.limits] for c in arc.claims]
    body: bytes = msgpack.packb(
        [arc.aid, arc.name, arc.entry, arc.executor, arc.opts, arc.state, claims,
         [list(ns) for ns in arc.namespaces], arc.image, arc.checkpoint, arc.created_ns],
        use_bin_type=True,
    )  # fmt: skip
    return body


def pack(arc: AgentArchive, signer: Signer) -> bytes:
    header: bytes = msgpack.packb({"alg": ALG, "key": signer.name}, use_bin_type=True)
    body = _body(arc)
    if len(body) + len(header) + SIG_LEN + 16 > MAX_ARCHIVE:
        raise InvalidArgument(f"agent archive would exceed {MAX_ARCHIVE} bytes")
    signed = MAGIC + _LEN.pack(len(header)) + header + _LEN.pack(len(body)) + body
    sig = signer.sign(signed, CONTEXT)
    if len(sig) != SIG_LEN:
        raise InvalidArgument(f"the signer must produce {ALG} signatures ({SIG_LEN} bytes)")
    return signed + sig


def unpack(blob: bytes, trusted: Sequence[TrustedKey]) -> AgentArchive:
    """Verify and decode an archive signed by one of ``trusted``."""
    if not isinstance(blob, bytes) or not blob.startswith(MAGIC):
        raise InvalidArgument("not an AIOS agent archive")
    if len(blob) > MAX_ARCHIVE:
        raise IntegrityError(f"agent archive of {len(blob)} bytes exceeds {MAX_ARCHIVE}")
    pos = len(MAGIC)
    try:
        (hlen,) = _LEN.unpack_from(blob, pos)
        if hlen > MAX_HEADER:
            raise IntegrityError("agent archive header is too large")
        header = blob[pos + 4 : pos + 4 + hlen]
        pos += 4 + hlen
        (blen,) = _LEN.unpack_from(blob, pos)
        pos += 4
    except struct.error:
        raise IntegrityError("agent archive is truncated") from None
    if len(header) != hlen or len(blob) != pos + blen + SIG_LEN:
        raise IntegrityError("agent archive is truncated or has trailing bytes")
    try:
        meta = msgpack.unpackb(header, raw=False, max_str_len=MAX_HEADER, max_bin_len=0,
                               max_array_len=16, max_map_len=16)  # fmt: skip
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise IntegrityError("agent archive header is not readable") from None
    if not isinstance(meta, dict) or meta.get("alg") != ALG or not isinstance(meta.get("key"), str):
        raise IntegrityError(f"agent archive must be signed with {ALG}")
    keys = [k for k in trusted if k.name == meta["key"]]
    if not keys:
        raise IntegrityError(f"agent archive is signed by {meta['key']!r}, which is not trusted")
    signed, sig = blob[: pos + blen], blob[pos + blen :]
    if not any(pqc.verify(ALG, k.public_key, signed, sig, CONTEXT) for k in keys):
        raise IntegrityError("agent archive signature does not verify")
    try:
        (aid, name, entry, executor, opts, state, claims, namespaces, image, checkpoint,
         created) = msgpack.unpackb(signed[pos:], raw=False, strict_map_key=False)  # fmt: skip
        return AgentArchive(
            aid, name, entry, executor, opts, state,
            tuple(CapClaim(s, k, r, b, ref, tuple(lim) if lim is not None else None)
                  for s, k, r, b, ref, lim in claims),
            tuple((str(ns), int(rt)) for ns, rt in namespaces), image, checkpoint, created,
            signer=meta["key"],
        )  # fmt: skip
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise IntegrityError("agent archive body is malformed (though signed)") from None
