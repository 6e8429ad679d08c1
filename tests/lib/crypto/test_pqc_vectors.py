"""NIST ACVP and C2SP Wycheproof vectors for aios.lib.crypto.pqc (every case the
``cryptography`` API can express; see ../shared/testdata/README.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aios.abi.errors import InvalidArgument
from aios.lib.crypto import pqc

KEM = {"ML-KEM-768": "mlkem768", "ML-KEM-1024": "mlkem1024"}
SIG = {"ML-DSA-44": "mldsa44", "ML-DSA-65": "mldsa65", "ML-DSA-87": "mldsa87"}
HASH_OID = {
    "SHA2-256": 0x01, "SHA2-384": 0x02, "SHA2-512": 0x03, "SHA2-224": 0x04,
    "SHA2-512/224": 0x05, "SHA2-512/256": 0x06, "SHA3-224": 0x07, "SHA3-256": 0x08,
    "SHA3-384": 0x09, "SHA3-512": 0x0A, "SHAKE-128": 0x0B, "SHAKE-256": 0x0C,
}  # fmt: skip


def _acvp(
    testdata: Path, name: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(group, prompt test, expected test) joined on (tgId, tcId)."""
    d = testdata / "acvp" / name
    prompt = json.loads((d / "prompt.json").read_text())
    expected = json.loads((d / "expectedResults.json").read_text())
    answers = {(g["tgId"], t["tcId"]): t for g in expected["testGroups"] for t in g["tests"]}
    for g in prompt["testGroups"]:
        for t in g["tests"]:
            yield g, t, answers[(g["tgId"], t["tcId"])]


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def _prehash(alg: str, msg: bytes) -> bytes:
    if alg == "SHAKE-128":
        return hashlib.shake_128(msg).digest(32)
    if alg == "SHAKE-256":
        return hashlib.shake_256(msg).digest(64)
    name = {"SHA2-512/224": "sha512_224", "SHA2-512/256": "sha512_256"}.get(alg)
    name = name or alg.replace("SHA2-", "sha").replace("SHA3-", "sha3_")
    return hashlib.new(name, msg).digest()


def _mu(pk: bytes, m_prime: bytes) -> bytes:
    tr = hashlib.shake_256(pk).digest(64)
    return hashlib.shake_256(tr + m_prime).digest(64)


def _verify_any(alg: str, group: dict[str, Any], t: dict[str, Any], pk: bytes, sig: bytes) -> bool:
    """Verify through whichever interface the ACVP group names."""
    key = pqc.sig_public_key(alg, pk)
    if group["signatureInterface"] == "internal":
        mu = _h(t["mu"]) if group.get("externalMu") else _mu(pk, _h(t["message"]))
    elif group["preHash"] == "pure":
        return pqc.verify(alg, pk, _h(t["message"]), sig, _h(t["context"]))
    else:
        ctx = _h(t["context"])
        oid = bytes.fromhex("0609608648016503040200")[:-1] + bytes([HASH_OID[t["hashAlg"]]])
        mu = _mu(
            pk, b"\x01" + bytes([len(ctx)]) + ctx + oid + _prehash(t["hashAlg"], _h(t["message"]))
        )
    try:
        key.verify_mu(sig, mu)
    except Exception:
        return False
    return True


# -- ML-KEM -------------------------------------------------------------------------


def test_acvp_mlkem_keygen(testdata: Path) -> None:
    n = 0
    for g, t, want in _acvp(testdata, "ML-KEM-keyGen-FIPS203"):
        if g["parameterSet"] not in KEM:
            continue
        alg = KEM[g["parameterSet"]]
        ek, _seed = pqc.kem_keygen(alg, _h(t["d"]) + _h(t["z"]))
        assert ek == _h(want["ek"]), t["tcId"]
        k = 3 if alg == "mlkem768" else 4
        assert _h(want["dk"])[384 * k :] == ek + hashlib.sha3_256(ek).digest() + _h(t["z"])
        n += 1
    assert n == 50


@pytest.mark.parametrize("name", ["ML-KEM-encapDecap-FIPS203", "ML-KEM-encapDecap-FIPS203-tr1"])
def test_acvp_mlkem_encapdecap(testdata: Path, name: str) -> None:
    counts = {"decap": 0, "ekcheck": 0, "ekimport": 0}
    for g, t, want in _acvp(testdata, name):
        alg = KEM.get(g["parameterSet"])
        if alg is None:
            continue
        fn = g["function"]
        if fn == "decapsulation" and g.get("keyFormat") == "seed":
            k = pqc.kem_decapsulate(alg, _h(t["d"]) + _h(t["z"]), _h(t["c"]))
            assert k == _h(want["k"]), t["tcId"]
            counts["decap"] += 1
        elif fn == "encapsulationKeyCheck":
            try:
                pqc.kem_public_key(alg, _h(t["ek"]))
                ok = True
            except InvalidArgument:
                ok = False
            assert ok is want["testPassed"], t["tcId"]
            counts["ekcheck"] += 1
        elif fn == "encapsulation":
            shared, ct = pqc.kem_encapsulate(alg, _h(t["ek"]))
            assert len(ct) == len(_h(want["c"])) and len(shared) == 32
            counts["ekimport"] += 1
    assert counts["ekcheck"] == 20 and counts["ekimport"] == 50
    assert counts["decap"] == (20 if name.endswith("tr1") else 0)


