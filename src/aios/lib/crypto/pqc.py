"""Post-quantum primitives: ML-KEM (FIPS 203) and ML-DSA (FIPS 204).

Design
------
This module is a thin, strict wrapper over ``cryptography``'s hazmat
``mlkem`` and ``mldsa`` modules.  It exists for three reasons:

1. **Raw bytes at the boundary.**  Agents reach crypto through the
   ``PQCOperation`` syscall, whose arguments cross the trap ABI as msgpack.
   So every operation here takes and returns plain ``bytes``: a public key
   is its FIPS encoding (``ek`` / ``pk``), and a private key is its *seed*
   (64 bytes ``d || z`` for ML-KEM, 32 bytes ``xi`` for ML-DSA).  Seeds are
   the compact, canonical private form that both FIPS documents allow and
   the only private form ``cryptography`` imports; expanded keys never leave
   the library.

2. **One error type.**  Whatever an agent sends (wrong length, a key that is
   not reduced mod q, a context over 255 bytes, a string where bytes were
   expected), the answer is :class:`~aios.abi.errors.InvalidArgument` and no
   other exception escapes.  A signature that does not verify is *not* an
   error: ``verify`` answers ``False``.  A decapsulation of a tampered
   ciphertext is not an error either: ML-KEM's implicit rejection returns a
   pseudo-random key, and the caller learns of the tampering only when the
   keys disagree.

3. **A dispatch table.**  :func:`pqc_operation` maps op names such as
   ``"mlkem768.encapsulate"`` or ``"mldsa65.sign"`` to the functions below,
   so the kernel's async syscall needs one call in a worker thread.  The
   table is literal and complete; the op names are the public contract.

Sizes (bytes), FIPS 203 table 3 and FIPS 204 table 2::

                 ek/pk   ct/sig   seed  shared
    ML-KEM-768    1184     1088     64      32
    ML-KEM-1024   1568     1568     64      32
    ML-DSA-44     1312     2420     32       -
    ML-DSA-65     1952     3309     32       -
    ML-DSA-87     2592     4627     32       -

ML-KEM-512 is absent because ``cryptography`` does not ship it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from aios.abi.errors import InvalidArgument

MAX_CONTEXT: Final = 255
MAX_MESSAGE: Final = 16 << 20  # bytes signed in one PQCOperation


@dataclass(frozen=True, slots=True)
class KemParams:
    """One ML-KEM parameter set."""

    name: str
    public_len: int
    ciphertext_len: int
    priv_cls: Any
    pub_cls: Any
    seed_len: int = 64
    shared_len: int = 32


@dataclass(frozen=True, slots=True)
class SigParams:
    """One ML-DSA parameter set."""

    name: str
    public_len: int
    signature_len: int
    priv_cls: Any
    pub_cls: Any
    seed_len: int = 32


KEMS: Final[dict[str, KemParams]] = {
    "mlkem768": KemParams(
        "ML-KEM-768", 1184, 1088, mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey
    ),
    "mlkem1024": KemParams(
        "ML-KEM-1024", 1568, 1568, mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey
    ),
}

SIGS: Final[dict[str, SigParams]] = {
    "mldsa44": SigParams("ML-DSA-44", 1312, 2420, mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "mldsa65": SigParams("ML-DSA-65", 1952, 3309, mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "mldsa87": SigParams("ML-DSA-87", 2592, 4627, mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}


def _kem(alg: str) -> KemParams:
    try:
        return KEMS[alg]
    except KeyError:
        raise InvalidArgument(f"unknown KEM {alg!r} (have {', '.join(KEMS)})") from None


def _sig(alg: str) -> SigParams:
    try:
        return SIGS[alg]
    except KeyError:
        raise InvalidArgument(
            f"unknown signature scheme {alg!r} (have {', '.join(SIGS)})"
        ) from None


def as_bytes(
    value: object, what: str, length: int | None = None, max_len: int | None = None
) -> bytes:
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise InvalidArgument(f"{what} must be bytes, not {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InvalidArgument(f"{what} must be {length} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise InvalidArgument(f"{what} is {len(value)} bytes, at most {max_len} allowed")
    return value


# -- ML-KEM --------------------------------------------------------------------


def kem_keygen(alg: str, seed: bytes | None = None) -> tuple[bytes, bytes]:
    """A key pair ``(public ek, private seed d||z)``; random unless ``seed`` is given."""
    p = _kem(alg)
    seed = os.urandom(p.seed_len) if seed is None else as_bytes(seed, "ML-KEM seed", p.seed_len)
    priv = p.priv_cls.from_seed_bytes(seed)
    return priv.public_key().public_bytes_raw(), seed


def kem_public_key(alg: str, public: bytes) -> Any:
    """Import an encapsulation key; an ill-formed one (wrong size, not mod q) is refused."""
    p = _kem(alg)
    public = as_bytes(public, f"{p.name} public key", p.public_len)
    try:
        return p.pub_cls.from_public_bytes(public)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {p.name} public key: {exc}") from None


def kem_encapsulate(alg: str, public: bytes) -> tuple[bytes, bytes]:
    """``(shared secret, ciphertext)`` for the holder of ``public``."""
    shared, ct = kem_public_key(alg, public).encapsulate()
    return bytes(shared), bytes(ct)


def kem_decapsulate(alg: str, seed: bytes, ciphertext: bytes) -> bytes:
    """The shared secret in ``ciphertext``.  A tampered ciphertext of the right
    length yields an unrelated key (implicit rejection), not an error."""
    p = _kem(alg)
    seed = as_bytes(seed, "ML-KEM seed", p.seed_len)
    ciphertext = as_bytes(ciphertext, f"{p.name} ciphertext", p.ciphertext_len)
    try:
        return bytes(p.priv_cls.from_seed_bytes(seed).decapsulate(ciphertext))
    except ValueError as exc:
        raise InvalidArgument(f"{p.name} decapsulation refused: {exc}") from None


# -- ML-DSA --------------------------------------------------------------------


def sig_keygen(alg: str, seed: bytes | None = None) -> tuple[bytes, bytes]:
    """A key pair ``(public pk, private seed xi)``; random unless ``seed`` is given."""
    p = _sig(alg)
    seed = os.urandom(p.seed_len) if seed is None else as_bytes(seed, "ML-DSA seed", p.seed_len)
    return p.priv_cls.from_seed_bytes(seed).public_key().public_bytes_raw(), seed


def sig_private_key(alg: str, seed: bytes) -> Any:
    """The library key object for ``seed`` (for callers that sign repeatedly)."""
    p = _sig(alg)
    return p.priv_cls.from_seed_bytes(as_bytes(seed, "ML-DSA seed", p.seed_len))


def sig_public_key(alg: str, public: bytes) -> Any:
    p = _sig(alg)
    public = as_bytes(public, f"{p.name} public key", p.public_len)
    try:
        return p.pub_cls.from_public_bytes(public)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {p.name} public key: {exc}") from None


def _context(context: bytes) -> bytes:
    return as_bytes(context, "context", max_len=MAX_CONTEXT)


def sign(alg: str, seed: bytes, message: bytes, context: bytes = b"") -> bytes:
    """Hedged ML-DSA signature over ``message`` in ``context`` (0..255 bytes)."""
    context = _context(context)
    message = as_bytes(message, "message", max_len=MAX_MESSAGE)
    key = sig_private_key(alg, seed)
    return bytes(key.sign(message, context))


def sign_with(key: Any, message: bytes, context: bytes = b"") -> bytes:
    """Sign with an already imported private key object."""
    return bytes(key.sign(as_bytes(message, "message"), _context(context)))


def verify(alg: str, public: bytes, message: bytes, signature: bytes, context: bytes = b"") -> bool:
    """True iff ``signature`` is valid; malformed keys or arguments raise."""
    p = _sig(alg)
    context = _context(context)
    message = as_bytes(message, "message", max_len=MAX_MESSAGE)
    signature = as_bytes(signature, "signature")
    key = sig_public_key(alg, public)
    if len(signature) != p.signature_len:
        return False
    try:
        key.verify(signature, message, context)
    except InvalidSignature:
        return False
    return True


# -- the PQCOperation dispatcher -------------------------------------------------

Args = dict[str, bytes | str]
Result = dict[str, bytes | bool]


def _arg(args: Args, name: str, required: bool = True) -> bytes | None:
    if name not in args:
        if required:
            raise InvalidArgument(f"missing argument {name!r}")
        return None
    value = args[name]
    if isinstance(value, str):
        value = value.encode()
    return as_bytes(value, name)


def _need(args: Args, name: str) -> bytes:
    value = _arg(args, name)
    assert value is not None
    return value


def _kem_ops(alg: str) -> dict[str, Callable[[Args], Result]]:
    def keygen(a: Args) -> Result:
        pub, seed = kem_keygen(alg, _arg(a, "seed", required=False))
        return {"public_key": pub, "private_key": seed}

    def encapsulate(a: Args) -> Result:
        shared, ct = kem_encapsulate(alg, _need(a, "public_key"))
        return {"shared_secret": shared, "ciphertext": ct}

    def decapsulate(a: Args) -> Result:
        return {
            "shared_secret": kem_decapsulate(alg, _need(a, "private_key"), _need(a, "ciphertext"))
        }

    return {
        f"{alg}.keygen": keygen,
        f"{alg}.encapsulate": encapsulate,
        f"{alg}.decapsulate": decapsulate,
    }


def _sig_ops(alg: str) -> dict[str, Callable[[Args], Result]]:
    def keygen(a: Args) -> Result:
        pub, seed = sig_keygen(alg, _arg(a, "seed", required=False))
        return {"public_key": pub, "private_key": seed}

    def sign_op(a: Args) -> Result:
        ctx = _arg(a, "context", required=False) or b""
        return {"signature": sign(alg, _need(a, "private_key"), _need(a, "message"), ctx)}

    def verify_op(a: Args) -> Result:
        ctx = _arg(a, "context", required=False) or b""
        ok = verify(alg, _need(a, "public_key"), _need(a, "message"), _need(a, "signature"), ctx)
        return {"valid": ok}

    return {f"{alg}.keygen": keygen, f"{alg}.sign": sign_op, f"{alg}.verify": verify_op}


OPERATIONS: Final[dict[str, Callable[[Args], Result]]] = {
    **_kem_ops("mlkem768"),
    **_kem_ops("mlkem1024"),
    **_sig_ops("mldsa44"),
    **_sig_ops("mldsa65"),
    **_sig_ops("mldsa87"),
}


def pqc_operation(op: str, args: dict[str, bytes | str]) -> dict[str, bytes | bool]:
    """Run one named PQC operation (the ``PQCOperation`` syscall body).

    Argument and result keys: ``seed``, ``public_key``, ``private_key`` (the
    seed), ``ciphertext``, ``shared_secret``, ``message``, ``context``,
    ``signature``, ``valid``.  Any bad input raises ``InvalidArgument``.
    """
    if not isinstance(op, str) or op not in OPERATIONS:
        raise InvalidArgument(f"unknown PQC operation {op!r}")
    if not isinstance(args, dict):
        raise InvalidArgument("PQC arguments must be a mapping")
    try:
        return OPERATIONS[op](args)
    except InvalidArgument:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"{op}: {exc}") from None
