"""The policy gate's decision cache is keyed by what policies can see, not agent ids.

A clone chain asks the same spawn question from a new agent each time: keyed by
agent id (the gate before this change) every clone missed and added an entry,
so a clone loop filled the cache; keyed by attributes, one entry answers all of
them.  The audit record of every answer still names the agent that asked.  A
policy set that names an agent by id keeps ids in the key.
"""

from __future__ import annotations

import json
from pathlib import Path

from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import VirtualClock
from aios.kmod.security.glue import security_of
from aios.lib.audit.log import LogReader
from aios.lib.paths import audit_db_path
from aios.lib.policy.engine import compile_policies
from aios.sdk import Context

GENERATIONS = 30
MARK_SPAWN = """
@id("no-crawlers")
forbid(principal, action == Action::"spawn", resource)
when { context.child_type == "crawler" };
"""


async def chain(ctx: Context) -> int:
    gen = ctx.state.get("gen", 0)
    if gen < GENERATIONS:
        ctx.state["gen"] = gen + 1
        h = await ctx.clone()
        await ctx.wait(h.aid)
    return gen


def test_clones_share_one_cached_spawn_decision_audited_under_their_own_ids(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "policy").mkdir(parents=True)
    (home / "policy" / "mark.cedar").write_text(MARK_SPAWN)
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 24, home=home)
    try:
        gate = security_of(k).policy  # type: ignore[union-attr]
        assert gate is not None and not gate.engine.compiled.names_agents

        (r,) = run_sync(run_async(k, chain, quota={"agents": 2 * GENERATIONS})).values()
        assert r["fault"] is None, r
        assert gate.cache_hits >= GENERATIONS - 2
        assert len(gate._decisions) <= 3  # init's spawn of root, root's clone, every clone's clone
    finally:
        k.close()
    reader = LogReader.open(audit_db_path(home))
    recs = [json.loads(e.record) for e in reader.entries(limit=100_000) if e.kind == "policy.decision"]
    spawn = [rec for rec in recs if rec["detail"].get("action") == "spawn"]
    assert len(spawn) >= GENERATIONS
    assert len({rec["agent"] for rec in spawn}) == len(spawn)  # each asked under its own id


def test_a_policy_naming_an_agent_keeps_ids_in_the_key() -> None:
    named = 'permit(principal == Agent::"7", action == Action::"kill", resource);'
    assert compile_policies({"a.cedar": named}).names_agents
    assert not compile_policies({"m.cedar": MARK_SPAWN}).names_agents
