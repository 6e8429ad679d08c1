"""The kernel path decides exactly as the pure core: 12 skill agents, INTENT_SEND per utterance.

The 12 skills of ``routing_set.json`` (the original, broad skills) are
registered by syscall from their own agents; every utterance is explained
through INTENT_SEND (batched by the service) and compared with the pure
router's decision for the same registry.  Accuracy at scale is the
benchmark's business (``aios bench semantic``, tests/data/routing/).
"""

from __future__ import annotations

import json
from pathlib import Path

from aios.kmod.semantic_ipcd.core import SemanticRouter
from aios.lib.vectors.embedding import default_embedder
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
        texts = [u["text"] for u in DATA["utterances"]] + DATA["out_of_domain"]
        verdicts = []
        for t in texts:
            d = await explain(svc, t)
            verdicts.append((d["verdict"], [c["skill"] for c in d["targets"]],
                             [c["skill"] for c in d["candidates"]]))
        # and a few delivered for real: the reply names the skill that served
        routed = [u for u, v in zip(DATA["utterances"], verdicts, strict=False) if v[0] == "routed"]
        served = [(await ask(svc, u["text"])).reply for u in routed[::20]]
        return verdicts, served, [v[1][0] for u, v in zip(DATA["utterances"], verdicts, strict=False)
                                  if v[0] == "routed"][::20]

    (r,) = run_agents(main, rights=["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SEMANTIC_SEND"]).values()
    assert r["fault"] is None, r["fault"]
    verdicts, served, expected = r["exit"]
    assert served == expected and served
    # the same registry in the pure core, same default settings
    core = SemanticRouter(default_embedder()[0])
    for s in DATA["skills"]:
        core.register(s["agent"], s["skill"], s["description"], s["examples"])
    texts = [u["text"] for u in DATA["utterances"]] + DATA["out_of_domain"]
    want = [(d.verdict.value, [c.skill for c in d.targets], [c.skill for c in d.ambiguous])
            for d in core.route_many([("x", t, None) for t in texts], explain=True)]
    assert [tuple(v) for v in verdicts] == want
    right = sum(v[0] == "routed" and v[1] == [u["skill"]]
                for u, v in zip(DATA["utterances"], verdicts, strict=False))
    wrong = sum(v[0] == "routed" and v[1] != [u["skill"]]
                for u, v in zip(DATA["utterances"], verdicts, strict=False))
    n = len(DATA["utterances"])
    print(f"\nkernel-path routing on the 12 original skills: top-1 {right / n:.3f}, "
          f"misrouted {wrong / n:.3f}")
    assert wrong / n <= 0.05
