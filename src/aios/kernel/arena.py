"""The agent memory arena: one shared memfd, frames, regions, page tables and pools.

Physical memory, for AIOS, is one ``memfd`` arena mapped into the kernel
(``limits.ARENA_BYTES``, sparse: a page costs RAM only once touched).  It is
cut into 4 KiB *frames*; :class:`FrameAllocator` hands out contiguous runs
first-fit from a sorted list of free extents and coalesces on free.

A :class:`Region` is a run of frames: the payload of a MEMORY kernel object,
so it is reached only through a capability, and it is freed when the last
capability to it is deleted.  Sharing memory between agents (the memory
fabric's kernel primitive, whitepaper 3.2) is granting a MEMORY capability,
read-only or read-write.

Each agent has a :class:`PageTable`: virtual page number to mapping
(region, permissions).  ``PageMap`` installs a mapping whose permissions are
at most the capability's rights; ``MemRead``/``MemWrite`` translate an
address, check the permission and touch the arena, so an agent only ever
reaches what is mapped for it, and a revoked capability unmaps the region
from every page table that mapped it through that capability.

A :class:`Pool` carves a region into fixed-size objects with a free list:
``AgentPoolAlloc`` is a list pop (the whitepaper's < 100 ns allocation).
"""

from __future__ import annotations

import bisect
import mmap
import os
from typing import Any

from aios.abi import limits
from aios.abi.errors import (
    InvalidArgument,
    KernelPanic,
    NoSuchObject,
    OutOfMemory,
    PermissionDenied,
)

PROT_READ = 1
PROT_WRITE = 2


