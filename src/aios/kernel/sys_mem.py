"""Syscall shims for memory: allocation, frames, page mapping, pools, sharing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.abi import limits
from aios.abi.errors import InvalidArgument, PermissionDenied
from aios.abi.rights import MEM_RIGHTS, ObjKind, Rights, rights_from_names
from aios.abi.slots import SLOT_AUTHORITY
from aios.kernel.agents import Agent
from aios.kernel.arena import PROT_READ, PROT_WRITE, Pool, Region
from aios.kernel.args import as_int
from aios.kernel.capabilities import Capability
from aios.kernel.quotas import Resource

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel



def _region_cap(a: Agent, slot: Any) -> tuple[Capability, Region]:
    cap = a.cspace.get(slot)
    if cap.obj.kind not in (ObjKind.MEMORY, ObjKind.POOL):
        from aios.abi.errors import InvalidCapability

        raise InvalidCapability(f"slot {slot} holds a {cap.obj.kind.name}, not memory")
    payload = cap.obj.payload
    if payload is None:
        from aios.abi.errors import InvalidCapability

        raise InvalidCapability(f"slot {slot} names freed memory")
    obj = payload[0]
    region = obj.region if isinstance(obj, Pool) else obj
    return cap, region


def _perms_of(rights: Rights) -> int:
    return (PROT_READ if rights & Rights.READ else 0) | (PROT_WRITE if rights & Rights.WRITE else 0)


def sys_agent_mem_alloc(k: Kernel, a: Agent, auth_slot: Any, size: Any) -> tuple[int, int]:
    """Allocate ``size`` bytes (<= 1 GiB) against the quota and map them; ``(slot, vaddr)``."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ALLOC_MEMORY)
    size = as_int(size, "size", 1, limits.AGENT_MEM_ALLOC_MAX)
    obj = k.new_region(auth, size)
    cap = k.cdt.root(a.cspace, obj, MEM_RIGHTS)
    vpn = a.pt.map(None, obj.payload[0], PROT_READ | PROT_WRITE, cap)
    return cap.slot, vpn * limits.PAGE_SIZE


def sys_agent_mem_free(k: Kernel, a: Agent, slot: Any) -> None:
    """Unmap and drop this capability; the memory is freed with its last capability."""
    cap, _ = _region_cap(a, slot)
    a.pt.unmap_cap(cap)
    k.cdt.delete(cap)


def sys_frame_alloc(k: Kernel, a: Agent, auth_slot: Any, nframes: Any) -> int:
    """Allocate ``nframes`` contiguous frames, unmapped; returns the region's slot."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ALLOC_MEMORY)
    n = as_int(nframes, "nframes", 1, limits.AGENT_MEM_ALLOC_MAX // limits.PAGE_SIZE)
    obj = k.new_region(auth, n * limits.PAGE_SIZE)
    return k.cdt.root(a.cspace, obj, MEM_RIGHTS).slot


def sys_page_map(k: Kernel, a: Agent, slot: Any, vaddr: Any = None, rights: Any = None) -> int:
    """Map a region at ``vaddr`` (page aligned; None: next free) with at most the cap's rights."""
    cap, region = _region_cap(a, slot)
    want = cap.rights & (Rights.READ | Rights.WRITE) if rights is None else rights_from_names(rights)
    if want & ~cap.rights & (Rights.READ | Rights.WRITE):
        raise PermissionDenied(f"slot {slot} does not allow that mapping")
    if not want & Rights.READ:
        raise InvalidArgument("a mapping must be readable")
    vpn = None
    if vaddr is not None:
        vaddr = as_int(vaddr, "vaddr", limits.PAGE_SIZE)
        if vaddr % limits.PAGE_SIZE:
            raise InvalidArgument("vaddr must be page aligned")
        vpn = vaddr // limits.PAGE_SIZE
    mapped: int = a.pt.map(vpn, region, _perms_of(want), cap)
    return mapped * limits.PAGE_SIZE


