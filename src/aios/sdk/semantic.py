"""Semantic IPC from an agent: register skills, send intents, serve requests.

Senders need a semantic-ipcd capability (``await open_service()``, which
needs SEMANTIC_SEND on the authority, or one passed by the parent)::

    svc = await open_service()
    answer = await ask(svc, "will it rain in Lyon tomorrow?")
    answer.reply      # what the chosen agent answered (decoded)
    answer.route      # skill, agent, score, nearest alternatives
    if answer.ambiguous:                       # two skills too close to call:
        answer = await ask(svc, text, choose=answer.candidates[0]["skill"])

Receivers subclass :class:`SkillAgent`: declare ``SKILLS`` and implement
``handle(request)``; the return value (plain data) is the reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from aios.abi.slots import SLOT_AUTHORITY
from aios.sdk import syscalls as sc
from aios.sdk.agent import Agent


@dataclass(frozen=True, slots=True)
class Skill:
    name: str
    description: str
    examples: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None
    allowed_senders: tuple[int, ...] | None = None
    learn: bool = False  # senders' clarified intents may become examples


@dataclass(frozen=True, slots=True)
class Request:
    """A routed request as its receiver sees it."""

    intent: str
    skill: str
    score: float
    slots: dict[str, list[Any]]
    payload: Any
    sender: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The sender's view: the decision and the reply (broadcast: ``replies``)."""

    route: dict[str, Any]
    reply: Any = None
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ambiguous(self) -> bool:
        """Nothing was delivered: pick one of :attr:`candidates` and ask with ``choose``."""
        return bool(self.route.get("ambiguous"))

    @property
    def candidates(self) -> list[dict[str, Any]]:
        return list(self.route.get("candidates", []))


def decode(blob: Any) -> Any:
    """A reply as sent by a :class:`SkillAgent` (msgpack), else text, else bytes."""
    if not isinstance(blob, (bytes, bytearray)):
        return blob
    try:
        return msgpack.unpackb(blob, raw=False)
    except Exception:
        try:
            return bytes(blob).decode()
        except UnicodeDecodeError:
            return bytes(blob)


def parse_request(payload: bytes) -> Request | None:
    """The request inside a semantic-ipcd message, or None for any other message."""
    try:
        d = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    if not isinstance(d, dict) or "intent" not in d or "skill" not in d:
        return None
    return Request(d["intent"], d["skill"], d.get("score", 0.0), d.get("slots") or {},
                   d.get("payload"), d.get("sender", 0))


async def open_service(authority: int = SLOT_AUTHORITY) -> int:
    slot: int = await sc.semantic_open(authority)
    return slot


async def register_skill(name: str, description: str, examples: list[str] | tuple[str, ...] = (), *,
                         schema: dict[str, Any] | None = None,
                         allowed_senders: list[int] | None = None,
                         learn: bool = False) -> dict[str, Any]:
    """Register a skill; the answer's ``warnings`` name skills it collides with."""
    opts: dict[str, Any] = {}
    if learn:
        opts["learn"] = True
    if schema is not None:
        opts["schema"] = schema
    if allowed_senders is not None:
        opts["allowed_senders"] = list(allowed_senders)
    r: dict[str, Any] = await sc.skill_register(name, description, list(examples), opts or None)
    return r


async def unregister_skill(name: str | None = None) -> int:
    n: int = await sc.skill_unregister(name)
    return n


async def send_intent(svc: int, intent: str, payload: Any = None, *, broadcast: bool = False,
                      explain: bool = False, timeout: float | None = None,
                      choose: str | None = None) -> Answer:
    """Route ``intent``; ``choose`` names the skill picked after an ambiguous answer."""
    opts: dict[str, Any] = {}
    if choose is not None:
        opts["choose"] = choose
    if broadcast:
        opts["broadcast"] = True
    if explain:
        opts["explain"] = True
    if timeout is not None:
        opts["timeout"] = timeout
    r: dict[str, Any] = await sc.intent_send(svc, intent, payload, opts or None)
    replies = [{**row, "reply": decode(row["reply"])} if "reply" in row else row
               for row in r.pop("replies", [])]
    return Answer(r, decode(r.pop("reply", None)), replies)


ask = send_intent


async def explain(svc: int, intent: str, payload: Any = None, *, broadcast: bool = False) -> dict[str, Any]:
    """The routing decision for ``intent`` without delivering anything."""
    return (await send_intent(svc, intent, payload, broadcast=broadcast, explain=True)).route


async def status(skill: str | None = None, agent: int | None = None) -> dict[str, Any]:
    """Settings and skills; with ``skill``, also its neighbours and confusions (``explain``)."""
    opts: dict[str, Any] = {}
    if skill is not None:
        opts["skill"] = skill
    if agent is not None:
        opts["agent"] = agent
    r: dict[str, Any] = await sc.semantic_status(opts or None)
    return r


class SkillAgent(Agent):
    """An agent that serves skills.  ``SKILLS`` lists them; ``handle`` answers.

    Other messages go to :meth:`on_other` (default: ignored; a call gets ``b""``).
    """

    SKILLS: tuple[Skill, ...] = ()

    async def on_start(self) -> None:
        for s in self.SKILLS:
            await register_skill(s.name, s.description, s.examples, schema=s.schema,
                                 allowed_senders=list(s.allowed_senders) if s.allowed_senders else None,
                                 learn=s.learn)
        await self.on_ready()

    async def on_ready(self) -> None:
        """Called once every skill is registered (e.g. to tell the parent)."""

    async def handle(self, request: Request) -> Any:
        """Answer one request; the value (plain data) is the reply."""
        return None

    async def on_other(self, msg: Any) -> bytes | None:
        return None

    async def on_message(self, msg: Any) -> bytes | None:
        req = parse_request(msg.payload) if msg.call else None
        if req is None:
            return await self.on_other(msg)
        try:
            out = await self.handle(req)
        except Exception as e:  # the sender gets the failure as the reply
            out = {"error": f"{type(e).__name__}: {e}"}
        blob: bytes = msgpack.packb(out, use_bin_type=True)
        return blob
