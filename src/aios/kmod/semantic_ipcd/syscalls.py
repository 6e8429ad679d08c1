"""semantic-ipcd's syscalls (block 120-139).

Thin shims on the kernel thread: each checks its arguments and capability
and hands over to :mod:`aios.kmod.semantic_ipcd.service`, which returns
an async handle (the routing runs on the memory fabric's worker).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.slots import SLOT_AUTHORITY
from aios.abi.sysno import Sys
from aios.kernel.agents import Agent
from aios.kmod.semantic_ipcd import service

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel


def sys_semantic_open(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY) -> int:
    """A send capability for semantic-ipcd; the authority must carry SEMANTIC_SEND."""
    slot: int = service.open_service(k, a, auth_slot)
    return slot


def sys_skill_register(k: Kernel, a: Agent, name: Any, description: Any, examples: Any = None,
                       opts: Any = None) -> int:
    h: int = service.register(k, a, name, description, examples, opts)
    return h


def sys_skill_unregister(k: Kernel, a: Agent, name: Any = None) -> int:
    h: int = service.unregister(k, a, name)
    return h


def sys_intent_send(k: Kernel, a: Agent, svc_slot: Any, intent: Any, payload: Any = None,
                    opts: Any = None) -> int:
    h: int = service.send_intent(k, a, svc_slot, intent, payload, opts)
    return h


def sys_semantic_status(k: Kernel, a: Agent, opts: Any = None) -> int:
    """semantic-ipcd's settings and skills; ``{"skill": name}`` explains one skill."""
    h: int = service.status(k, a, opts)
    return h


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.SEMANTIC_OPEN: sys_semantic_open,
    Sys.SKILL_REGISTER: sys_skill_register,
    Sys.SKILL_UNREGISTER: sys_skill_unregister,
    Sys.INTENT_SEND: sys_intent_send,
    Sys.SEMANTIC_STATUS: sys_semantic_status,
}
