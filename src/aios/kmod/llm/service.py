"""Language models as kernel devices: one fair queue per model, calls as kernel objects.

Design
------
A language model is the scarce device of an agent OS, as the CPU is of a
classical one, and the kernel owns it the same way: agents never reach a
model directly, they make *calls* through a ``DEVICE`` capability and the
kernel decides who is served, charges what it costs and stops what it no
longer should.

**Devices.**  Every device of the bus's ``llm`` class (:mod:`aios.kmod.devices`)
is attached here as an :class:`LlmDevice`: its driver (anything with the
:class:`~aios.lib.llm.chat.ChatDriver` interface: the embedded llama.cpp model,
an OpenAI-compatible endpoint, a simulated one) and a
:class:`~aios.kernel.devqueue.DeviceQueue` with as many slots as the driver
has.  At boot, when ``xllamacpp`` is installed, the embedded model is plugged
as ``llm0``; it loads on its first request.

**A call** (``LLM_CHAT``) is checked and admitted on the kernel thread, at
once: the capability must carry ``use`` (WRITE) and name a device that is
still plugged; the request is validated into a
:class:`~aios.lib.llm.chat.ChatRequest` (bad input is ``InvalidArgument`` and
changes nothing); its worst case is reserved on the token budgets up the
capability chain (:mod:`aios.kmod.llm.budget`: over budget is
``QuotaExceeded`` *before anything is sent*); then it is submitted to the
device queue under the caller's agent id, with the weight of the caller's
scheduling entity (the CPU scheduler's weight table: nice 0 = 1024), its
priority class, optional deadline (EDF with admission control: ``Busy`` when
it cannot be met) and program id.  The caller gets a handle at once.

**Dispatch.**  Whenever a slot may be free, the queue picks who starts (VTC
token fairness across agents, EDF first, program-aware ranking) and each
started call becomes an asyncio task on the kernel's event loop streaming from
the driver.  Every text chunk is appended to the call's buffer, reported to the
queue as progress (so fairness counters move while a long answer streams) and
wakes the owner if it waits.  At the end the queue is told the model's own
token counts, the budget reservation is settled to what was really used, usage
is accounted per agent and per program and published as ``llm.usage``.

**Receiving** (``LLM_RECV``) returns what has streamed since the last receive
(text, and at the end the finish reason and usage), blocking while nothing
has: a streaming agent sees tokens as they come, a whole-answer agent asks to
be woken only at the end (one trap per call, not per token).

**Cancellation.**  ``LLM_CANCEL``, the owner's death (an agent-exit hook) and
device removal stop a call: the queue forgets it (its later reports charge no
fairness counter), the task is cancelled (the driver stops the generation on
the device: llama.cpp's stop flag, the HTTP stream closed) and the budget is
charged for the tokens seen until then and no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aios.abi.errors import (
    AgentGone,
    AIOSError,
    Cancelled,
    DeviceError,
    InvalidArgument,
    NoSuchObject,
    WouldBlock,
)
from aios.abi.rights import DEV_ADMIN, DEV_READ, DEV_USE, ObjKind, Rights
from aios.kernel.devqueue import DeviceQueue, Priority, ServiceModel
from aios.kernel.registry import Key
from aios.kernel.sched.fair import WEIGHT_MAX, WEIGHT_MIN
from aios.kernel.waits import WaitQueue
from aios.kmod.devices.table import DeviceTable
from aios.kmod.llm.budget import Budget, Budgets
from aios.lib.devices import Device, Health
from aios.lib.llm.chat import ChatChunk, ChatRequest, Usage, estimate_tokens

if TYPE_CHECKING:
    from aios.kernel.agents import Agent
    from aios.kernel.capabilities import Capability
    from aios.kernel.kernel import Kernel

log = logging.getLogger("aios.llm")

LLM_CLASS: Final = "llm"
CALLS_PER_AGENT: Final = 256  # outstanding calls (running, queued or unread) per agent
MAX_ACCOUNTS: Final = 4096  # usage records kept per table; the oldest of dead agents go first
TEMPLATE_TOKENS: Final = 8  # chat-template tokens per message (an upper estimate)
PROMPT_BASE: Final = 32  # tokens a chat template adds once (a default system prompt)
# a conservative figure for a device that states none: deadlines are admitted against it
DEFAULT_SERVICE: Final = ServiceModel(prefill_tokens_per_s=500.0, decode_tokens_per_s=10.0,
                                      device_tokens_per_s=40.0, deadline_share=0.5)


@dataclass(eq=False)
class Call:
    """One request of one agent on one device, from admission to the last receive."""

    handle: int
    owner: int
    device: LlmDevice
    request: ChatRequest
    prompt_est: int
    chain: list[Budget]
    reserved: int
    program: int | None
    submitted_ns: int
    qrid: int = 0
    prompt_base: int = 0  # the estimate before the device's learnt margin
    pieces: list[str] = field(default_factory=list)
    out: int = 0  # text chunks seen (one token each, until the model's own count)
    final: ChatChunk | None = None
    error: AIOSError | None = None
    done: bool = False
    whole: bool = False  # the owner waits for the end only
    waiters: WaitQueue = field(default_factory=WaitQueue)
    task: asyncio.Task[None] | None = None
    started_ns: int = 0
    first_ns: int = 0
    finished_ns: int = 0
    charged: int = 0
    usage: Usage = field(default_factory=Usage)


@dataclass(eq=False)
class LlmDevice:
    id: str
    driver: Any
    queue: DeviceQueue
    model: str
    slots: int
    running: dict[int, Call] = field(default_factory=dict)  # queue request id -> call
    prompt_margin: int = 0  # what the model's prompt counts exceeded our estimates by, at most
    usage: dict[int, dict[str, int]] = field(default_factory=dict)  # aid -> totals on this device
    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    gone: bool = False


def _new_usage() -> dict[str, int]:
    return {"requests": 0, "completed": 0, "cancelled": 0, "refused": 0,
            "prompt_tokens": 0, "completion_tokens": 0, "tokens_charged": 0,
            "served_cost": 0, "queue_wait_ns": 0, "time_ns": 0, "weight": 0}


class LlmService:
    """A kernel's language-model devices and the calls on them."""

    def __init__(self, k: Kernel, devices: DeviceTable) -> None:
        self.k = k
        self.table = devices
        self.devices: dict[str, LlmDevice] = {}
        self.calls: dict[int, Call] = {}
        self.by_owner: dict[int, set[int]] = {}
        self.budgets = Budgets()
        self.usage: dict[int, dict[str, int]] = {}  # aid -> totals
        self.programs: dict[tuple[int, int], dict[str, int]] = {}  # (aid, program) -> totals
        self._handles = itertools.count(1)
        self.closed = False

    # -- devices (the bus's class module) ---------------------------------------

    def attach(self, dev: Device, driver: Any) -> dict[str, Any]:
        if not (callable(getattr(driver, "stream", None)) and callable(getattr(driver, "info", None))):
            raise InvalidArgument(f"device {dev.id}: the backend is not a chat driver")
        info = driver.info()
        service = getattr(driver, "service_model", None) or DEFAULT_SERVICE
        q = DeviceQueue(self.k.clock, info.slots, service=service, preempt=False)
        self.devices[dev.id] = LlmDevice(dev.id, driver, q, info.model, info.slots)
        return {"model": info.model, "slots": info.slots, "context_tokens": info.context_tokens,
                "features": sorted(info.features)}

    def detach(self, dev: Device, driver: Any) -> None:
        d = self.devices.pop(dev.id, None)
        if d is None:
            return
        d.gone = True
        for call in list(d.running.values()) + [c for c in self.calls.values()
                                                 if c.device is d and not c.done]:
            self._stop(call, DeviceError(f"device {dev.id} was removed"))
        self._close_driver(driver)

    def _close_driver(self, driver: Any) -> None:
        close = getattr(driver, "aclose", None)
        if close is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        try:
            if loop is not None:
                loop.create_task(close())
            else:
                asyncio.run(close())
        except Exception as e:  # a driver that cannot close must not stop the others
            log.debug("closing an LLM driver failed: %r", e)

    def device_of(self, cap: Capability) -> LlmDevice:
        dev = self.table.resolve(cap.obj)
        if dev.device_class != LLM_CLASS:
            raise InvalidArgument(f"device {dev.id} is a {dev.device_class}, not a language model")
        d = self.devices.get(dev.id)
        if d is None:
            raise NoSuchObject(f"device {dev.id} has no model attached")
        return d

    # -- calls -------------------------------------------------------------------

    def submit(self, a: Agent, cap: Capability, request: ChatRequest, *,
               priority: Priority | None = None, deadline_ns: int | None = None,
               program: int | None = None) -> int:
        """Admit a call (or refuse it, changing nothing); returns its handle."""
        d = self.device_of(cap)
        if d.gone or self.closed:
            raise NoSuchObject(f"device {d.id} was removed")
        mine = self.by_owner.get(a.aid)
        if mine is not None and len(mine) >= CALLS_PER_AGENT:
            raise WouldBlock(f"{CALLS_PER_AGENT} calls outstanding: receive or cancel some first")
        est = sum(estimate_tokens(m.content) + TEMPLATE_TOKENS for m in request.messages)
        est += estimate_tokens(request.resume_text) + PROMPT_BASE
        prompt = est + d.prompt_margin
        worst = prompt + request.max_tokens
        chain = self.budgets.chain(cap)
        weight = max(WEIGHT_MIN, min(WEIGHT_MAX, int(getattr(a.sched, "weight", None) or 1024)))
        accts = [self._account(self.usage, a.aid), self._account(d.usage, a.aid)]
        accts[1]["weight"] = weight
        try:
            self.budgets.reserve(chain, worst)
        except AIOSError:
            for u in accts:
                u["refused"] += 1
            raise
        d.queue.set_weight(a.aid, weight)
        now = self.k.now()
        call = Call(next(self._handles), a.aid, d, request, prompt, chain, worst, program, now)
        call.prompt_base = est
        try:
            call.qrid = d.queue.submit(a.aid, prompt, request.max_tokens, priority=priority,
                                       deadline_ns=deadline_ns, program=program, payload=call)
        except AIOSError:
            Budgets.settle(chain, worst, 0)
            for u in accts:
                u["refused"] += 1
            raise
        self.calls[call.handle] = call
        self.by_owner.setdefault(a.aid, set()).add(call.handle)
        self.k.external += 1  # the kernel is not idle while a call may still produce
        d.requests += 1
        if program is not None:
            accts.append(self._account(self.programs, (a.aid, program)))
        for u in accts:
            u["requests"] += 1
        self._pump(d)
        return call.handle

    def _pump(self, d: LlmDevice) -> None:
        if d.gone:
            return
        disp = d.queue.dispatch()
        if not disp.start:
            return
        loop = asyncio.get_running_loop()
        now = self.k.now()
        for r in disp.start:
            call: Call = r.payload  # type: ignore[assignment]
            call.started_ns = now
            d.running[r.rid] = call
            call.task = loop.create_task(self._drive(d, call))

    async def _drive(self, d: LlmDevice, call: Call) -> None:
        final: ChatChunk | None = None
        err: AIOSError | None = None
        limit = call.request.max_tokens
        try:
            async with contextlib.aclosing(d.driver.stream(call.request)) as chunks:
                async for ch in chunks:
                    if ch.text:
                        call.pieces.append(ch.text)
                        call.out += 1
                        if not call.first_ns:
                            call.first_ns = self.k.now()
                        d.queue.progress(call.qrid, min(call.out, limit))
                    if ch.final:
                        final = ch
                    self._notify(call)
        except asyncio.CancelledError:
            return  # stopped by _stop, which settled everything
        except AIOSError as e:
            err = e
        except Exception as e:  # a driver's own failure is the device's, not the kernel's
            err = DeviceError(f"{d.id}: {e!r}")
        if call.done:
            return
        try:
            self._finish(call, final, err)
        except Exception as e:  # e.g. a driver reporting impossible counts: end the call anyway
            log.error("finishing a call on %s failed: %r", d.id, e)
            if not call.done:
                self._stop(call, DeviceError(f"{d.id}: {e!r}"))

    def _finish(self, call: Call, final: ChatChunk | None, err: AIOSError | None) -> None:
        d = call.device
        d.running.pop(call.qrid, None)
        usage = final.usage if final is not None and final.usage is not None else None
        out = usage.completion_tokens if usage is not None else call.out
        prompt = usage.prompt_tokens if usage is not None else call.prompt_est
        if usage is not None:  # learn how far the estimate fell short (a template's own text)
            d.prompt_margin = max(d.prompt_margin, usage.prompt_tokens - call.prompt_base)
        if err is None and final is None:
            err = DeviceError(f"{d.id}: the stream ended without a final chunk")
        with contextlib.suppress(NoSuchObject):
            d.queue.complete(call.qrid, min(out, call.request.max_tokens),
                             prompt if usage is not None else None)
        if err is not None:
            d.errors += 1
            self._health(d, Health.DEGRADED, str(err))
        else:
            d.completed += 1
            self._health(d, Health.OK)
        self._end(call, Usage(prompt, out), cancelled=False)
        call.final = final
        call.error = err
        self._notify(call)
        self._pump(d)

    def _stop(self, call: Call, err: AIOSError) -> None:
        """Stop a call that has not finished: the queue forgets it, the generation
        stops, the budget is charged for the tokens seen so far."""
        if call.done:
            return
        d = call.device
        d.queue.cancel(call.qrid)
        d.running.pop(call.qrid, None)
        t = call.task
        if t is not None and not t.done():
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing runs it
                t.cancel()
        d.cancelled += 1
        started = call.started_ns != 0
        self._end(call, Usage(call.prompt_est if started else 0, call.out), cancelled=True)
        call.error = err
        self._notify(call)
        if not d.gone:
            with contextlib.suppress(RuntimeError):
                self._pump(d)

    def _end(self, call: Call, usage: Usage, *, cancelled: bool) -> None:
        call.done = True
        call.finished_ns = self.k.now()
        call.usage = usage
        call.charged = Budgets.settle(call.chain, call.reserved, usage.total_tokens)
        self.k.external -= 1
        d = call.device
        d.tokens_in += usage.prompt_tokens
        d.tokens_out += usage.completion_tokens
        wait = (call.started_ns or call.finished_ns) - call.submitted_ns
        took = call.finished_ns - (call.started_ns or call.finished_ns)
        totals = [self._account(self.usage, call.owner), self._account(d.usage, call.owner)]
        if call.program is not None:
            totals.append(self._account(self.programs, (call.owner, call.program)))
        cost = d.queue.pricing.cost(usage.prompt_tokens, usage.completion_tokens)
        for u in totals:
            u["cancelled" if cancelled else "completed"] += 1
            u["prompt_tokens"] += usage.prompt_tokens
            u["completion_tokens"] += usage.completion_tokens
            u["tokens_charged"] += call.charged
            u["served_cost"] += cost
            u["queue_wait_ns"] += wait
            u["time_ns"] += took
        self.k.publish("llm.usage", call.owner, agent=call.owner, device=d.id, program=call.program,
                       prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                       charged=call.charged, cancelled=cancelled, queue_wait_ns=wait)
        self.k.kick()

    def _health(self, d: LlmDevice, h: Health, detail: str = "") -> None:
        try:
            if self.table.get(d.id).health is not h:
                self.table.set_health(d.id, h, detail[:200])
        except AIOSError as e:  # removed meanwhile, or a move the state machine refuses
            log.debug("health of %s: %r", d.id, e)

    def _account(self, table: dict[Any, dict[str, int]], key: Any) -> dict[str, int]:
        """The usage record of ``key`` (an agent id, or (agent id, program)); a full
        table first forgets its oldest records of agents that are gone."""
        u = table.get(key)
        if u is None:
            if len(table) >= MAX_ACCOUNTS:
                def gone(x: Any) -> bool:
                    ag = self.k.find(x[0] if isinstance(x, tuple) else x)
                    return ag is None or not ag.alive

                for old in [x for x in table if gone(x)][: MAX_ACCOUNTS // 4 or 1]:
                    del table[old]
            u = table[key] = _new_usage()
        return u

    # -- receiving -----------------------------------------------------------------

    def _owned(self, a: Agent, handle: Any) -> Call:
        call = self.calls.get(handle) if type(handle) is int else None
        if call is None or call.owner != a.aid:
            raise NoSuchObject(f"no LLM call {handle!r} of this agent")
        return call

    def recv(self, a: Agent, handle: Any, timeout: Any = None, whole: bool = False) -> Any:
        call = self._owned(a, handle)
        if call.done or (call.pieces and not whole):
            return self._take(call)
        if timeout == 0:
            raise WouldBlock("nothing new from the model yet")
        call.whole = whole
        return self.k.park(a, call.waiters, timeout)

    def _notify(self, call: Call) -> None:
        if not (call.done or (call.pieces and not call.whole)):
            return
        w = call.waiters.pop()
        if w is None:
            return
        try:
            value = self._take(call)
        except AIOSError as e:
            self.k.wake(w, None, e)
        else:
            self.k.wake(w, value)
        self.k.kick()

    def _take(self, call: Call) -> dict[str, Any]:
        text = "".join(call.pieces)
        call.pieces.clear()
        out: dict[str, Any] = {"text": text, "done": call.done}
        if not call.done:
            return out
        self._forget(call)
        if call.error is not None:
            raise call.error
        fin = call.final
        u = call.usage
        out.update({
            "finish_reason": fin.finish_reason if fin is not None else "cancelled",
            "tool_calls": [{"id": t.id, "name": t.name, "arguments": t.arguments}
                           for t in (fin.tool_calls if fin is not None else ())],
            "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                      "total_tokens": u.total_tokens, "charged_tokens": call.charged,
                      "queue_wait_ms": round(((call.started_ns or call.finished_ns)
                                              - call.submitted_ns) / 1e6, 3),
                      "time_ms": round((call.finished_ns - (call.started_ns or call.finished_ns))
                                       / 1e6, 3)},
            "device": call.device.id,
            "model": call.device.model,
        })
        return out

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.handle, None)
        mine = self.by_owner.get(call.owner)
        if mine is not None:
            mine.discard(call.handle)
            if not mine:
                del self.by_owner[call.owner]

    def cancel(self, a: Agent, handle: Any) -> dict[str, Any]:
        call = self._owned(a, handle)
        if not call.done:
            self._stop(call, Cancelled("the call was cancelled by its agent"))
        self._forget(call)
        return {"prompt_tokens": call.usage.prompt_tokens,
                "completion_tokens": call.usage.completion_tokens, "charged_tokens": call.charged}

    # -- agents and shutdown -----------------------------------------------------------

    def agent_exit(self, agent: Agent) -> None:
        """A dead agent's calls stop (queued ones dropped, running ones cancelled on
        the device); its tokens stop being charged."""
        handles = self.by_owner.pop(agent.aid, None)
        for h in handles or ():
            call = self.calls.pop(h, None)
            if call is not None and not call.done:
                self._stop(call, AgentGone(f"agent {agent.aid} exited"))
        for d in self.devices.values():
            d.queue.remove_client(agent.aid)
        self.budgets.forget(lambda cap: not cap.valid or cap.holder == agent.aid)

    def close(self) -> None:
        self.closed = True
        for call in list(self.calls.values()):
            if not call.done:
                self._stop(call, Cancelled("kernel shutdown"))
        self.calls.clear()
        self.by_owner.clear()

    # -- budgets and statistics ----------------------------------------------------------

    def budget(self, a: Agent, cap: Capability, tokens: Any, rights: Rights) -> int:
        """A child of ``cap`` in the caller's space carrying a token budget."""
        self.device_of(cap)
        child = self.k.cdt.derive(cap, a.cspace, rights)
        try:
            self.budgets.set(child, tokens)
        except AIOSError:
            self.k.cdt.delete(child)
            raise
        return child.slot

    def stats(self, a: Agent, cap: Capability | None) -> dict[str, Any]:
        if cap is None:
            held = []
            for c in a.cspace.caps():
                if c.obj.kind is ObjKind.DEVICE:
                    with contextlib.suppress(AIOSError):
                        d = self.device_of(c)
                        held.append({"slot": c.slot, "device": d.id, "model": d.model})
            return {"agent": a.aid, "devices": held,
                    "usage": dict(self.usage.get(a.aid) or _new_usage()),
                    "programs": {str(p): dict(u) for (aid, p), u in self.programs.items()
                                 if aid == a.aid}}
        d = self.device_of(cap)
        admin = bool(cap.rights & DEV_ADMIN)
        streaming: dict[int, list[int]] = {}  # aid -> [tokens, cost] of its calls still running
        for c in d.running.values():
            st = streaming.setdefault(c.owner, [0, 0])
            st[0] += c.out
            st[1] += d.queue.pricing.cost(c.prompt_est, c.out)
        total = sum(u["served_cost"] + streaming.get(key, [0, 0])[1]
                    for key, u in d.usage.items()) or 1
        live = set(d.queue.clients())
        clients: dict[str, Any] = {}
        for key, u in d.usage.items():
            if not (admin or key == a.aid):
                continue
            tok, cost = streaming.get(key, [0, 0])
            row: dict[str, Any] = {**u, "streaming_tokens": tok,
                                   "tokens_out": u["completion_tokens"] + tok,
                                   "share": round((u["served_cost"] + cost) / total, 4),
                                   "live": key in live, "queued": 0, "in_flight": 0}
            if key in live:
                q = d.queue.stats(key)
                row.update(queued=q["queued"], in_flight=q["in_flight"], counter=q["counter"],
                           effective_class=q["effective_class"])
            clients[str(key)] = row
        return {
            "device": d.id, "model": d.model, "slots": d.slots, "health": self.table.get(d.id).health.value,
            "in_flight": d.queue.in_flight, "queued": d.queue.queued(), "requests": d.requests,
            "completed": d.completed, "cancelled": d.cancelled, "errors": d.errors,
            "tokens_in": d.tokens_in, "tokens_out": d.tokens_out,
            "decisions": d.queue.decisions, "clients": clients,
            "budgets": [b.view() for b in self.budgets.chain(cap)],
        }