@pytest.mark.parametrize("bits", ["768", "1024"])
def test_wycheproof_mlkem(testdata: Path, bits: str) -> None:
    alg = f"mlkem{bits}"
    data = json.loads((testdata / "wycheproof" / f"mlkem_{bits}_test.json").read_text())
    n = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            n += 1
            try:
                ek, seed = pqc.kem_keygen(alg, _h(t["seed"]))
                k = pqc.kem_decapsulate(alg, seed, _h(t["c"]))
            except InvalidArgument:
                assert t["result"] == "invalid", t["tcId"]
                continue
            assert t["result"] == "valid", t["tcId"]
            assert ek == _h(t["ek"]) and k == _h(t["K"]), t["tcId"]
    assert n == data["numberOfTests"]


@pytest.mark.parametrize("bits", ["768", "1024"])
def test_wycheproof_mlkem_keygen_and_encaps(testdata: Path, bits: str) -> None:
    alg = f"mlkem{bits}"
    kg = json.loads((testdata / "wycheproof" / f"mlkem_{bits}_keygen_seed_test.json").read_text())
    for g in kg["testGroups"]:
        for t in g["tests"]:
            assert pqc.kem_keygen(alg, _h(t["seed"]))[0] == _h(t["ek"]), t["tcId"]
    enc = json.loads((testdata / "wycheproof" / f"mlkem_{bits}_encaps_test.json").read_text())
    for g in enc["testGroups"]:
        for t in g["tests"]:
            try:
                pqc.kem_public_key(alg, _h(t["ek"]))
                accepted = True
            except InvalidArgument:
                accepted = False
            assert accepted is (t["result"] == "valid"), t["tcId"]


# -- ML-DSA -------------------------------------------------------------------------


def test_acvp_mldsa_keygen(testdata: Path) -> None:
    n = 0
    for g, t, want in _acvp(testdata, "ML-DSA-keyGen-FIPS204"):
        pk, _seed = pqc.sig_keygen(SIG[g["parameterSet"]], _h(t["seed"]))
        assert pk == _h(want["pk"]), t["tcId"]
        n += 1
    assert n == 75


def test_acvp_mldsa_sigver(testdata: Path) -> None:
    n = 0
    for g, t, want in _acvp(testdata, "ML-DSA-sigVer-FIPS204"):
        alg = SIG[g["parameterSet"]]
        assert _verify_any(alg, g, t, _h(t["pk"]), _h(t["signature"])) is want["testPassed"], t[
            "tcId"
        ]
        n += 1
    assert n == 180


def test_acvp_mldsa_siggen_seed_groups(testdata: Path) -> None:
    """Seed groups: derive the key, verify the expected signature; round-trip pure ones."""
    n = 0
    for g, t, want in _acvp(testdata, "ML-DSA-sigGen-FIPS204-tr1"):
        if g["keyFormat"] != "seed":
            continue
        alg = SIG[g["parameterSet"]]
        pk, seed = pqc.sig_keygen(alg, _h(t["seed"]))
        sig = _h(want["signature"])
        assert len(sig) == pqc.SIGS[alg].signature_len
        assert _verify_any(alg, g, t, pk, sig), t["tcId"]
        if g["signatureInterface"] == "external" and g["preHash"] == "pure":
            own = pqc.sign(alg, seed, _h(t["message"]), _h(t["context"]))
            assert pqc.verify(alg, pk, _h(t["message"]), own, _h(t["context"]))
        n += 1
    assert n == 360


@pytest.mark.parametrize("level", ["44", "65", "87"])
def test_wycheproof_mldsa_verify(testdata: Path, level: str) -> None:
    alg = f"mldsa{level}"
    data = json.loads((testdata / "wycheproof" / f"mldsa_{level}_verify_test.json").read_text())
    n = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            n += 1
            try:
                ok = pqc.verify(
                    alg, _h(g["publicKey"]), _h(t["msg"]), _h(t["sig"]), _h(t.get("ctx", ""))
                )
            except InvalidArgument:
                ok = False
            assert ok is (t["result"] == "valid"), (t["tcId"], t["comment"])
    assert n == data["numberOfTests"]


@pytest.mark.parametrize("level", ["44", "65", "87"])
def test_wycheproof_mldsa_sign_seed(testdata: Path, level: str) -> None:
    alg = f"mldsa{level}"
    data = json.loads((testdata / "wycheproof" / f"mldsa_{level}_sign_seed_test.json").read_text())
    for g in data["testGroups"]:
        seed = _h(g["privateSeed"])
        if g["publicKey"] is None:
            with pytest.raises(InvalidArgument):
                pqc.sig_keygen(alg, seed)
            continue
        pk, _ = pqc.sig_keygen(alg, seed)
        assert pk == _h(g["publicKey"])
        key = pqc.sig_public_key(alg, pk)
        for t in g["tests"]:
            if "mu" not in t:  # context over 255 bytes: signing must fail
                assert t["result"] == "invalid"
                with pytest.raises(InvalidArgument):
                    pqc.sign(alg, seed, _h(t["msg"]), _h(t["ctx"]))
                continue
            key.verify_mu(_h(t["sig"]), _h(t["mu"]))
            if "msg" in t:
                ctx = _h(t.get("ctx", ""))
                assert pqc.verify(alg, pk, _h(t["msg"]), _h(t["sig"]), ctx), t["tcId"]
                assert pqc.verify(
                    alg, pk, _h(t["msg"]), pqc.sign(alg, seed, _h(t["msg"]), ctx), ctx
                )
