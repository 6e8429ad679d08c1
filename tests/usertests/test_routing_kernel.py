"""Routing accuracy through the kernel path: 12 skill agents, INTENT_SEND for every utterance."""

from __future__ import annotations

import json
from pathlib import Path

from aios.sdk import Context
from aios.sdk.semantic import Request, SkillAgent, ask, explain, open_service, register_skill

DATA = json.loads((Path(__file__).resolve().parents[1] / "data" / "routing_set.json").read_text())


class Member(SkillAgent):
    """Registers the skill named in its spec; answers with the skill it served."""

    async def on_start(self) -> None:
        s = self.ctx.spec
        await register_skill(s["skill"], s["description"], s["examples"])
        await self.ctx.send(self.ctx.slots.parent, b"ready")

    async def handle(self, req: Request):
        return req.skill


def test_routing_accuracy_through_the_kernel(run_agents) -> None:
    async def main(ctx: Context):
        for s in DATA["skills"]:
            spec = {k: s[k] for k in ("skill", "description", "examples")}
            await ctx.spawn(Member, spec=spec, name=s["agent"])
            await ctx.recv()
        svc = await open_service()
        right = 0
        for u in DATA["utterances"]:
            d = await explain(svc, u["text"])
            right += bool(d["targets"]) and d["targets"][0]["skill"] == u["skill"]
        refused = 0
        for text in DATA["out_of_domain"]:
            refused += not (await explain(svc, text))["targets"]
        # and a few delivered for real: the reply names the skill that served
        served = [(await ask(svc, u["text"])).reply for u in DATA["utterances"][::54]]
        return right / len(DATA["utterances"]), refused / len(DATA["out_of_domain"]), served

    (r,) = run_agents(main, rights=["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SEMANTIC_SEND"]).values()
    assert r["fault"] is None, r["fault"]
    accuracy, ood_refused, served = r["exit"]
    print(f"\nkernel-path routing: top-1 {accuracy:.3f}, out-of-domain refused {ood_refused:.3f}")
    assert accuracy >= 0.90
    assert ood_refused >= 0.75
    assert served == [u["skill"] for u in DATA["utterances"][::54]]
