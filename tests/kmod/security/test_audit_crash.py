"""Crash: SIGKILL a kernel with a home while agents generate audited events.

A subprocess boots a real kernel (real clock, audit commit thread) and runs
agents that spawn children, fail capability checks and grant capabilities.
Each time a batch commits it prints ``ACK <size> <root hex>``.  The test
kills it with SIGKILL at a random moment, restarts it on the same home, and
after every kill checks that the log verifies and that the tree at every
acknowledged size has exactly the root the kernel printed: every
acknowledged entry is present and unchanged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from lines import LineReader
from typer.testing import CliRunner

from aios.cli import audit as audit_cli
from aios.lib.audit.log import LogReader
from aios.lib.paths import audit_db_path

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import sys
from pathlib import Path
from aios.host import run_async, run_sync, start_kernel
from aios.abi.rights import Rights

home = Path(sys.argv[1])
# behavior off: the scripted capability errors would get the workers suspended
k = start_kernel(arena_bytes=1 << 24, home=home, audit_flush_ms=2, behavior=False)
from aios.kmod.security.glue import security_of
log = security_of(k).node.log

def acked(size):
    print(f"ACK {size} {log.root(size).hex()}", flush=True)

log.on_commit.append(acked)

async def leaf(ctx):
    return None

async def worker(ctx):
    for i in range(100000):
        h = await ctx.spawn(leaf)
        await ctx.wait(h.aid)
        try:
            await ctx.send(999, b"x")  # a capability error: security.violation
        except Exception:
            pass
        if i % 8 == 0:
            await ctx.sleep(0.001)

run_sync(run_async(k, worker, worker))
"""


def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {**os.environ, "PYTHONPATH": str(SRC), "AIOS_HOME": str(home)}
    rng = random.Random(5)
    acks: dict[int, str] = {}
    for rnd in range(4):
        err_path = tmp_path / f"kernel-{rnd}.err"
        with err_path.open("w") as err, subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home)], env=env, stdout=subprocess.PIPE, stderr=err, text=True
        ) as p:
            assert p.stdout is not None
            lines = LineReader(p.stdout)
            deadline = time.monotonic() + 60
            seen = 0
            kill_after = rng.randint(3, 40)
            try:
                while seen < kill_after:
                    line = lines.next(deadline, f"acknowledgement {seen + 1} of {kill_after} in round {rnd}")
                    assert line is not None, f"the kernel ended before it was killed: {err_path.read_text()[-2000:]}"
                    if line.startswith("ACK "):
                        _, size, root = line.split()
                        acks[int(size)] = root
                        seen += 1
            finally:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        assert p.returncode == -signal.SIGKILL, "the kernel ended before it was killed"
        r = LogReader.open(audit_db_path(home))
        size = r.size()
        assert size >= max(acks)
        for s, root in acks.items():
            assert r.root(s).hex() == root, s
        r.conn.close()
        res = CliRunner().invoke(audit_cli.app, ["verify", "-o", "json"], env={"AIOS_HOME": str(home)})
        assert res.exit_code == 0, res.output
    assert len(acks) >= 4
