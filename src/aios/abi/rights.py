"""Rights and object kinds: what a capability names and what it allows.

Both sides of the trap use these: the kernel checks them, the SDK and the
CLI name them.  ``MEM_RIGHTS`` is the most a memory region or memory-fabric
namespace capability carries.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Any

from aios.abi.errors import InvalidArgument


class Rights(IntFlag):
    """Rights a capability can carry.  READ/WRITE/GRANT apply to any object;
    the rest are the whitepaper's authority rights (section 3.3)."""

    NONE = 0
    READ = 1 << 0
    WRITE = 1 << 1
    GRANT = 1 << 2
    SPAWN_AGENT = 1 << 3
    KILL_AGENT = 1 << 4
    ALLOC_MEMORY = 1 << 5
    ACCESS_FS = 1 << 6
    ACCESS_NET = 1 << 7
    ACCESS_GPU = 1 << 8
    ACCESS_TPU = 1 << 9
    ACCESS_NPU = 1 << 10
    SUPERVISOR = 1 << 11
    ADMIN = 1 << 12
    SEMANTIC_SEND = 1 << 13


ALL_RIGHTS = Rights((1 << 14) - 1)
RIGHT_NAMES: tuple[str, ...] = tuple(m.name for m in Rights if m.value and m.name is not None)
RW = Rights.READ | Rights.WRITE


def rights_from_names(names: Any) -> Rights:
    """``["READ", "WRITE"]`` (or an int) to :class:`Rights`; unknown names are an error."""
    if isinstance(names, bool):
        raise InvalidArgument("rights must be an int or a list of names")
    if isinstance(names, int):
        if names < 0 or names & ~int(ALL_RIGHTS):
            raise InvalidArgument(f"unknown rights bits in {names:#x}")
        return Rights(names)
    if isinstance(names, (list, tuple, set, frozenset)):
        out = Rights.NONE
        for n in names:
            if not isinstance(n, str) or n not in Rights.__members__:
                raise InvalidArgument(f"unknown right {n!r}")
            out |= Rights[n]
        return out
    raise InvalidArgument("rights must be an int or a list of names")


_RIGHT_BITS: tuple[tuple[str, int], ...] = tuple(
    (m.name, int(m.value)) for m in Rights if m.value and m.name is not None
)


def rights_names(r: Rights | int) -> list[str]:
    """Names of the rights in ``r`` (a plain-int loop: iterating an IntFlag is slow)."""
    v = int(r)
    return [name for name, bit in _RIGHT_BITS if v & bit]


class ObjKind(IntEnum):
    AUTHORITY = 1
    AGENT = 2
    ENDPOINT = 3
    MEMORY = 4
    POOL = 5
    TOPIC = 6
    DEVICE = 7
    SERVICE = 8
    DIRECTORY = 9
    SYNC = 10
    MEMNS = 11  # a memory-fabric namespace (memoryd): READ, WRITE, GRANT


MEM_RIGHTS = Rights.READ | Rights.WRITE | Rights.GRANT


# A device capability (kind DEVICE: a language model, an accelerator) carries these.
DEV_USE = Rights.WRITE  # "use": submit work to the device (LLM_CHAT)
DEV_READ = Rights.READ  # see the device and one's own usage of it
DEV_ADMIN = Rights.ADMIN  # "admin": every client's usage, cancel anyone's request
DEV_RIGHTS = Rights.READ | Rights.WRITE | Rights.GRANT | Rights.ADMIN
