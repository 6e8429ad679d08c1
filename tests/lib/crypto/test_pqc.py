"""aios.lib.crypto.pqc: sizes per FIPS 203/204, tampering, contexts, the dispatcher."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.abi.errors import InvalidArgument
from aios.lib.crypto import pqc

KEM_SIZES = {"mlkem768": (1184, 1088), "mlkem1024": (1568, 1568)}
SIG_SIZES = {"mldsa44": (1312, 2420), "mldsa65": (1952, 3309), "mldsa87": (2592, 4627)}


def _flip(b: bytes, bit: int) -> bytes:
    i = bit // 8
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1 :]


@pytest.mark.parametrize("alg", list(KEM_SIZES))
def test_kem_sizes_round_trip_and_flipped_bit(alg: str) -> None:
    ek_len, ct_len = KEM_SIZES[alg]
    ek, seed = pqc.kem_keygen(alg)
    assert (len(ek), len(seed)) == (ek_len, 64)
    shared, ct = pqc.kem_encapsulate(alg, ek)
    assert (len(shared), len(ct)) == (32, ct_len)
    assert pqc.kem_decapsulate(alg, seed, ct) == shared
    for bit in (0, 7, 8 * ct_len // 2 + 3, 8 * ct_len - 1):
        other = pqc.kem_decapsulate(alg, seed, _flip(ct, bit))  # implicit rejection: no error
        assert len(other) == 32 and other != shared
    assert pqc.kem_keygen(alg, seed) == (ek, seed)


@pytest.mark.parametrize("alg", list(SIG_SIZES))
def test_sig_sizes_and_failures(alg: str) -> None:
    pk_len, sig_len = SIG_SIZES[alg]
    pk, seed = pqc.sig_keygen(alg)
    assert (len(pk), len(seed)) == (pk_len, 32)
    msg, ctx = b"attest this", b"aios/test"
    sig = pqc.sign(alg, seed, msg, ctx)
    assert len(sig) == sig_len
    assert pqc.verify(alg, pk, msg, sig, ctx)
    assert not pqc.verify(alg, pk, msg, sig, b"aios/other")
    assert not pqc.verify(alg, pk, msg, sig)  # empty context is a different context
    assert not pqc.verify(alg, pk, b"attest that", sig, ctx)
    for bit in (0, 8 * sig_len // 3, 8 * sig_len - 1):
        assert not pqc.verify(alg, pk, msg, _flip(sig, bit), ctx)
    assert not pqc.verify(alg, pk, msg, sig[:-1], ctx)
    other_pk, _ = pqc.sig_keygen(alg)
    assert not pqc.verify(alg, other_pk, msg, sig, ctx)
    assert pqc.verify(alg, pk, msg, pqc.sign(alg, seed, msg, b"x" * 255), b"x" * 255)
    with pytest.raises(InvalidArgument):
        pqc.sign(alg, seed, msg, b"x" * 256)
    with pytest.raises(InvalidArgument):
        pqc.verify(alg, pk, msg, sig, b"x" * 256)
    assert pqc.sig_keygen(alg, seed) == (pk, seed)


@pytest.mark.parametrize(
    "call",
    [
        lambda: pqc.kem_keygen("mlkem768", b"short"),
        lambda: pqc.kem_keygen("mlkem512"),
        lambda: pqc.kem_encapsulate("mlkem768", b"\x00" * 1183),
        lambda: pqc.kem_encapsulate("mlkem768", b"\xff" * 1184),  # coefficients not reduced mod q
        lambda: pqc.kem_decapsulate("mlkem768", b"\x00" * 64, b"\x00" * 1087),
        lambda: pqc.sig_keygen("mldsa65", b"\x00" * 31),
        lambda: pqc.verify("mldsa65", b"\x00" * 10, b"m", b"s"),
        lambda: pqc.sign("mldsa65", "not bytes", b"m"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_invalid_argument(call: object) -> None:
    with pytest.raises(InvalidArgument):
        call()  # type: ignore[operator]


def test_dispatcher_round_trips_every_algorithm() -> None:
    for alg in pqc.KEMS:
        kp = pqc.pqc_operation(f"{alg}.keygen", {})
        enc = pqc.pqc_operation(f"{alg}.encapsulate", {"public_key": kp["public_key"]})
        dec = pqc.pqc_operation(
            f"{alg}.decapsulate",
            {"private_key": kp["private_key"], "ciphertext": enc["ciphertext"]},
        )
        assert dec["shared_secret"] == enc["shared_secret"]
    for alg in pqc.SIGS:
        kp = pqc.pqc_operation(f"{alg}.keygen", {"seed": b"\x07" * 32})
        s = pqc.pqc_operation(
            f"{alg}.sign", {"private_key": kp["private_key"], "message": "hi", "context": b"c"}
        )
        args: dict[str, bytes | str] = {
            "public_key": kp["public_key"],
            "message": b"hi",
            "signature": s["signature"],
        }
        assert pqc.pqc_operation(f"{alg}.verify", {**args, "context": b"c"}) == {"valid": True}
        assert pqc.pqc_operation(f"{alg}.verify", args) == {"valid": False}
    assert set(pqc.OPERATIONS) == {
        f"{a}.{op}" for a in pqc.KEMS for op in ("keygen", "encapsulate", "decapsulate")
    } | {f"{a}.{op}" for a in pqc.SIGS for op in ("keygen", "sign", "verify")}


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("mlkem768.frobnicate", {}),
        ("mlkem768.encapsulate", {}),
        ("mlkem768.encapsulate", {"public_key": 5}),
        ("mlkem768.decapsulate", {"private_key": b"x" * 64, "ciphertext": b"short"}),
        ("mldsa65.sign", {"private_key": b"x" * 32, "message": b"m", "context": b"c" * 256}),
        ("mldsa65.verify", {"public_key": b"x", "message": b"m", "signature": b"s"}),
        ("mldsa65.keygen", {"seed": b"x"}),
        (42, {}),
    ],
)
def test_dispatcher_bad_input(op: str, args: dict[str, bytes | str]) -> None:
    with pytest.raises(InvalidArgument):
        pqc.pqc_operation(op, args)


def test_dispatcher_refuses_non_mapping() -> None:
    with pytest.raises(InvalidArgument):
        pqc.pqc_operation("mldsa65.keygen", None)  # type: ignore[arg-type]


_VALUES = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=16),
    st.sampled_from(
        [b"\x00" * 32, b"\x00" * 64, b"\x00" * 1088, b"\x00" * 1184, b"\x00" * 1952, b"x" * 256]
    ),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    op=st.one_of(st.sampled_from(sorted(pqc.OPERATIONS)), st.text(max_size=20)),
    args=st.dictionaries(
        st.sampled_from(
            ["seed", "public_key", "private_key", "ciphertext", "message", "context", "signature"]
        ),
        _VALUES,
        max_size=5,
    ),
)
def test_dispatcher_raises_only_invalid_argument(op: str, args: dict[str, bytes | str]) -> None:
    try:
        out = pqc.pqc_operation(op, args)
    except InvalidArgument:
        return
    assert isinstance(out, dict) and all(isinstance(v, bytes | bool) for v in out.values())
