"""Regression tests for the six containment findings, against the real kernel.

1. An isolated agent's clone / specialize / split / spawn ran inside the
   kernel process; an isolated agent could also upgrade an in-process agent
   it held a control capability to.
2. Isolated and worker agents inherited the daemon's whole environment.
3. ``spawn("image:<path>")`` made the kernel read any path for any agent (an
   existence oracle), and copied images to disk before verifying them.
4. ``aios keys trust`` wrote a trust store the kernel never read.
5. Network attempts never reached the behavior monitor, so its ``REVOKE
   ACCESS_NET`` response was dead in a real kernel.
6. The audit log (and its ``-wal``/``-shm``) was world-readable.

Each test fails on the code before the fix (see the report of issue 10 for
the evidence); each uses only the SDK, the host and the CLI, as a user would.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from aioscli import aios
from runs import only, run_real
from signedimages import signed_greeter

from aios.abi.errors import AIOSError, IntegrityError, PermissionDenied
from aios.host import start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sdk import Context

pytestmark = pytest.mark.isolation
H = "aios.demos.hostile:"
SECRET = "hunter2-not-for-agents"


# -- 1. lifecycle operations ---------------------------------------------------------


def test_lifecycle_operations_of_an_isolated_agent_stay_isolated() -> None:
    kernel_pid = os.getpid()

    async def main(ctx: Context) -> dict[str, Any]:
        out = {}
        for how in ("clone", "specialize", "split", "spawn", "clone_inproc", "specialize_worker", "spawn_inproc"):
            h = await ctx.spawn(H + "escape_by_lifecycle", executor="isolated",
                                spec={"how": how, "kernel_pid": kernel_pid})
            out[how] = (await ctx.wait(h.aid, timeout=60))[1]
        return out

    res = only(run_real(main))
    for how in ("clone", "specialize", "split", "spawn"):
        st = res[how]
        assert st["fault"] is None, (how, st)
        copy, me = st["exit"]["copy"], st["exit"]["self"]
        assert copy["in_kernel"] is False and copy["pid"] not in (kernel_pid, me["pid"]), (how, copy)
        # the copy is in a sandbox of its own: seccomp refuses AF_INET with EPERM
        assert copy["inet"] == {"ok": False, "op": "socket", "errno": 1, "error": "PermissionError"}, how
    for how in ("clone_inproc", "specialize_worker", "spawn_inproc"):
        got = res[how]["exit"]
        assert got["refused"] == "EPERM" and "weaker than 'isolated'" in got["message"], (how, got)


def test_isolated_agent_cannot_upgrade_an_in_process_agent() -> None:
    async def victim(ctx: Context) -> Any:
        await ctx.recv()  # between two messages: where an upgrade takes effect
        return "victim's own code"

    async def main(ctx: Context) -> Any:
        v = await ctx.spawn(victim)
        attacker = await ctx.spawn(H + "upgrade_victim", executor="isolated",
                                   caps=[[v.ctl, ["READ", "SUPERVISOR"]]], spec={"victim": 6})
        _, st = await ctx.wait(attacker.aid, timeout=60)
        await ctx.send(v.ep, b"go")
        _, vst = await ctx.wait(v.aid, timeout=60)
        return st["exit"], vst["exit"]

    attack, victim_result = only(run_real(main))
    assert attack == {"ok": False, "op": "upgrade", "errno": PermissionDenied.code, "error": "EPERM"}
    assert victim_result == "victim's own code"


# -- 2. the environment ------------------------------------------------------------------


def test_sandboxes_do_not_inherit_the_daemons_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_KEY_PASSPHRASE", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    async def main(ctx: Context) -> dict[str, Any]:
        out = {}
        for ex in ("isolated", "worker"):
            h = await ctx.spawn(H + "read_environment", executor=ex, spec={"secret_value": SECRET})
            out[ex] = (await ctx.wait(h.aid, timeout=60))[1]["exit"]
        return out

    res = only(run_real(main))
    for ex, seen in res.items():
        assert seen["secret_seen"] is False, ex
        assert "AIOS_KEY_PASSPHRASE" not in seen["names"] and "OPENAI_API_KEY" not in seen["names"], ex
    from aios.sandbox.environment import allowed

    for ex, seen in res.items():
        assert all(allowed(n) for n in seen["names"]), (ex, seen["names"])


# -- 3. the kernel reads no path for a sandboxed agent --------------------------------------


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    image, key = signed_greeter(tmp_path, home)
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    (unsigned / "agent.toml").write_text((image / "agent.toml").read_text())
    (unsigned / "greeter_agent.py").write_text("async def main(ctx):\n    return 'unverified'\n")
    secret_dir = tmp_path / "private"
    secret_dir.mkdir(mode=0o700)
    return {"home": home, "image": image, "unsigned": unsigned, "key": key, "private": secret_dir}


def store_entries(home: Path) -> list[str]:
    d = home / "images"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_sandboxed_agent_cannot_make_the_kernel_read_a_path(signed: dict[str, Path]) -> None:
    targets = {"missing": "/root/no-such-image", "unreadable": str(signed["private"]), "root": "/root",
               "signed": str(signed["image"])}

    async def main(ctx: Context) -> dict[str, Any]:
        out = {}
        for what, path in targets.items():
            h = await ctx.spawn(H + "image_by_path", executor="isolated", spec={"path": path})
            out[what] = (await ctx.wait(h.aid, timeout=60))[1]["exit"]
        return out

    res = only(run_real(main, home=signed["home"]))
    first = res["missing"]
    assert first["ok"] is False and first["errno"] == PermissionDenied.code
    for what, got in res.items():
        assert got == first, (what, got)  # one answer whatever the path: no existence oracle
    assert all(p not in first["error"] for p in targets.values())
    assert store_entries(signed["home"]) == []  # nothing was read into the store


def test_agents_run_images_from_the_verified_store_by_digest_or_name(signed: dict[str, Path]) -> None:
    home = signed["home"]

    async def main(ctx: Context) -> Any:
        # the operator (this in-process root agent, started by the host) installs by path ...
        h = await ctx.spawn("image:" + str(signed["image"]))
        _, first = await ctx.wait(h.aid, timeout=60)
        (digest,) = store_entries(home)
        # ... and sandboxed agents name what is in the store
        out = [first["exit"]]
        for ref in (f"image:sha256:{digest}", f"image:sha256:{digest[:16]}", "image:name:greeter",
                    "image:name:greeter@1.0"):
            s = await ctx.spawn(H + "image_by_path", executor="isolated", spec={"path": ref[len("image:"):]})
            got = (await ctx.wait(s.aid, timeout=60))[1]["exit"]
            out.append(got)
        return out

    res = only(run_real(main, home=home))
    assert res[0] == "hello from greeter"
    for got in res[1:]:
        assert got["ok"] is True, got  # the spawn from the store was accepted


def test_operator_install_verifies_before_anything_is_written(signed: dict[str, Path]) -> None:
    home = signed["home"]

    async def main(ctx: Context) -> list[str]:
        out = []
        for path in (signed["unsigned"], signed["image"]):
            try:
                await ctx.spawn("image:" + str(path))
                out.append("ok")
            except AIOSError as e:
                out.append(e.name)
        (signed["image"] / "greeter_agent.py").write_text("async def main(ctx):\n    return 'evil'\n")
        try:
            await ctx.spawn("image:" + str(signed["image"]))
            out.append("ok")
        except IntegrityError as e:
            out.append(e.name)
        return out

    assert only(run_real(main, home=home)) == ["EBADMSG", "ok", "EBADMSG"]
    entries = store_entries(home)
    assert len(entries) == 1 and not any(e.startswith(".") for e in entries)  # only the verified one
    for p in (home / "images" / entries[0]).rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) in (0o444, 0o755)


# -- 4. one trust store, read by the running kernel ---------------------------------------------


def test_trusting_a_publisher_reaches_the_running_kernel(tmp_path: Path) -> None:
    home = tmp_path / "home"
    image = tmp_path / "hello"
    image.mkdir()
    (image / "agent.toml").write_text('name = "hello"\nversion = "1"\nentry = "hello_agent:main"\n'
                                      'executor = "inproc"\n')
    (image / "hello_agent.py").write_text("async def main(ctx):\n    return 'hi'\n")
    aios(home, "up", "-d")
    try:
        aios(home, "keys", "create", "acme")
        aios(home, "image", "sign", str(image), "--key", "acme")
        before = aios(home, "spawn", str(image), check=False)
        assert before.returncode == 1 and "not in the trust store" in before.stderr
        aios(home, "keys", "trust", "acme")  # the kernel is running all along
        assert json.loads(aios(home, "image", "verify", str(image), "-o", "json").stdout)["verified"]
        after = aios(home, "spawn", str(image), "-o", "json")
        assert json.loads(after.stdout)["aid"] > 0
        trusted = home / "keys" / "trusted"
        assert stat.S_IMODE(trusted.stat().st_mode) == 0o700
        assert stat.S_IMODE((trusted / "acme.toml").stat().st_mode) == 0o600
    finally:
        aios(home, "down", check=False)


# -- 5. network attempts reach the behavior monitor ---------------------------------------------


def test_network_attempts_draw_revoke_access_net_from_the_real_kernel(tmp_path: Path) -> None:
    async def main(ctx: Context) -> Any:
        sid = await ctx.subscribe("security.response", depth=1024)
        # the child's own authority has no ACCESS_NET; it is handed one that does (slot 6)
        h = await ctx.spawn(H + "net_attempts", executor="isolated", caps=[[2, ["SPAWN_AGENT", "ACCESS_NET"]]],
                            spec={"auth": 6, "n": 8})
        await ctx.recv(timeout=60)  # "tried"
        responses = []
        while not any(r["response"] == "revoke" for r in responses):
            ev = await ctx.next_event(sid, timeout=30)
            if ev["data"]["agent"] == h.aid:
                responses.append(ev["data"])
        await ctx.send(h.ep, b"go")
        _, st = await ctx.wait(h.aid, timeout=60)
        return st["exit"], responses

    got, responses = only(run_real(main, home=tmp_path / "home",
                              rights=["SPAWN_AGENT", "KILL_AGENT", "ACCESS_NET"]))
    assert all(t == {"ok": False, "op": "socket", "errno": 1, "error": "PermissionError"} for t in got["tries"])
    assert "ACCESS_NET" in got["before"] and "ACCESS_NET" not in got["after"]
    revoke = next(r for r in responses if r["response"] == "revoke")
    assert revoke["rights"] == ["ACCESS_NET"] and revoke["result"] == "ok" and revoke["capabilities"] >= 1


# -- 6. private files ----------------------------------------------------------------------------


def test_home_is_private_and_checked_at_boot(tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def noop(ctx: Context) -> str:
        return "ok"

    assert only(run_real(noop, home=home)) == "ok"
    audit = home / "audit"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o700
    for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
        p = audit / name
        if p.exists() or name == "audit.db":
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, name
    for d in ("keys", "attest", "tokens"):
        for p in [home / d, *(home / d).rglob("*")]:
            want = 0o700 if p.is_dir() else 0o600
            assert stat.S_IMODE(p.stat().st_mode) == want, p

    (audit / "audit.db").chmod(0o644)  # a readable file: fixed at the next boot, and reported
    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 22, home=home)
    k.close()
    assert stat.S_IMODE((audit / "audit.db").stat().st_mode) == 0o600

    home.chmod(0o777)  # writable by others: refused, naming the path and the fix
    with pytest.raises(PermissionDenied) as e:
        start_kernel(clock=MonotonicClock(), arena_bytes=1 << 22, home=home)
    assert str(home) in e.value.message and "chmod go-w" in e.value.message
    home.chmod(0o711)
