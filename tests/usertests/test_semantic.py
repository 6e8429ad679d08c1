"""User tests (SDK only): semantic-ipcd routing, delivery as calls, rights on both ends."""

from __future__ import annotations

import pytest
from runs import only

from aios.abi.errors import InvalidArgument, NoSuchObject, PermissionDenied
from aios.sdk import Context
from aios.sdk.semantic import Request, Skill, SkillAgent, ask, explain, open_service, status

SEND = ["SPAWN_AGENT", "ALLOC_MEMORY", "KILL_AGENT", "SEMANTIC_SEND"]


class Ready(SkillAgent):
    async def on_ready(self) -> None:
        await self.ctx.send(self.ctx.slots.parent, b"ready")


class Weather(Ready):
    SKILLS = (Skill("weather", "Weather forecasts: rain, temperature and wind for a city and day",
                    ("will it rain in Paris tomorrow", "how warm is it in Rome today",
                     "is it windy at the coast this weekend")),)

    async def handle(self, req: Request):
        return {"who": "weather", "aid": self.ctx.aid, "intent": req.intent, "dates": req.slots.get("date")}


class Converter(Ready):
    SKILLS = (Skill("convert", "Convert units: kilometres to miles, celsius to fahrenheit, kilograms",
                    ("how many miles is 10 km", "convert 30 celsius to fahrenheit", "5 kg in pounds"),
                    schema={"type": "object", "properties": {"value": {"type": "number"}}}),)

    async def handle(self, req: Request):
        return {"who": "convert", "payload": req.payload}


class Private(Ready):
    SKILLS = (Skill("vault", "Opens the secret vault of treasure and gold", ("open the treasure vault",),
                    allowed_senders=(999_999,)),)


async def start(ctx: Context, *classes) -> list:
    kids = []
    for c in classes:
        kids.append(await ctx.spawn(c))
        assert (await ctx.recv()).payload == b"ready"
    return kids


def test_route_deliver_and_reply(run_agents) -> None:
    async def main(ctx: Context):
        await start(ctx, Weather, Converter)
        svc = await open_service()
        a = await ask(svc, "Do I need an umbrella in London tomorrow?")
        b = await ask(svc, "what is 12 km in miles", {"value": 12})
        with pytest.raises(InvalidArgument):  # the payload breaks the skill's schema
            await ask(svc, "what is 12 km in miles", {"value": "twelve"})
        with pytest.raises(NoSuchObject) as e:
            await ask(svc, "Who painted the Mona Lisa?")
        d = await explain(svc, "will it snow in Oslo on Friday?")
        st = await status()
        return a.reply, a.route["skill"], b.reply, str(e.value), d, st

    a, skill, b, err, d, st = only(run_agents(main, rights=SEND))
    assert skill == "weather" and a["who"] == "weather" and a["dates"] == ["tomorrow"]
    assert b == {"who": "convert", "payload": {"value": 12}}
    assert "ENOENT" in err and "nearest" in err and "weather" in err
    assert d["explain"] and d["targets"][0]["skill"] == "weather" and d["error"] is None
    assert {s["skill"] for s in st["skills"]} == {"weather", "convert"} and st["embedder"]


def test_sender_needs_semantic_send(run_agents) -> None:
    async def main(ctx: Context):
        with pytest.raises(PermissionDenied):
            await open_service()  # the authority lacks SEMANTIC_SEND
        with pytest.raises(Exception) as e:
            await ask(ctx.slots.mailbox, "hello")  # not a semantic-ipcd capability
        return e.value.name

    assert only(run_agents(main)) == "EBADCAP"


def test_allowed_senders_hide_a_skill(run_agents) -> None:
    async def main(ctx: Context):
        await start(ctx, Private)
        svc = await open_service()
        d = await explain(svc, "open the treasure vault")
        return d["targets"], [n["skill"] for n in d["nearest"]]

    assert only(run_agents(main, rights=SEND)) == ([], [])


class Slow(Weather):
    async def on_ready(self) -> None:
        await super().on_ready()
        await self.ctx.sleep(1.0)  # not receiving: its mailbox fills up


def test_least_loaded_and_broadcast(run_agents) -> None:
    async def main(ctx: Context):
        w1, w2 = await start(ctx, Slow, Weather)
        svc = await open_service()
        await ctx.send(w1.ep, b"busy")  # non-semantic messages: w1's mailbox is deeper
        await ctx.send(w1.ep, b"busy")
        d = await explain(svc, "is it raining in Madrid right now?")
        r = await ask(svc, "is it raining in Madrid right now?")
        await start(ctx, Converter)
        bc = await ask(svc, "how warm will it be in Rome tomorrow?", broadcast=True)
        return d["targets"][0]["agent"], w2.aid, r.reply["aid"], sorted(x["skill"] for x in bc.replies)

    chosen, w2, replier, skills = only(run_agents(main, rights=SEND))
    assert chosen == w2 and replier == w2
    assert skills.count("weather") == 2


def test_every_decision_is_an_event(run_agents, kernel) -> None:
    seen = []
    kernel.bus.subscribe("semantic.route", callback=lambda ev: seen.append(ev.data))

    async def main(ctx: Context):
        await start(ctx, Weather)
        svc = await open_service()
        await ask(svc, "sunny in Nice tomorrow?")
        with pytest.raises(NoSuchObject):
            await ask(svc, "Recommend a good novel to read")
        await explain(svc, "rain in Bonn?")
        return "ok"

    assert only(run_agents(main, rights=SEND)) == "ok"
    assert [e["delivered"] for e in seen] == [True, False, False]
    assert seen[1]["error"] and seen[2]["explain"]


def test_receiver_death_fails_the_call(run_agents) -> None:
    class Dies(Ready):
        SKILLS = Weather.SKILLS

        async def handle(self, req: Request):
            await self.ctx.exit("gone")

    async def main(ctx: Context):
        await start(ctx, Dies)
        svc = await open_service()
        try:
            await ask(svc, "will it rain in Paris tomorrow")
        except Exception as e:
            return e.name
        return "replied"

    assert only(run_agents(main, rights=SEND)) == "EPIPE"
