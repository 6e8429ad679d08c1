"""A damaged memory store reaches agents as EIO naming the file, never as KernelPanic
(finding 6 of the robustness review)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aios.abi.errors import KernelPanic, StorageError
from aios.host import run_async, run_sync, start_kernel
from aios.kernel.clock import MonotonicClock
from aios.sdk import Context
from aios.sdk import syscalls as sc


def test_a_corrupt_memory_store_is_a_storage_error(tmp_path: Path) -> None:
    home = tmp_path / "h"
    store = home / "memory" / "memory.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"definitely not sqlite " * 400)

    async def main(ctx: Context) -> Any:
        try:
            await sc.memd_create(ctx.slots.authority, "notes")
        except StorageError as e:
            return {"name": e.name, "message": e.message}
        except KernelPanic as e:
            return {"name": e.name, "message": "panic: " + e.message}
        return "created"

    k = start_kernel(clock=MonotonicClock(), arena_bytes=1 << 22, home=home, behavior=False,
                     embedder="hashing")
    try:
        (r,) = run_sync(run_async(k, main)).values()
        panics = k.stats["panics"]
    finally:
        k.close()
    out = r["exit"]
    assert isinstance(out, dict) and out["name"] == "EIO", out
    assert str(store) in out["message"] and "backup" in out["message"]
    assert panics == 0
