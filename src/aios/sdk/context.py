"""What an agent receives: its :class:`Context`.

An agent is an ``async def main(ctx)`` function or an :class:`~aios.sdk.agent.Agent`
subclass; either way it reaches the kernel only through ``ctx`` (or the raw
wrappers in :mod:`aios.sdk.syscalls`), and every method here is one or two
traps.  Slots are plain ints: the capability slots of the agent's own
capability space.  Well-known ones are on ``ctx.slots``:

=========  ==============================================================
self       control of itself (READ)
mailbox    its own mailbox (READ to receive, WRITE, GRANT)
authority  rights and quotas it was spawned with (SPAWN_AGENT, ALLOC_MEMORY, ...)
directory  the name service (READ lookup; WRITE register if granted)
events     the event bus (READ subscribe; WRITE publish under ``app.``)
parent     its parent's mailbox (WRITE), badged with this agent's id
=========  ==============================================================

Naming follows trio: ``x`` blocks, ``x_nowait`` raises
:class:`~aios.abi.errors.WouldBlock` instead of waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aios.abi.errors import WouldBlock
from aios.abi.slots import SLOT_AUTHORITY
from aios.sdk import syscalls as sc


@dataclass(frozen=True, slots=True)
class Slots:
    self: int = 0
    mailbox: int = 1
    authority: int = SLOT_AUTHORITY
    directory: int = 3
    events: int = 4
    parent: int = 5


@dataclass(frozen=True, slots=True)
class Child:
    """A spawned agent as its parent sees it: id, control slot, endpoint slot."""

    aid: int
    ctl: int
    ep: int


def entry_for(target: Any) -> Any:
    """The kernel-side start function for an agent function, class or 'module:attr' name."""
    if isinstance(target, str):
        return target
    from aios.sdk.agent import start_function

    return start_function(target)


class Context:
    """The agent's handle on AIOS.  One per agent; cheap."""

    __slots__ = ("_llm", "aid", "name", "parent", "slots", "spec", "state")

    def __init__(self, info: dict[str, Any]) -> None:
        self.aid: int = info["aid"]
        self.name: str = info["name"]
        self.parent: int = info["parent"]
        self.state: dict[str, Any] = info["state"]
        self.spec: dict[str, Any] = info["spec"]
        self.slots = Slots()
        self._llm: Any = None

    @property
    def llm(self) -> Any:
        """The agent's language model (:class:`aios.sdk.llm.LLM`): ``await ctx.llm.chat(...)``."""
        if self._llm is None:
            from aios.sdk.llm import LLM

            self._llm = LLM()
        return self._llm

    # -- agents ----------------------------------------------------------------

    async def spawn(self, target: Any, *, authority: int | None = None, **opts: Any) -> Child:
        """Spawn ``target`` (async function, Agent class or 'module:attr') as a child."""
        handle = await sc.agent_spawn(
            self.slots.authority if authority is None else authority, entry_for(target), opts or None
        )
        aid, ctl, ep = await sc.get_async_result(handle)
        return Child(aid, ctl, ep)

    async def clone(self, **opts: Any) -> Child:
        return Child(*await sc.agent_clone(self.slots.authority, opts or None))

    async def specialize(self, spec: dict[str, Any], **opts: Any) -> Child:
        if "entry" in opts:
            opts["entry"] = entry_for(opts["entry"])
        return Child(*await sc.agent_specialize(self.slots.authority, spec, opts or None))

    async def split(self, splitter: Any, router: Any = None, **opts: Any) -> Child:
        return Child(*await sc.agent_split(self.slots.authority, splitter, router, opts or None))

    async def merge(self, other_ctl: int, merger: Any = None, *, survivor: int | None = None) -> None:
        await sc.agent_merge(self.slots.self if survivor is None else survivor, other_ctl, merger)

    async def upgrade(self, ctl: int, target: Any) -> None:
        await sc.agent_upgrade(ctl, entry_for(target))

    async def kill(self, ctl: int, *, tree: bool = False) -> None:
        await sc.agent_kill(ctl, tree)

    async def suspend(self, ctl: int) -> None:
        await sc.agent_suspend(ctl)

    async def resume(self, ctl: int) -> None:
        await sc.agent_resume(ctl)

    async def wait(self, child: int = 0, timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        aid, status = await sc.wait_child(child, timeout)
        return aid, status

    async def info(self, ctl: int = 0) -> dict[str, Any]:
        r: dict[str, Any] = await sc.agent_info(ctl)
        return r

    async def exit(self, status: Any = None) -> None:
        await sc.exit(status)

    async def register(self, name: str, ep: int | None = None) -> None:
        await sc.agent_register(self.slots.directory, name, self.slots.mailbox if ep is None else ep)

    async def lookup(self, name: str) -> int:
        slot: int = await sc.agent_lookup(self.slots.directory, name)
        return slot

    async def become_supervisor(self) -> None:
        await sc.agent_supervisor_register(self.slots.authority)

    async def save_state(self) -> None:
        """Push ``ctx.state`` to the kernel (needed only outside the in-process executor)."""
        await sc.agent_set_state(self.state)

    # -- IPC -----------------------------------------------------------------

    async def send(self, ep: int, payload: bytes, durable: bool = False) -> None:
        """Send ``payload``; ``durable``: it survives a kernel crash, and the call returns once
        the kernel journal has it on disk."""
        if durable:
            await sc.ipc_send_durable(ep, payload)
        else:
            await sc.ipc_send(ep, payload)

    async def checkpoint(self, state: dict[str, Any] | None = None) -> int:
        """Save ``state`` (default ``ctx.state``) in the kernel journal; after a crash the agent
        restarts from its entry with the latest checkpoint as its state."""
        return int(await sc.agent_checkpoint(self.state if state is None else state))

    async def send_nowait(self, ep: int, payload: bytes) -> None:
        await sc.ipc_send_nowait(ep, payload)

    async def send_many(self, ep: int, payloads: list[bytes], durable: bool = False) -> None:
        """Send all ``payloads`` in batches, waiting for room as needed (``durable``: each
        batch is answered once journaled; a full mailbox is retried after a yield)."""
        i = 0
        while i < len(payloads):
            if not durable:
                i += await sc.ipc_send_batch(ep, payloads[i : i + 4096])
                continue
            try:
                i += await sc.ipc_send_durable(ep, payloads[i : i + 4096])
            except WouldBlock:
                await sc.yield_()

    async def recv(self, timeout: float | None = None, ep: int = 1) -> Any:
        return await sc.ipc_recv(ep, timeout)

    async def recv_nowait(self, ep: int = 1) -> Any:
        return await sc.ipc_recv_nowait(ep)

    async def recv_many(self, max_n: int = 256, timeout: float | None = None, ep: int = 1) -> list[Any]:
        r: list[Any] = await sc.ipc_recv_batch(ep, max_n, timeout)
        return r

    async def call(self, ep: int, payload: bytes, timeout: float | None = None) -> bytes:
        r: bytes = await sc.ipc_call(ep, payload, timeout)
        return r

    async def reply(self, msg: Any, payload: bytes) -> None:
        await sc.ipc_reply(msg.call, payload)

    # -- capabilities --------------------------------------------------------------

    async def mint(self, slot: int, rights: Any, badge: int = 0, quota: dict[str, int] | None = None) -> int:
        r: int = await sc.cap_mint(slot, rights, badge, quota)
        return r

    async def copy(self, slot: int) -> int:
        r: int = await sc.cap_copy(slot)
        return r

    async def grant(self, slot: int, ep: int, rights: Any = None, payload: bytes = b"") -> int:
        r: int = await sc.cap_grant(slot, ep, rights, payload)
        return r

    async def revoke(self, slot: int) -> int:
        r: int = await sc.cap_revoke(slot)
        return r

    async def delete(self, slot: int) -> None:
        await sc.cap_delete(slot)

    async def inspect(self, slot: int) -> dict[str, Any]:
        r: dict[str, Any] = await sc.cap_inspect(slot)
        return r

    async def caps(self) -> list[dict[str, Any]]:
        r: list[dict[str, Any]] = await sc.cap_list()
        return r

    # -- memory ----------------------------------------------------------------

    async def alloc(self, size: int) -> tuple[int, int]:
        """``(slot, vaddr)`` of ``size`` fresh bytes mapped read-write."""
        slot, vaddr = await sc.agent_mem_alloc(self.slots.authority, size)
        return slot, vaddr

    async def free(self, slot: int) -> None:
        await sc.agent_mem_free(slot)

    async def read(self, vaddr: int, length: int) -> bytes:
        r: bytes = await sc.mem_read(vaddr, length)
        return r

    async def write(self, vaddr: int, data: bytes) -> None:
        await sc.mem_write(vaddr, data)

    async def map(self, slot: int, vaddr: int | None = None, rights: Any = None) -> int:
        r: int = await sc.page_map(slot, vaddr, rights)
        return r

    async def unmap(self, vaddr: int) -> None:
        await sc.page_unmap(vaddr)

    async def share(self, slot: int, ep: int, rights: Any = ("READ",)) -> int:
        r: int = await sc.mem_share(slot, ep, list(rights))
        return r

    async def view(self, vaddr: int, length: int) -> memoryview:
        r: memoryview = await sc.mem_view(vaddr, length)
        return r

    # -- events ----------------------------------------------------------------

    async def publish(self, topic: str, **data: Any) -> int:
        r: int = await sc.event_publish(self.slots.events, topic, data)
        return r

    async def subscribe(self, pattern: str, **opts: Any) -> int:
        r: int = await sc.event_subscribe(self.slots.events, pattern, opts or None)
        return r

    async def next_event(self, sid: int, timeout: float | None = None) -> dict[str, Any]:
        r: dict[str, Any] = await sc.event_recv(sid, timeout)
        return r

    async def unsubscribe(self, sid: int) -> dict[str, Any]:
        r: dict[str, Any] = await sc.event_unsubscribe(sid)
        return r

    # -- time, async, crypto -----------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        await sc.sleep(seconds)

    async def yield_(self) -> None:
        await sc.yield_()

    async def now_ns(self) -> int:
        r: int = await sc.clock()
        return r

    async def pqc(self, op: str, **args: bytes | str) -> dict[str, Any]:
        """Run an ML-KEM / ML-DSA operation off the kernel thread and wait for it."""
        handle = await sc.pqc_operation(op, args)
        r: dict[str, Any] = await sc.get_async_result(handle)
        return r

    async def stats(self) -> dict[str, Any]:
        r: dict[str, Any] = await sc.kernel_stats()
        return r
