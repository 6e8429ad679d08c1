"""`aios up --metrics` / `--trace` against a real daemon: loopback enforced before anything
starts, a scrape agrees with `aios status`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families


def aios(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOS_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "aios.cli.main", *args], env=env, capture_output=True,
                       text=True, timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"aios {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


@pytest.mark.parametrize("args", [["--metrics", "0.0.0.0:9464"], ["--metrics", "192.0.2.7:1"],
                                  ["--trace", "1.5"], ["--metrics", "nonsense"]])
def test_up_refuses_before_starting(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "home"
    r = aios(home, "up", "-d", *args, check=False)
    assert r.returncode == 1 and "error: [EINVAL]" in r.stderr
    if "0.0.0.0" in args[-1]:
        assert "--metrics-allow-remote" in r.stderr
    assert not (home / "kernel.sock").exists() and not (home / "kernel.pid").exists()


def test_metrics_daemon_agrees_with_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    aios(home, "up", "-d", "--metrics", f"127.0.0.1:{port}", "--trace", "0.01")
    try:
        first = scrape(port)
        st = json.loads(aios(home, "status", "-o", "json").stdout)
        second = scrape(port)
    finally:
        aios(home, "down", check=False)
    d = ("aios_kernel_dispatches_total", ())
    assert first[d] <= st["dispatches"] <= second[d]
    assert first[("aios_kernel_panics_total", ())] == st["panics"] == second[("aios_kernel_panics_total", ())]
    # `aios status` was one console agent: spawned, ran its syscalls, exited
    console = ("aios_agents_spawned_total", (("executor", "console"),))
    assert second[console] == first.get(console, 0) + 1
    ok = ("aios_syscalls_total", (("result", "ok"), ("syscall", "KERNEL_STATS")))
    assert second[ok] == first.get(ok, 0) + 1
    assert second[("aios_audit_appends_total", ())] >= first[("aios_audit_appends_total", ())] > 0
    assert ("aios_audit_checkpoint_age_seconds", ()) in second
    assert second[("aios_memoryd_namespaces", ())] >= 0  # status opened the store: its totals appear
