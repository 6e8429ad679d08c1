"""User tests: ambiguous results, the sender's choice, learning from it, collision warnings."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.sdk import Context
from aios.sdk import syscalls as sc
from aios.sdk.semantic import Request, Skill, SkillAgent, ask, open_service, status

SEND = ["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SEMANTIC_SEND"]
EXAMPLES = ("book a table for two tonight", "reserve dinner for four on friday",
            "get us a table at the italian place", "I want a restaurant booking at 8pm",
            "find a table for lunch tomorrow")


class Tables(SkillAgent):
    """Registers the skill in its spec and tells the parent what registration answered."""

    async def on_start(self) -> None:
        s = self.ctx.spec
        from aios.sdk.semantic import register_skill

        r = await register_skill(s["name"], s["description"], EXAMPLES, learn=s["learn"])
        await self.ctx.send(self.ctx.slots.parent, repr(r["warnings"]).encode())

    async def handle(self, req: Request):
        return {"who": self.ctx.spec["name"]}


def test_ambiguous_then_choose_delivers_and_learns_only_where_allowed(run_agents, kernel) -> None:
    events: dict[str, list] = {"semantic.ambiguous": [], "semantic.feedback": [],
                               "semantic.skill.collision": []}
    for topic, seen in events.items():
        kernel.bus.subscribe(topic, callback=lambda ev, seen=seen: seen.append(ev.data))

    async def main(ctx: Context):
        await ctx.spawn(Tables, spec={"name": "dining", "description": "Restaurant table "
                                      "reservations", "learn": True})
        first = (await ctx.recv()).payload
        await ctx.spawn(Tables, spec={"name": "eatery", "description": "Restaurant table "
                                      "reservations", "learn": False})
        second = (await ctx.recv()).payload
        svc = await open_service()
        text = "could you book us a table for dinner on saturday"
        a = await ask(svc, text)
        chosen = await ask(svc, text, choose="dining")
        again = await ask(svc, "table for six next sunday please", choose="eatery")
        st = {s["skill"]: s["examples"] for s in (await status())["skills"]}
        return first, second, a.ambiguous, a.candidates, a.reply, chosen.reply, again.reply, st

    first, second, amb, cands, nothing, chosen, again, st = only(run_agents(main, rights=SEND))
    assert first == b"[]" and b"dining" in second  # the second registration is warned
    assert events["semantic.skill.collision"][0]["other"] == "dining"
    assert amb and {c["skill"] for c in cands} == {"dining", "eatery"} and nothing is None
    assert events["semantic.ambiguous"][0]["intent"].startswith("could you book")
    assert chosen == {"who": "dining"} and again == {"who": "eatery"}
    # dining's owner allowed learning, eatery's did not
    assert st == {"dining": len(EXAMPLES) + 1, "eatery": len(EXAMPLES)}
    assert len(events["semantic.feedback"]) == 1
    assert events["semantic.feedback"][0]["skill"] == "dining"


def test_bad_choices_and_options_change_nothing(run_agents) -> None:
    class Private(SkillAgent):
        SKILLS = (Skill("vault", "Opens the vault", ("open the vault", "unlock the vault"),
                        allowed_senders=(999_999,), learn=True),)

        async def on_ready(self) -> None:
            await self.ctx.send(self.ctx.slots.parent, b"ready")

    async def main(ctx: Context):
        await ctx.spawn(Private)
        await ctx.recv()
        svc = await open_service()
        errors = []
        for kwargs in ({"choose": "vault"}, {"choose": "nope"}):
            with pytest.raises(NoSuchObject) as e:  # invisible or missing: the same answer
                await ask(svc, "open the vault", **kwargs)
            errors.append(e.value.code)
        with pytest.raises(InvalidArgument):
            await ask(svc, "open the vault", choose="vault", broadcast=True)
        with pytest.raises(InvalidArgument):
            await sc.intent_send(svc, "open the vault", None, {"choose": 7})
        with pytest.raises(InvalidArgument):
            await sc.skill_register("x", "y", ["z"], {"learn": "yes"})
        with pytest.raises(InvalidArgument):
            await sc.semantic_status({"bogus": 1})
        with pytest.raises(NoSuchObject):
            await status(skill="vault")  # not visible to this sender
        st = await sc.semantic_status()
        return errors, st["skills"]

    errors, skills = only(run_agents(main, rights=SEND))
    assert errors == [NoSuchObject.code, NoSuchObject.code]
    assert skills == []  # the restricted skill is invisible and nothing was learnt or added


def test_status_explains_a_skill(run_agents) -> None:
    async def main(ctx: Context):
        for name, learn in (("dining", False), ("eatery", False)):
            await ctx.spawn(Tables, spec={"name": name, "description": "Restaurant table "
                                          "reservations", "learn": learn})
            await ctx.recv()
        return await status(skill="dining")

    st = only(run_agents(main, rights=SEND))
    (e,) = st["explain"]
    assert e["skill"] == "dining" and e["neighbours"][0]["skill"] == "eatery"
    assert e["confusions"] and all(c["other"] == "eatery" for c in e["confusions"])
    assert st["threshold"] > 0 and st["lexical_weight"] >= 0