LLM: Key[LlmService] = Key("llm")
USE: Final = DEV_USE
READ: Final = DEV_READ


def install(k: Kernel, cfg: Any = None) -> LlmService:
    """The LLM device module: the bus's ``llm`` class served here, its syscall block
    (180-189), the agent-exit hook that cancels a dead agent's calls, and (when
    llama.cpp is installed) the embedded model plugged as ``llm0``."""
    from aios.kmod.devices.table import table
    from aios.kmod.llm.syscalls import HANDLERS
    from aios.lib.llm import drivers

    t = table(k)
    svc = LlmService(k, t)
    k.ext[LLM] = svc
    t.on_class(LLM_CLASS, svc.attach, svc.detach)
    for spec in (drivers.EMBEDDED, drivers.HTTP):
        t.register_driver(spec)
    k.registry.syscalls.block("llm").add_all(HANDLERS)
    k.registry.on_agent_exit(svc.agent_exit)
    k.registry.on_shutdown(svc.close, order=30)
    want = getattr(cfg, "llm", "auto")
    if want == "auto" and importlib.util.find_spec("xllamacpp") is not None:
        t.plug(drivers.EMBEDDED.name, device_id="llm0")
    return svc


def service(k: Kernel) -> LlmService:
    return k.ext[LLM]
