"""The kernel daemon and its clients, end to end: ``aios up -d`` ... ``aios down``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aioscli import aios
from lines import LineReader


@pytest.fixture
def daemon(tmp_path: Path):
    home = tmp_path / "home"
    aios(home, "up", "-d")
    yield home
    aios(home, "down", check=False)


def test_daemon_lifecycle_and_clients(daemon: Path) -> None:
    home = daemon
    sock = home / "kernel.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    again = aios(home, "up", "-d", check=False)
    assert again.returncode == 1 and "already running" in again.stderr

    st = json.loads(aios(home, "status", "-o", "json").stdout)
    assert st["agents_live"] >= 2 and "landlock_abi" in st["protections"]
    assert st["audit"]["pending"] >= 0 and st["audit"]["pending_capacity"] > 0  # the audit backlog
    assert st["embedder"].startswith("minilm")

    iso = json.loads(aios(home, "spawn", "aios.demos.remote_agents:echo", "--executor", "isolated",
                          "--name", "iso", "-o", "json").stdout)
    inp = json.loads(aios(home, "spawn", "aios.demos.remote_agents:echo", "--name", "inp", "-o", "json").stdout)
    rows = json.loads(aios(home, "ps", "-o", "json").stdout)
    names = {r["aid"]: (r["name"], r["state"]) for r in rows}
    assert names[iso["aid"]][0] == "iso" and names[inp["aid"]][0] == "inp"
    prot = next(r for r in rows if r["aid"] == iso["aid"])["protections"]
    assert "landlock" in prot and "seccomp" in prot and "netns" in prot

    assert "sent 2 bytes" in aios(home, "send", str(inp["aid"]), "hi").stdout
    sched = json.loads(aios(home, "sched", "-o", "json").stdout)
    assert any(r["aid"] == inp["aid"] and r["class"] == "fair" for r in sched)

    aios(home, "kill", str(iso["aid"]))
    rows = json.loads(aios(home, "ps", "-o", "json").stdout)
    assert iso["aid"] not in {r["aid"] for r in rows if r["state"] != "dead"}
    bad = aios(home, "kill", "99999", check=False)
    assert bad.returncode == 1 and "ESRCH" in bad.stderr

    # follow the bus from another client while this one spawns: the spawn command's own
    # console and then the new agent are announced
    env = {**os.environ, "AIOS_HOME": str(home)}
    follower = subprocess.Popen([sys.executable, "-m", "aios.cli.main", "events", "agent.lifecycle.spawned",
                                 "-n", "6", "-o", "json", "--all", "--tail", "0"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    assert follower.stderr is not None
    said = LineReader(follower.stderr).next(time.monotonic() + 60, "the follower's subscription")
    assert said is not None and said.startswith("following agent.lifecycle.spawned")  # subscribed
    aios(home, "spawn", "aios.demos.remote_agents:echo", "--name", "late")
    for _ in range(6):  # every client is a console agent: each ps is one more spawn event
        if follower.poll() is not None:
            break
        aios(home, "ps")
    out, _ = follower.communicate(timeout=60)
    seen = [json.loads(line)["data"]["name"] for line in out.splitlines()]
    assert len(seen) == 6 and "late" in seen


def test_down_stops_and_cleans_up(tmp_path: Path) -> None:
    home = tmp_path / "h2"
    aios(home, "up", "-d")
    assert (home / "kernel.pid").exists()
    aios(home, "down")
    assert not (home / "kernel.sock").exists() and not (home / "kernel.pid").exists()
    r = aios(home, "ps", check=False)
    assert r.returncode == 2 and "no kernel is running" in r.stderr


def test_operator_hooks_reach_the_kernel(daemon: Path) -> None:
    home = daemon
    r = json.loads(aios(home, "policy", "reload", "-o", "json").stdout)
    assert r["ok"] is True and "generation" in r
    iso = json.loads(aios(home, "spawn", "aios.demos.remote_agents:echo", "-o", "json").stdout)
    out = aios(home, "agent", "resume", str(iso["aid"]), "-o", "json")
    assert json.loads(out.stdout) == []  # nothing was in force to reverse
    bad = aios(home, "agent", "resume", "424242", check=False)
    assert bad.returncode == 1 and "ESRCH" in bad.stderr