class Arena:
    """The shared-memory arena: a memfd, mapped once by the kernel."""

    def __init__(self, size: int = limits.ARENA_BYTES) -> None:
        if size % limits.PAGE_SIZE:
            raise InvalidArgument("arena size must be a multiple of the page size")
        self.size = size
        self.fd = os.memfd_create("aios-arena", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self.frames = FrameAllocator(size // limits.PAGE_SIZE)

    def zero(self, frame: int, nframes: int) -> None:
        """Give freed frames back to the OS so the next owner sees zeros."""
        start, length = frame * limits.PAGE_SIZE, nframes * limits.PAGE_SIZE
        try:
            self.map.madvise(mmap.MADV_REMOVE, start, length)
        except (OSError, AttributeError, ValueError):
            self.view[start : start + length] = bytes(length)

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


class FrameAllocator:
    """First-fit over sorted free extents ``(start, length)``, coalescing on free."""

    def __init__(self, nframes: int) -> None:
        self.nframes = nframes
        self._starts: list[int] = [0]
        self._lens: list[int] = [nframes]
        self.free_frames = nframes

    def alloc(self, n: int) -> int:
        if n <= 0:
            raise InvalidArgument("frame count must be positive")
        for i, ln in enumerate(self._lens):
            if ln >= n:
                start = self._starts[i]
                if ln == n:
                    del self._starts[i]
                    del self._lens[i]
                else:
                    self._starts[i] = start + n
                    self._lens[i] = ln - n
                self.free_frames -= n
                return start
        raise OutOfMemory(f"no run of {n} free frames in the arena")

    def free(self, start: int, n: int) -> None:
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] < start + n:
            raise KernelPanic("double free of arena frames")
        if i > 0 and self._starts[i - 1] + self._lens[i - 1] > start:
            raise KernelPanic("double free of arena frames")
        self._starts.insert(i, start)
        self._lens.insert(i, n)
        self.free_frames += n
        # coalesce with the right neighbour, then the left
        if i + 1 < len(self._starts) and start + self._lens[i] == self._starts[i + 1]:
            self._lens[i] += self._lens[i + 1]
            del self._starts[i + 1]
            del self._lens[i + 1]
        if i > 0 and self._starts[i - 1] + self._lens[i - 1] == start:
            self._lens[i - 1] += self._lens[i]
            del self._starts[i]
            del self._lens[i]


class Region:
    """A run of frames; the payload of a MEMORY object."""

    __slots__ = ("frame", "mappings", "nbytes", "nframes", "rid")

    def __init__(self, rid: int, frame: int, nframes: int, nbytes: int) -> None:
        self.rid = rid
        self.frame = frame
        self.nframes = nframes
        self.nbytes = nbytes
        # (page table, vpn) pairs that map this region, for unmapping on revoke
        self.mappings: list[tuple[PageTable, int]] = []

    @property
    def offset(self) -> int:
        return self.frame * limits.PAGE_SIZE


class Mapping:
    __slots__ = ("cap", "npages", "perms", "region", "vpn")

    def __init__(self, vpn: int, region: Region, perms: int, cap: Any) -> None:
        self.vpn = vpn
        self.region = region
        self.npages = region.nframes
        self.perms = perms
        self.cap = cap


class PageTable:
    """One agent's virtual address space: sorted, non-overlapping mappings."""

    __slots__ = ("_maps", "_vpns", "next_vpn")

    def __init__(self) -> None:
        self._vpns: list[int] = []
        self._maps: list[Mapping] = []
        self.next_vpn = 16  # leave page 0.. unmapped, like a null guard

    def map(self, vpn: int | None, region: Region, perms: int, cap: Any) -> int:
        if vpn is None:
            vpn = self.next_vpn
        if type(vpn) is not int or vpn < 1 or vpn + region.nframes > limits.VADDR_PAGES:
            raise InvalidArgument("virtual page out of range")
        i = bisect.bisect_left(self._vpns, vpn)
        if i > 0:
            prev = self._maps[i - 1]
            if prev.vpn + prev.npages > vpn:
                raise InvalidArgument(f"virtual page {vpn} overlaps a mapping")
        if i < len(self._vpns) and self._vpns[i] < vpn + region.nframes:
            raise InvalidArgument(f"virtual page {vpn} overlaps a mapping")
        m = Mapping(vpn, region, perms, cap)
        self._vpns.insert(i, vpn)
        self._maps.insert(i, m)
        region.mappings.append((self, vpn))
        self.next_vpn = max(self.next_vpn, vpn + region.nframes + 1)
        return vpn

    def unmap(self, vpn: int) -> Mapping:
        i = bisect.bisect_left(self._vpns, vpn)
        if i >= len(self._vpns) or self._vpns[i] != vpn:
            raise NoSuchObject(f"nothing mapped at page {vpn}")
        m = self._maps.pop(i)
        del self._vpns[i]
        try:
            m.region.mappings.remove((self, vpn))
        except ValueError:
            raise KernelPanic("region lost track of a mapping") from None
        return m

    def unmap_region(self, region: Region) -> None:
        for pt, vpn in list(region.mappings):
            if pt is self:
                self.unmap(vpn)

    def unmap_cap(self, cap: Any) -> int:
        n = 0
        for m in [m for m in self._maps if m.cap is cap]:
            self.unmap(m.vpn)
            n += 1
        return n

    def translate(self, addr: Any, length: Any, need: int) -> tuple[Region, int]:
        """``(region, offset in region)`` for ``[addr, addr+length)`` with permission ``need``."""
        if type(addr) is not int or type(length) is not int or addr < 0 or length < 0:
            raise InvalidArgument("address and length must be non-negative ints")
        vpn = addr // limits.PAGE_SIZE
        i = bisect.bisect_right(self._vpns, vpn) - 1
        if i < 0:
            raise PermissionDenied(f"address {addr:#x} is not mapped")
        m = self._maps[i]
        base = m.vpn * limits.PAGE_SIZE
        off = addr - base
        if off + length > m.region.nbytes:
            raise PermissionDenied(f"[{addr:#x}, +{length}) is not mapped")
        if m.perms & need != need:
            raise PermissionDenied(f"address {addr:#x} is mapped without {'write' if need & PROT_WRITE else 'read'}")
        return m.region, off

    def mappings(self) -> list[Mapping]:
        return list(self._maps)

    def clear(self) -> None:
        for m in list(self._maps):
            self.unmap(m.vpn)


class Pool:
    """Fixed-size objects carved from a region, with a free list."""

    __slots__ = ("count", "free", "in_use", "obj_size", "region", "vbase")

    def __init__(self, region: Region, obj_size: int, count: int) -> None:
        self.region = region
        self.obj_size = obj_size
        self.count = count
        self.free = list(range(count - 1, -1, -1))
        self.in_use = bytearray(count)
        self.vbase = 0

    def alloc(self) -> int:
        if not self.free:
            raise OutOfMemory("pool exhausted")
        i = self.free.pop()
        self.in_use[i] = 1
        return i

    def release(self, i: Any) -> None:
        if type(i) is not int or not 0 <= i < self.count or not self.in_use[i]:
            raise InvalidArgument(f"object {i!r} is not allocated from this pool")
        self.in_use[i] = 0
        self.free.append(i)


def pages_for(nbytes: int) -> int:
    return (nbytes + limits.PAGE_SIZE - 1) // limits.PAGE_SIZE
