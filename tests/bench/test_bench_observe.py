"""Smoke test: ``aios bench observe`` runs the three kernels and reports its headline keys."""

from __future__ import annotations

from aios.bench import load


def test_bench_observe_small() -> None:
    out = load("observe")(["--rounds", "2", "--null-batches", "2", "--call-batches", "1"])
    for key in ("metrics_overhead_ratio", "tracing_overhead_ratio", "metrics_null_ratio", "metrics_call_ratio",
                "tracing_null_ratio", "tracing_call_ratio", "off_null_p10_ns", "off_call_rtt_p10_ns"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["metrics_overhead_ratio"] == max(out["metrics_null_ratio"], out["metrics_call_ratio"])
    assert out["metrics_scrapes"] == 2  # the metrics kernel was scraped during each round
    assert out["tracing_provider"] == "sdk-batch" and out["trace_sample_ratio"] == 0.01


def test_syscall_and_ipc_benches_report_the_overhead_ratios() -> None:
    sc = load("syscall")(["--batches", "20", "--no-xproc"])
    ipc = load("ipc")(["--senders", "2", "--receivers", "2", "--messages", "2048", "--batch", "256"])
    for out in (sc, ipc):
        for key in ("metrics_overhead_ratio", "tracing_overhead_ratio"):
            assert isinstance(out[key], float) and out[key] > 0, key
    assert "metrics_overhead_ratio" not in load("syscall")(["--batches", "10", "--no-xproc", "--no-observe"])
