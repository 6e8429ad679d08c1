"""Frames, regions, page tables and pools."""

from __future__ import annotations

import pytest

from aios.abi.errors import InvalidArgument, KernelPanic, OutOfMemory, PermissionDenied
from aios.kernel.arena import PROT_READ, PROT_WRITE, FrameAllocator, PageTable, Pool, Region


def test_frame_allocator_first_fit_and_coalesce() -> None:
    fa = FrameAllocator(16)
    a = fa.alloc(4)
    b = fa.alloc(4)
    c = fa.alloc(8)
    assert (a, b, c) == (0, 4, 8)
    with pytest.raises(OutOfMemory):
        fa.alloc(1)
    fa.free(b, 4)
    fa.free(a, 4)
    assert fa.alloc(8) == 0  # the two runs coalesced
    fa.free(0, 8)
    fa.free(8, 8)
    assert fa.free_frames == 16 and fa.alloc(16) == 0


def test_double_free_is_a_panic_not_corruption() -> None:
    fa = FrameAllocator(8)
    s = fa.alloc(2)
    fa.free(s, 2)
    with pytest.raises(KernelPanic):
        fa.free(s, 2)


def test_page_table_translation_and_permissions() -> None:
    pt = PageTable()
    r = Region(1, 10, 2, 5000)
    vpn = pt.map(None, r, PROT_READ, cap=None)
    base = vpn * 4096
    assert pt.translate(base + 100, 10, PROT_READ) == (r, 100)
    with pytest.raises(PermissionDenied):
        pt.translate(base, 10, PROT_WRITE)
    with pytest.raises(PermissionDenied):
        pt.translate(base + 4990, 20, PROT_READ)  # past the region's bytes
    with pytest.raises(PermissionDenied):
        pt.translate(4096, 1, PROT_READ)  # unmapped
    with pytest.raises(InvalidArgument):
        pt.map(vpn + 1, Region(2, 20, 1, 4096), PROT_READ, cap=None)  # overlap
    pt.unmap(vpn)
    assert r.mappings == []


def test_pool_free_list() -> None:
    p = Pool(Region(1, 0, 1, 4096), 64, 4)
    got = [p.alloc() for _ in range(4)]
    assert sorted(got) == [0, 1, 2, 3]
    with pytest.raises(OutOfMemory):
        p.alloc()
    p.release(2)
    assert p.alloc() == 2
    with pytest.raises(InvalidArgument):
        p.release(9)
    p.release(1)
    with pytest.raises(InvalidArgument):
        p.release(1)
