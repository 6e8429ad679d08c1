"""Smoke tests: ``aios bench audit`` and ``aios bench pqc`` run and report their keys."""

from __future__ import annotations

from aios.bench import load


def test_bench_audit_small() -> None:
    out = load("audit")(["--n", "3000", "--batch", "256", "--proofs", "50"])
    for key in (
        "durable_appends_per_s",
        "baseline_sqlite_rows_per_s",
        "ratio",
        "verify_s",
        "proof_us",
    ):
        assert isinstance(out[key], int | float) and out[key] > 0, key
    assert out["entries"] == 3000 and "verify_1m_s" not in out


def test_bench_pqc_small() -> None:
    out = load("pqc")(["--seconds", "0.005"])
    for alg in ("mlkem768", "mlkem1024"):
        for op in ("keygen", "encapsulate", "decapsulate"):
            assert out[f"{alg}_{op}_per_s"] > 0
    for alg in ("mldsa44", "mldsa65", "mldsa87"):
        for op in ("keygen", "sign", "verify"):
            assert out[f"{alg}_{op}_per_s"] > 0
