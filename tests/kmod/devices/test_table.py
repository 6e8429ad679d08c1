"""The device bus in a kernel: opening needs the class's right, plugging is
atomic, unplugged devices' capabilities go stale, accelerators are probed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject, PermissionDenied
from aios.host import start_kernel
from aios.kernel.clock import VirtualClock
from aios.kernel.kernel import Kernel
from aios.kmod.devices.table import DeviceRef, table
from aios.lib.devices import Accelerator, DriverSpec
from aios.sdk import syscalls as sc


@pytest.fixture
def k() -> Iterator[Kernel]:
    k = start_kernel(clock=VirtualClock(), arena_bytes=1 << 26, llm="off")
    yield k
    k.close()


def gpus() -> list[Accelerator]:
    return [Accelerator("nvidia", "gpu", 0, "Test GPU", "GPU-0000", 16384)]


def test_probe_plugs_accelerators_and_events_follow(k: Kernel) -> None:
    seen: list[str] = []
    k.bus.subscribe("dev.*", callback=lambda ev: seen.append(f"{ev.topic}:{ev.data['device']}"))
    t = table(k)
    (g,) = t.probe(gpus)
    assert g.id == "gpu0" and g.capabilities["memory_mib"] == 16384
    assert t.probe(gpus) == []  # already there
    assert seen == ["dev.added:gpu0"]


def test_a_class_module_that_refuses_leaves_no_device(k: Kernel) -> None:
    t = table(k)
    t.register_driver(DriverSpec("bad-llm", "llm", "1.0.0", lambda **cfg: object()))
    seen: list[str] = []
    k.bus.subscribe("dev.*", callback=lambda ev: seen.append(ev.topic))
    with pytest.raises(InvalidArgument):
        t.plug("bad-llm", device_id="x0")  # the llm module wants a chat driver
    assert t.ls() == [] and seen == []
    with pytest.raises(InvalidArgument):
        t.plug("bad-llm", {"unknown": 1})  # the factory's TypeError is an argument error
    t.register_driver(DriverSpec("plain", "gpu", "1.0.0", lambda **cfg: object()))
    t.plug("plain", device_id="g1")
    with pytest.raises(AlreadyExists):
        t.plug("plain", device_id="g1")


def test_an_unplugged_device_is_unreachable_through_old_capabilities(k: Kernel) -> None:
    t = table(k)
    t.register_driver(DriverSpec("plain", "gpu", "1.0.0", lambda **cfg: object()))
    t.plug("plain", device_id="g1")
    old = t.object("g1")
    assert t.resolve(old).id == "g1"
    t.unplug("g1")
    t.plug("plain", device_id="g1")  # the same id again: a new generation
    with pytest.raises(NoSuchObject):
        t.resolve(old)
    assert isinstance(t.object("g1").payload, DeviceRef)
    assert t.resolve(t.object("g1")).id == "g1"


def test_opening_a_gpu_needs_access_gpu_and_hotplug_needs_admin() -> None:
    async def agent(ctx: Any) -> Any:
        out = []
        for call in (lambda: sc.dev_open(ctx.slots.authority, "gpu0"),
                     lambda: sc.dev_remove(ctx.slots.authority, "gpu0"),
                     lambda: sc.dev_health(ctx.slots.authority, "gpu0", "failed")):
            try:
                out.append(await call())
            except PermissionDenied as e:
                out.append(e.name)
        out.append((await sc.dev_health(ctx.slots.authority, "gpu0"))["health"])
        return out

    def with_gpu(kk: Kernel, _cfg: Any) -> None:
        table(kk).probe(gpus)

    from aios.boot import BootConfig, boot
    from aios.host import run_async, run_sync
    from aios.sdk.agent import load_entry

    for rights, first in ((["ACCESS_GPU"], int), ([], str)):
        kk = boot(BootConfig(clock=VirtualClock(), loader=load_entry, llm="off",
                             extra_steps=[with_gpu]))
        try:
            (r,) = run_sync(run_async(kk, agent, rights=rights)).values()
        finally:
            kk.close()
        assert r["fault"] is None, r["fault"]
        got = r["exit"]
        assert isinstance(got[0], first) and got[1:] == ["EPERM", "EPERM", "ok"]
