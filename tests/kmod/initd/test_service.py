"""initd on a real kernel: units' agents spawned, their exits fed back, Restart= applied.

The engine's semantics are tested in ``test_core.py`` against a simulated kernel; these tests
check the wiring: real agents, real exits, the ready call and the watchdog through
``UNIT_NOTIFY``, the start limit, ``reset-failed`` and the operator syscalls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aios.abi.errors import NoSuchObject, PermissionDenied
from aios.host import spawn_root
from aios.kernel.kernel import Kernel
from aios.kmod.initd.service import INITD
from aios.sdk import Context
from aios.sdk import syscalls as sc

Step = tuple[Callable[[], object] | None, Callable[[], bool]]


def drive(k: Kernel, steps: list[Step], timeout: float = 60.0) -> None:
    """Run the kernel once: for each step, do its action (on the kernel's thread), then wait
    (polling with a deadline) until its condition holds."""

    async def main() -> None:
        task = asyncio.create_task(k.run())
        try:
            for action, cond in steps:
                if action is not None:
                    action()
                deadline = time.monotonic() + timeout
                while not cond():
                    assert not task.done() and time.monotonic() < deadline, "timed out"
                    await asyncio.sleep(0.005)
        finally:
            k.stop()
            await task

    asyncio.run(main())


def write(home: Path, name: str, text: str) -> None:
    (home / "units").mkdir(parents=True, exist_ok=True)
    (home / "units" / f"{name}.toml").write_text(text)


# a unit whose agent fails at once: exit 1
CRASHER = """
[Service]
Type = "simple"
Entry = "aios.kmod.initd.testing:fail"
Restart = "on-failure"
RestartSec = "10ms"
"""


def boot(tmp_path: Path) -> Kernel:
    from aios.boot import BootConfig, _core
    from aios.host import load_entry
    from aios.kmod.initd.service import install

    cfg = BootConfig(loader=load_entry, initd=True)
    cfg.home = tmp_path  # units from tmp_path/units; no other step uses it here
    k = _core(cfg)
    from aios.boot import STEPS

    for step in STEPS:
        if step.__name__ not in ("_security", "_initd", "_journal"):
            step(k, cfg)
    install(k, cfg)
    return k


def test_boot_reaches_operational_and_restart_on_failure_hits_the_start_limit(tmp_path: Path) -> None:
    write(tmp_path, "identityd.service", """
[Unit]
After = ["init.target"]
[Service]
Type = "notify"
Entry = "aios.kmod.initd.agents:memoryd"
WatchdogSec = "30s"
[Install]
RequiredBy = ["services.target"]
""")
    write(tmp_path, "crasher.service", CRASHER)
    k = boot(tmp_path)
    try:
        svc = k.ext[INITD]
        state = lambda n: svc.row(n)["state"]  # noqa: E731
        aid: dict[str, int] = {}
        drive(k, [
            (None, lambda: state("operational.target") == "active"),
            # crasher exits 1 each time: restarted until the sixth start within 10 s
            (lambda: svc.command("start", "crasher.service"), lambda: state("crasher.service") == "failed"),
            (lambda: aid.setdefault("m", svc.row("memoryd.service")["agent"]), lambda: True),
            # a stop ends the agent (SIGTERM) and what binds to it; nothing restarts
            (lambda: svc.command("stop", "memoryd.service"),
             lambda: state("memoryd.service") == "inactive" and state("semantic-ipcd.service") == "inactive"),
        ])  # fmt: skip
        row = svc.row("crasher.service")
        assert row["result"] == "start-limit-hit" and row["restarts"] == 5
        svc.command("reset-failed", "crasher.service")
        assert state("crasher.service") == "inactive"
        for name in ("identityd.service", "agentsupervisor.service"):
            row = svc.row(name)
            assert row["state"] == "active" and k.find(row["agent"]).alive, row
        gone = k.find(aid["m"])
        assert gone is None or not gone.alive
    finally:
        k.close()


def test_unit_syscalls_need_supervisor_and_a_unit(tmp_path: Path) -> None:
    k = boot(tmp_path)
    seen: dict[str, object] = {}

    async def plain(ctx: Context) -> None:
        try:
            await sc.unit_ctl(2, "stop", "memoryd.service")
        except PermissionDenied as e:
            seen["ctl"] = e.code
        try:
            await sc.unit_notify("READY=1")
        except NoSuchObject as e:
            seen["notify"] = e.code
        seen["ls"] = [r["unit"] for r in await sc.unit_list()]
        seen["cat"] = (await sc.unit_cat("memoryd.service"))["text"]

    try:
        spawn_root(k, plain)
        drive(k, [(None, lambda: "cat" in seen)])
        assert "ctl" in seen and "notify" in seen
        assert "operational.target" in seen["ls"]  # type: ignore[operator]
        assert "aios.kmod.initd.agents:memoryd" in str(seen["cat"])
        assert k.ext[INITD].row("memoryd.service")["state"] != "inactive"  # nothing stopped
    finally:
        k.close()