def sys_page_unmap(k: Kernel, a: Agent, vaddr: Any) -> None:
    vaddr = as_int(vaddr, "vaddr", 0)
    if vaddr % limits.PAGE_SIZE:
        raise InvalidArgument("vaddr must be page aligned")
    a.pt.unmap(vaddr // limits.PAGE_SIZE)


def sys_mem_read(k: Kernel, a: Agent, vaddr: Any, length: Any) -> bytes:
    length = as_int(length, "length", 0, limits.MEM_IO_MAX)
    region, off = a.pt.translate(vaddr, length, PROT_READ)
    start = region.offset + off
    return bytes(k.arena.view[start : start + length])


def sys_mem_write(k: Kernel, a: Agent, vaddr: Any, data: Any) -> None:
    if type(data) is not bytes:
        raise InvalidArgument("data must be bytes")
    if len(data) > limits.MEM_IO_MAX:
        raise InvalidArgument(f"at most {limits.MEM_IO_MAX} bytes per write")
    region, off = a.pt.translate(vaddr, len(data), PROT_WRITE)
    start = region.offset + off
    k.arena.view[start : start + len(data)] = data


def sys_mem_view(k: Kernel, a: Agent, vaddr: Any, length: Any) -> memoryview:
    """A direct view for in-process agents (read-only unless mapped writable).

    Trusted-code convenience: a view cannot be taken back when a capability is
    revoked, so untrusted agents (other executors) use MemRead/MemWrite only."""
    if a.executor is not None:
        raise InvalidArgument("direct memory views exist only in the in-process executor")
    length = as_int(length, "length", 1, limits.AGENT_MEM_ALLOC_MAX)
    try:
        region, off = a.pt.translate(vaddr, length, PROT_READ | PROT_WRITE)
        writable = True
    except PermissionDenied:
        region, off = a.pt.translate(vaddr, length, PROT_READ)
        writable = False
    start = region.offset + off
    view = k.arena.view[start : start + length]
    return view if writable else view.toreadonly()


def sys_mem_share(k: Kernel, a: Agent, slot: Any, ep_slot: Any, rights: Any = None) -> int:
    """Grant a memory capability (read-only or read-write) to the owner of ``ep_slot``."""
    from aios.kernel.sys_cap import grant

    cap, _ = _region_cap(a, slot)
    r = Rights.READ if rights is None else rights_from_names(rights)
    if r & ~(Rights.READ | Rights.WRITE | Rights.GRANT):
        raise InvalidArgument("memory rights are READ, WRITE and GRANT")
    return grant(k, a, cap, ep_slot, r & cap.rights, b"")


def sys_pool_create(k: Kernel, a: Agent, auth_slot: Any, obj_size: Any, count: Any) -> tuple[int, int]:
    """A pool of ``count`` objects of ``obj_size`` bytes, mapped; ``(slot, vaddr)``."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ALLOC_MEMORY)
    size = as_int(obj_size, "obj_size", 1, limits.PAGE_SIZE * 16)
    n = as_int(count, "count", 1, limits.POOL_MAX_OBJECTS)
    if size * n > limits.AGENT_MEM_ALLOC_MAX:
        raise InvalidArgument("pool larger than the allocation limit")
    obj = k.new_region(auth, size * n)
    region, chg = obj.payload
    obj.kind = ObjKind.POOL
    pool = Pool(region, size, n)
    obj.payload = (pool, chg)
    cap = k.cdt.root(a.cspace, obj, MEM_RIGHTS)
    vpn = a.pt.map(None, region, PROT_READ | PROT_WRITE, cap)
    pool.vbase = vpn * limits.PAGE_SIZE
    return cap.slot, pool.vbase


def _pool(a: Agent, slot: Any) -> Pool:
    cap = a.cspace.lookup(slot, ObjKind.POOL, Rights.WRITE)
    if cap.obj.payload is None:
        from aios.abi.errors import InvalidCapability

        raise InvalidCapability(f"slot {slot} names a freed pool")
    pool: Pool = cap.obj.payload[0]
    return pool


def sys_agent_pool_alloc(k: Kernel, a: Agent, slot: Any) -> int:
    """One object from the pool's free list; returns its byte offset in the pool."""
    pool = _pool(a, slot)
    return pool.alloc() * pool.obj_size


def sys_pool_free(k: Kernel, a: Agent, slot: Any, offset: Any) -> None:
    pool = _pool(a, slot)
    off = as_int(offset, "offset", 0)
    if off % pool.obj_size:
        raise InvalidArgument("offset is not an object boundary")
    pool.release(off // pool.obj_size)


def sys_mem_stat(k: Kernel, a: Agent) -> dict[str, Any]:
    try:
        auth = a.cspace.get(SLOT_AUTHORITY)
        used = auth.used[Resource.MEMORY] if auth.used is not None else 0
        limit = auth.limits[Resource.MEMORY] if auth.limits is not None else None
    except Exception:
        used, limit = 0, None
    return {
        "mappings": [
            {"vaddr": m.vpn * limits.PAGE_SIZE, "bytes": m.region.nbytes, "perms": m.perms}
            for m in a.pt.mappings()
        ],
        "quota_used": used,
        "quota_limit": limit,
        "arena_free_frames": k.arena.frames.free_frames,
        "page_size": limits.PAGE_SIZE,
    }
