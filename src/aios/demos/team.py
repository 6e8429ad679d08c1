"""The demo's second part: a team that works by meaning and shares what it finds.

Four skill agents (plain code, no language model): a weather forecaster, a
unit converter, a travel planner and a summarizer.  Requests are phrased
freely and reach them through semantic-ipcd (INTENT_SEND), never through an
endpoint the sender holds; each route is printed with its score.  The team
shares findings through one memory namespace: the lead creates it and
grants each member WRITE (the summarizer only READ), members record what
they learn, and the planner itself asks the forecaster by intent and
recalls what the team already knows.  The printout reads top to bottom.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from aios.abi.errors import AIOSError
from aios.sdk import Context
from aios.sdk.fabric import Memory, Namespace
from aios.sdk.semantic import Request, Skill, SkillAgent, ask, open_service

NAMESPACE = "team/findings"
SKY = ("sunny", "partly cloudy", "overcast", "light rain", "showers", "windy and dry")


def _city(text: str) -> str:
    """The capitalised word after 'in'/'to'/'for' (or the last capitalised word)."""
    m = re.search(r"\b(?:in|to|for|at)\s+([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)", text)
    if m:
        return m.group(1)
    caps = re.findall(r"\b[A-Z][a-z]{2,}\b", text[1:])
    return caps[-1] if caps else "here"


class Member(SkillAgent):
    """Waits for its grants (memory namespace, maybe semantic-ipcd), then registers."""

    async def on_start(self) -> None:
        self.notes: Namespace | None = None
        self.svc: int | None = None
        while True:
            m = await self.ctx.recv()
            if m.cap >= 0 and m.payload.startswith(b"memory"):  # also `aios mem share`
                self.notes = Memory.adopt(m.cap, NAMESPACE)
            elif m.payload == b"semantic":
                self.svc = m.cap
            elif m.payload == b"start":
                break
        await super().on_start()
        try:
            await self.ctx.send(self.ctx.slots.parent, b"ready")
        except AIOSError:  # started by a console that has gone (``aios spawn``): nobody to tell
            pass

    async def note(self, text: str, **meta: Any) -> None:
        if self.notes is not None:
            await self.notes.put(text, meta={"by": self.SKILLS[0].name, **meta})


class Forecaster(Member):
    SKILLS = (Skill("weather", "Weather forecasts: rain, sun, temperature and wind for a city and a day",
                    ("will it rain in Paris tomorrow", "how warm will it be in Rome on Sunday",
                     "is it going to be windy at the coast this weekend", "what's the forecast for Oslo")),)

    async def handle(self, req: Request) -> Any:
        city = _city(req.intent)
        day = (req.slots.get("date") or ["today"])[0]
        h = hashlib.sha256(f"{city}/{day}".encode()).digest()
        sky, temp = SKY[h[0] % len(SKY)], 8 + h[1] % 20
        text = f"{city}, {day}: {sky}, {temp} °C"
        await self.note(f"Weather {text}", city=city.lower())
        return text


class Converter(Member):
    SKILLS = (Skill("convert", "Unit conversion: kilometres and miles, celsius and fahrenheit, kilograms and pounds",
                    ("how many miles is 10 km", "convert 30 celsius to fahrenheit", "what is 5 kg in pounds",
                     "turn 26.2 miles into kilometres")),)

    RULES: ClassVar[dict[str, tuple[str, float, float]]] = {"km": ("miles", 0.621371, 0.0), "kilometre": ("miles", 0.621371, 0.0),
             "mile": ("km", 1.609344, 0.0), "kg": ("lb", 2.204623, 0.0),
             "pound": ("kg", 0.453592, 0.0), "celsius": ("°F", 1.8, 32.0),
             "fahrenheit": ("°C", 1 / 1.8, -32.0 / 1.8)}
    QUANTITY = re.compile(r"(-?\d+(?:\.\d+)?)\s*(km|kilomet\w*|miles?|kg|kilo\w*|pounds?|lbs?|"
                          r"°?c\b|celsius|°?f\b|fahrenheit)", re.I)
    ALIASES: ClassVar[dict[str, str]] = {"kilo": "kg", "lb": "pound", "c": "celsius", "°c": "celsius", "f": "fahrenheit",
               "°f": "fahrenheit", "kilomet": "kilometre"}

    async def handle(self, req: Request) -> Any:
        m = self.QUANTITY.search(req.intent)
        if m is None:
            return "which quantity should I convert?"
        x, unit = float(m.group(1)), m.group(2).lower()
        key = next((k for k in self.RULES if unit.startswith(k)), None)
        if key is None:
            key = next((v for a, v in self.ALIASES.items() if unit.startswith(a)), "")
        to, f, off = self.RULES[key]
        return f"{x:g} {unit} = {x * f + off:.1f} {to}"


class Planner(Member):
    SKILLS = (Skill("travel", "Plans trips and itineraries: what to do, pack and expect when visiting a city",
                    ("plan a weekend in Vienna for me", "help me organise a trip to Tokyo",
                     "what should I pack for a visit to Iceland", "make an itinerary for three days in Rome")),)

    async def handle(self, req: Request) -> Any:
        city = _city(req.intent)
        plan = [f"Trip to {city}"]
        if self.svc is not None:  # the planner asks its colleague by meaning, too
            w = await ask(self.svc, f"what will the weather be in {city} on Saturday?")
            plan.append(f"forecast via {w.route['skill']}: {w.reply}")
            pack = "an umbrella" if "rain" in str(w.reply) or "shower" in str(w.reply) else "sunglasses"
            plan.append(f"pack {pack}")
        if self.notes is not None:
            known = await self.notes.search(f"{city} weather and sights", k=3)
            plan.append(f"team notes on {city}: {sum(city in h['text'] for h in known)}")
            await self.note(f"Itinerary drafted for {city}", city=city.lower())
        return plan


class Summarizer(Member):
    SKILLS = (Skill("summary", "Summarises what the team has found and recorded so far",
                    ("give me a recap of our findings", "summarise what we know",
                     "what has the team learned", "brief me on the notes")),)

    async def handle(self, req: Request) -> Any:
        if self.notes is None:
            return "no notes"
        hits = await self.notes.search("weather forecasts and travel plans", k=10)
        by: dict[str, int] = {}
        for h in hits:
            by[h["meta"].get("by", "?")] = by.get(h["meta"].get("by", "?"), 0) + 1
        return {"notes": len(hits), "by": by, "first": sorted(h["text"] for h in hits)[:2]}


REQUESTS = (
    "Is it going to rain in Lisbon on Saturday?",
    "How many miles are 42 km?",
    "I'd like to spend a weekend in Lisbon, can you sort out a plan?",
    "Could you recap everything the team has noted so far?",
)


async def main(ctx: Context) -> dict[str, Any]:
    def say(s: str) -> None:
        print(s, flush=True)

    say("\n== Part 2: a team that works by meaning (semantic-ipcd + memory fabric) ==")
    notes = await Memory().create(NAMESPACE, quota_items=1000)
    svc = await open_service()
    say(f"created memory namespace {NAMESPACE!r} (slot {notes.slot}); semantic-ipcd send capability in slot {svc}")
    for cls in (Forecaster, Converter, Planner, Summarizer):
        child = await ctx.spawn(cls, name=cls.__name__.lower())
        rights = ["READ"] if cls is Summarizer else ["READ", "WRITE"]
        await notes.share(child.ep, rights, b"memory")
        if cls is Planner:
            await ctx.grant(svc, child.ep, ["SEMANTIC_SEND"], b"semantic")
        await ctx.send(child.ep, b"start")
        await ctx.recv()  # ready: its skill is registered
        say(f"  {cls.__name__:<11} agent {child.aid}: skill {cls.SKILLS[0].name!r}, memory {'+'.join(rights)}")
    replies: list[Any] = []
    for text in REQUESTS:
        a = await ask(svc, text)
        nxt = [n for n in a.route["nearest"] if n["skill"] != a.route["skill"]][:1]
        runner = f"; runner-up {nxt[0]['skill']} {nxt[0]['score']:.2f}" if nxt else ""
        say(f"ask {text!r}\n  -> {a.route['skill']} (agent {a.route['agent']}, score {a.route['score']:.2f}{runner})")
        say(f"  reply: {a.reply}")
        replies.append(a.reply)
    off_topic = "Tell me a joke about penguins"
    try:
        a = await ask(svc, off_topic)
        say(f"ask {off_topic!r}\n  -> {a.route['skill']} (score {a.route['targets'][0]['score']:.2f})")
    except AIOSError as e:
        say(f"ask {off_topic!r}\n  -> refused: {e}")
    st = await notes.stats()
    say(f"shared namespace {NAMESPACE!r}: {st['items']} findings, {st['bytes']} bytes")
    return {"replies": len(replies), "findings": st["items"]}
