"""User tests (SDK only): agents in isolated processes, worker processes, Wasm stores,
and signed images, all through the real kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from runs import only, run_real
from signedimages import signed_greeter

import aios.sandbox as sandbox_pkg
from aios.abi.errors import IntegrityError, InvalidArgument, PermissionDenied
from aios.kmod.images import signed as img
from aios.sdk import Context

EXAMPLES = Path(sandbox_pkg.__file__).parent / "examples"
pytestmark = pytest.mark.isolation


def test_isolated_agent_calls_and_is_confined() -> None:
    async def main(ctx: Context):
        e = await ctx.spawn("aios.demos.remote_agents:echo", executor="isolated")
        reply = await ctx.call(e.ep, b"hi", timeout=30)
        p = await ctx.spawn("aios.demos.remote_agents:prober", executor="isolated")
        _, st = await ctx.wait(p.aid, timeout=30)
        await ctx.send(e.ep, b"quit")
        _, est = await ctx.wait(e.aid, timeout=30)
        return reply, st["exit"], est["fault"]

    reply, probe, fault = only(run_real(main))
    pid, _, payload = reply.partition(b":")
    assert payload == b"hi" and int(pid) > 1
    assert probe["read_outside"].startswith("denied")
    assert probe["net"].startswith("denied")
    assert probe["forged_slot"] == "denied: EBADCAP"
    assert fault is None


def test_isolated_entry_must_be_named() -> None:
    async def local(ctx: Context):
        return 1

    async def main(ctx: Context):
        with pytest.raises(InvalidArgument):
            await ctx.spawn(local, executor="isolated")
        with pytest.raises(InvalidArgument):
            await ctx.spawn("aios.demos.remote_agents:echo", executor="microvm")
        h = await ctx.spawn("no_such_module_q:main", executor="isolated")
        _, st = await ctx.wait(h.aid, timeout=30)
        return st["fault"]

    fault = only(run_real(main))
    assert fault and "cannot load" in fault


def test_worker_agents() -> None:
    async def main(ctx: Context):
        kids = [await ctx.spawn("aios.demos.remote_agents:null_loop", executor="worker", spec={"n": 200})
                for _ in range(4)]
        return [(await ctx.wait(c.aid, timeout=60))[1]["exit"] for c in kids]

    assert only(run_real(main)) == [200, 200, 200, 200]


def test_wasm_agent_and_out_of_fuel() -> None:
    async def main(ctx: Context):
        sid = await ctx.subscribe("agent.fault")
        h = await ctx.spawn(str(EXAMPLES / "hello.wat"), executor="wasm")
        _, ok = await ctx.wait(h.aid, timeout=30)
        s = await ctx.spawn(str(EXAMPLES / "spinner.wat"), executor="wasm")
        _, spun = await ctx.wait(s.aid, timeout=30)
        ev = await ctx.next_event(sid, timeout=30)
        return ok["fault"], spun["fault"], ev["data"]["cause"]

    ok, spun, cause = only(run_real(main))
    assert ok is None
    assert spun is not None and cause in ("out-of-fuel", "killed-for-limit")


@pytest.fixture
def signed_home(tmp_path: Path) -> dict[str, Path]:
    # isolated agents run under their own uids: they must be able to traverse to the
    # kernel's image cache (the daemon makes $AIOS_HOME 0711 for the same reason)
    home = tmp_path / "home"
    image, key = signed_greeter(tmp_path, home)
    return {"home": home, "image": image, "key": key}


def test_signed_image_runs_and_tampering_is_refused(signed_home: dict[str, Path]) -> None:
    image = signed_home["image"]

    async def main(ctx: Context):
        h = await ctx.spawn("image:" + str(image))
        _, st = await ctx.wait(h.aid, timeout=30)
        (image / "greeter_agent.py").write_text("async def main(ctx):\n    return 'evil'\n")
        with pytest.raises(IntegrityError):
            await ctx.spawn("image:" + str(image))
        (image / "agent.sig").unlink()
        with pytest.raises(IntegrityError):
            await ctx.spawn("image:" + str(image))
        return st["exit"]

    assert only(run_real(main, home=signed_home["home"])) == "hello from greeter"


def test_over_asking_image_is_refused(signed_home: dict[str, Path]) -> None:
    image = signed_home["image"]
    (image / "agent.toml").write_text(
        'name = "greeter"\nversion = "1.0"\nentry = "greeter_agent:main"\nexecutor = "isolated"\n'
        'capabilities = ["ACCESS_NET"]\n')
    img.sign(image, signed_home["key"], "acme")

    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await ctx.spawn("image:" + str(image))
        return "refused"

    assert only(run_real(main, home=signed_home["home"])) == "refused"


def test_wasm_fuel_is_charged_to_scheduling_statistics() -> None:
    from aios.sdk import syscalls as sc

    async def main(ctx: Context):
        s = await ctx.spawn(str(EXAMPLES / "spinner.wat"), executor="wasm")
        await ctx.wait(s.aid, timeout=30)  # it runs until its fuel (its CPU budget) is spent
        return await sc.sched_stats(s.ctl)

    (row,) = only(run_real(main))
    assert row["class"] == "wasm" and row["fuel"] > 0 and row["runtime_ns"] > 0


def test_batches_cross_the_wire() -> None:
    async def main(ctx: Context):
        w = await ctx.spawn("aios.demos.remote_agents:batcher", executor="worker")
        i = await ctx.spawn("aios.demos.remote_agents:batcher", executor="isolated")
        return [(await ctx.wait(c.aid, timeout=60))[1]["exit"] for c in (w, i)]

    assert only(run_real(main)) == [300, 300]
