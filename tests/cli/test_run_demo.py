"""``aios demo`` and ``aios run`` end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from aios.cli.main import _mount_groups, app

runner = CliRunner()
_mount_groups()


def test_demo_shows_each_part() -> None:
    r = runner.invoke(app, ["demo"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "spawn refused: [EPERM]" in out
    assert "call through granted capability -> Frank Herbert" in out
    assert "call refused: [EBADCAP]" in out  # the revocation took effect
    assert "read 'the spice must flow'; write refused: EPERM" in out
    assert "'v1 served" in out and "'v2 served" in out
    assert "get emma: Jane Austen" in out
    assert "messages ['move', 'move']" in out
    assert "agent.lifecycle.merged" in out and "security.violation" in out
    # part 2: the team, routed by meaning, sharing one memory namespace
    assert "Part 2: a team that works by meaning" in out
    assert "-> weather (agent" in out and "Lisbon, Saturday:" in out
    assert "reply: 42 km = 26.1 miles" in out
    assert "-> travel (agent" in out and "forecast via weather: Lisbon, Saturday" in out
    assert "-> summary (agent" in out and "'by': {'weather': 2, 'travel': 1}" in out
    assert "refused: [ENOENT] no skill matches 'Tell me a joke about penguins'" in out
    assert "shared namespace 'team/findings': 3 findings" in out
    # part 3: agents thinking with the embedded model, shared by weight, budgets enforced
    assert "Part 3: agents that think" in out
    assert "long call refused: [EDQUOT] LLM token budget" in out
    assert "the weights decide who waits" in out and "calls 2/2  done" in out


def test_run_file(tmp_path: Path) -> None:
    f = tmp_path / "agents.py"
    f.write_text(
        "async def ping(ctx):\n"
        "    await ctx.send(ctx.slots.mailbox, b'x')\n"
        "    return (await ctx.recv()).payload.decode()\n"
        "async def crash(ctx):\n"
        "    raise RuntimeError('bad agent')\n"
        "AGENTS = [ping]\n"
    )
    r = runner.invoke(app, ["run", str(f)])
    assert r.exit_code == 0, r.output
    assert '"x"' in r.output  # the exit value as JSON
    f.write_text(f.read_text().replace("AGENTS = [ping]", "AGENTS = [ping, crash]"))
    r = runner.invoke(app, ["run", str(f)])
    assert r.exit_code == 1 and "bad agent" in r.output
