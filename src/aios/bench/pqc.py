"""``aios bench pqc``: operations per second of every ML-KEM and ML-DSA operation.

Each operation runs through :mod:`aios.lib.crypto.pqc` (the code the
``PQCOperation`` syscall calls, argument checks included) for about
``--seconds`` of wall time.  Classical baselines in the same run: X25519 key
exchange against ML-KEM-768 encapsulation, Ed25519 sign/verify against
ML-DSA-65, with ratios; plus one full hybrid handshake (ML-KEM-768 + X25519).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from aios.lib.crypto import hybrid, pqc


def _rate(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(8):
            fn()
        n += 8
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="aios bench pqc")
    ap.add_argument("--seconds", type=float, default=0.4, help="time per operation")
    args = ap.parse_args(argv)
    s = args.seconds
    msg = b"m" * 256
    out: dict[str, Any] = {}

    for alg in pqc.KEMS:
        ek, seed = pqc.kem_keygen(alg)
        _ss, ct = pqc.kem_encapsulate(alg, ek)
        out[f"{alg}_keygen_per_s"] = round(_rate(partial(pqc.kem_keygen, alg), s))
        out[f"{alg}_encapsulate_per_s"] = round(_rate(partial(pqc.kem_encapsulate, alg, ek), s))
        out[f"{alg}_decapsulate_per_s"] = round(
            _rate(partial(pqc.kem_decapsulate, alg, seed, ct), s)
        )

    for alg in pqc.SIGS:
        pk, seed = pqc.sig_keygen(alg)
        sig = pqc.sign(alg, seed, msg, b"ctx")
        out[f"{alg}_keygen_per_s"] = round(_rate(partial(pqc.sig_keygen, alg), s))
        out[f"{alg}_sign_per_s"] = round(_rate(partial(pqc.sign, alg, seed, msg, b"ctx"), s))
        out[f"{alg}_verify_per_s"] = round(_rate(partial(pqc.verify, alg, pk, msg, sig, b"ctx"), s))

    ed = ed25519.Ed25519PrivateKey.generate()
    ed_sig = ed.sign(msg)
    ed_pub = ed.public_key()
    out["ed25519_sign_per_s"] = round(_rate(lambda: ed.sign(msg), s))
    out["ed25519_verify_per_s"] = round(_rate(lambda: ed_pub.verify(ed_sig, msg), s))
    peer = x25519.X25519PrivateKey.generate().public_key()
    out["x25519_exchange_per_s"] = round(
        _rate(lambda: x25519.X25519PrivateKey.generate().exchange(peer), s)
    )
    out["mldsa65_sign_vs_ed25519"] = round(out["mldsa65_sign_per_s"] / out["ed25519_sign_per_s"], 3)
    out["mldsa65_verify_vs_ed25519"] = round(
        out["mldsa65_verify_per_s"] / out["ed25519_verify_per_s"], 3
    )
    out["mlkem768_encapsulate_vs_x25519"] = round(
        out["mlkem768_encapsulate_per_s"] / out["x25519_exchange_per_s"], 3
    )

    kp = hybrid.hybrid_keygen()

    def handshake() -> None:
        _keys, enc = hybrid.hybrid_encapsulate(kp.public)
        hybrid.hybrid_decapsulate(kp, enc)

    out["hybrid_handshake_per_s"] = round(_rate(handshake, s))
    return out
