"""The LLM device's syscalls (block 180-189).

``LLM_CHAT`` admits a call and returns a handle at once; ``LLM_RECV`` blocks
until the call has streamed something new (or, with ``whole``, until it
ended); ``LLM_CANCEL`` stops it; ``LLM_STATS`` reports a device's queue and
clients (everyone's with the device's ``admin`` right, else one's own);
``LLM_BUDGET`` derives a capability carrying a token budget.  The rights on a
device capability: ``use`` is WRITE, ``admin`` is ADMIN (``aios.abi.rights``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument
from aios.abi.rights import DEV_RIGHTS, DEV_USE, ObjKind, Rights, rights_from_names
from aios.abi.sysno import Sys
from aios.kernel.agents import Agent
from aios.kernel.args import as_bool, as_int, as_opts, as_plain
from aios.kernel.devqueue import Priority
from aios.kmod.llm.budget import MAX_BUDGET
from aios.kmod.llm.service import service
from aios.lib.llm.chat import MAX_MESSAGES, ChatRequest, Message, ToolCall, ToolSpec

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

MAX_REQUEST_BYTES = 1 << 20
CHAT_OPTS = frozenset({"max_tokens", "temperature", "seed", "stop", "json_schema", "tools",
                       "tool_choice", "top_p", "priority", "deadline_s", "program"})
PRIORITIES = {p.name.lower(): p for p in Priority}
MAX_DEADLINE_S = 24 * 3600.0


def _seq(v: Any, name: str) -> list[Any]:
    if type(v) not in (list, tuple):
        raise InvalidArgument(f"{name} must be a list")
    return list(v)


def _message(m: Any) -> Message:
    if type(m) is not dict:
        raise InvalidArgument("each message must be a dict with role and content")
    m = as_opts(m, frozenset({"role", "content", "name", "tool_call_id", "tool_calls"}), "message")
    calls = tuple(ToolCall(str(c.get("id", "")), str(c.get("name", "")), str(c.get("arguments", "")))
                  for c in _seq(m.get("tool_calls") or [], "tool_calls") if type(c) is dict)
    return Message(m.get("role"), m.get("content", ""), m.get("name"), m.get("tool_call_id"), calls)


def _tool(t: Any) -> ToolSpec:
    if type(t) is not dict:
        raise InvalidArgument("each tool must be a dict with name, description, parameters")
    t = as_opts(t, frozenset({"name", "description", "parameters"}), "tool")
    return ToolSpec(t.get("name", ""), t.get("description", ""), t.get("parameters") or {"type": "object"})


def parse_chat(messages: Any, opts: Any) -> tuple[ChatRequest, dict[str, Any]]:
    """The wire form of a chat (plain lists and dicts) as a validated request, and
    the scheduling options (priority, deadline_s, program)."""
    as_plain([messages, opts], "the chat request", MAX_REQUEST_BYTES)
    msgs = _seq(messages, "messages")
    if not 1 <= len(msgs) <= MAX_MESSAGES:
        raise InvalidArgument(f"a chat needs 1..{MAX_MESSAGES} messages")
    o = as_opts(opts, CHAT_OPTS)
    stop = o.get("stop") or ()
    if type(stop) is str:
        stop = (stop,)
    schema = o.get("json_schema")
    if schema is not None and type(schema) is not dict:
        raise InvalidArgument("json_schema must be a JSON schema object (a dict)")
    req = ChatRequest(
        tuple(_message(m) for m in msgs),
        max_tokens=o.get("max_tokens", 256),
        temperature=o.get("temperature", 0.0),
        seed=o.get("seed"),
        stop=tuple(_seq(stop, "stop")),
        response_schema=schema,
        tools=tuple(_tool(t) for t in _seq(o.get("tools") or [], "tools")),
        tool_choice=o.get("tool_choice"),
        top_p=o.get("top_p"),
    )
    sched: dict[str, Any] = {}
    p = o.get("priority")
    if p is not None:
        if p not in PRIORITIES:
            raise InvalidArgument(f"priority must be one of {sorted(PRIORITIES)}")
        sched["priority"] = PRIORITIES[p]
    dl = o.get("deadline_s")
    if dl is not None:
        if isinstance(dl, bool) or not isinstance(dl, (int, float)) or not 0 < dl <= MAX_DEADLINE_S:
            raise InvalidArgument(f"deadline_s must be a number of seconds in (0, {MAX_DEADLINE_S:.0f}]")
        sched["deadline_s"] = float(dl)
    if o.get("program") is not None:
        sched["program"] = as_int(o["program"], "program", 0, (1 << 62))
    return req, sched


def sys_llm_chat(k: Kernel, a: Agent, dev_slot: Any, messages: Any, opts: Any = None) -> int:
    """Admit a chat on the device (``use``); returns the call's handle."""
    cap = a.cspace.lookup(dev_slot, ObjKind.DEVICE, DEV_USE)
    req, sched = parse_chat(messages, opts)
    deadline = None
    if "deadline_s" in sched:
        deadline = k.now() + int(sched["deadline_s"] * 1e9)
    return service(k).submit(a, cap, req, priority=sched.get("priority"), deadline_ns=deadline,
                             program=sched.get("program"))


def sys_llm_recv(k: Kernel, a: Agent, handle: Any, timeout: Any = None, whole: Any = False) -> Any:
    """What the call streamed since the last receive; blocks while nothing has."""
    return service(k).recv(a, handle, timeout, as_bool(whole, "whole"))


def sys_llm_cancel(k: Kernel, a: Agent, handle: Any) -> dict[str, Any]:
    """Stop one of the caller's calls; returns what it was charged."""
    return service(k).cancel(a, handle)


def sys_llm_stats(k: Kernel, a: Agent, dev_slot: Any = None) -> dict[str, Any]:
    """A device's queue and clients (``admin``: every client), or (no slot) the
    caller's model capabilities and usage."""
    cap = None if dev_slot is None else a.cspace.lookup(dev_slot, ObjKind.DEVICE, Rights.READ)
    return service(k).stats(a, cap)


def sys_llm_budget(k: Kernel, a: Agent, dev_slot: Any, tokens: Any, rights: Any = None) -> int:
    """A child of a device capability with a token budget (charged with every
    ancestor's); returns its slot."""
    cap = a.cspace.lookup(dev_slot, ObjKind.DEVICE, Rights.NONE)
    n = as_int(tokens, "tokens", 0, MAX_BUDGET)
    r = cap.rights if rights is None else rights_from_names(rights) & DEV_RIGHTS
    return service(k).budget(a, cap, n, r)


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.LLM_CHAT: sys_llm_chat,
    Sys.LLM_RECV: sys_llm_recv,
    Sys.LLM_CANCEL: sys_llm_cancel,
    Sys.LLM_STATS: sys_llm_stats,
    Sys.LLM_BUDGET: sys_llm_budget,
}
