"""The device bus core: classes, versioned drivers from entry points, hotplug
events, health transitions, accelerator discovery through a probe seam."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from aios.abi.errors import AlreadyExists, IllegalTransition, InvalidArgument, NoSuchObject
from aios.lib.devices import (
    Accelerator,
    DeviceBus,
    DriverSpec,
    Health,
    nvidia_probe,
    parse_nvidia_smi,
)

SMI = """0, NVIDIA H100 80GB HBM3, GPU-5f1c2b1e-aaaa-bbbb-cccc-000000000000, 81559
1, NVIDIA H100 80GB HBM3, GPU-6e2d3c2f-aaaa-bbbb-cccc-111111111111, 81559
garbage line
"""


def test_installed_llm_drivers_are_found_through_entry_points() -> None:
    bus = DeviceBus()
    names = {s.name for s in bus.discover()}
    assert {"llm-embedded", "llm-http"} <= names and bus.discovery_errors == []
    assert bus.driver("llm-http").device_class == "llm"


def test_a_broken_entry_point_is_recorded_not_fatal() -> None:
    good = DriverSpec("x-sim", "llm", "1.0.0")

    def eps(group: str) -> list[Any]:
        assert group == "aios.drivers"
        return [SimpleNamespace(name="good", value="m:good", load=lambda: good),
                SimpleNamespace(name="bad", value="m:bad", load=lambda: 1 / 0),
                SimpleNamespace(name="odd", value="m:odd", load=lambda: "not a spec")]

    bus = DeviceBus()
    assert bus.discover(eps) == [good]
    assert [n for n, _ in bus.discovery_errors] == ["bad", "odd"]


def test_newest_compatible_version_is_chosen() -> None:
    bus = DeviceBus()
    for v in ("1.0.0", "1.4.2", "2.0.1"):
        bus.register_driver(DriverSpec("llm-x", "llm", v))
    assert bus.driver("llm-x").version == "2.0.1"
    assert bus.driver("llm-x", "1.4.0").version == "2.0.1"
    with pytest.raises(NoSuchObject):
        bus.driver("llm-x", "3.0.0")
    with pytest.raises(AlreadyExists):
        bus.register_driver(DriverSpec("llm-x", "llm", "1.0.0"))
    with pytest.raises(InvalidArgument):
        DriverSpec("y", "llm", "1.0")
    with pytest.raises(NoSuchObject):
        bus.register_driver(DriverSpec("z", "quantum", "1.0.0"))


def test_hotplug_produces_events_in_order() -> None:
    bus = DeviceBus()
    bus.register_driver(DriverSpec("llm-x", "llm", "1.2.0"))
    a = bus.add("llm-x", {"slots": 4})
    b = bus.add("llm-x", {"slots": 8})
    assert (a.id, b.id) == ("llm0", "llm1") and a.driver_version == "1.2.0"
    bus.set_health("llm0", Health.OK)
    gone = bus.remove("llm1")
    assert gone.health is Health.REMOVED and [d.id for d in bus.ls("llm")] == ["llm0"]
    ev = bus.drain_events()
    assert [(e.seq, e.kind, e.device_id) for e in ev] == [
        (1, "added", "llm0"), (2, "added", "llm1"), (3, "health", "llm0"),
        (4, "removed", "llm1")]
    assert bus.drain_events() == []
    with pytest.raises(AlreadyExists):
        bus.add("llm-x", device_id="llm0")
    with pytest.raises(NoSuchObject):
        bus.remove("llm1")


def test_health_moves_only_along_the_table() -> None:
    bus = DeviceBus()
    bus.register_driver(DriverSpec("llm-x", "llm", "1.0.0"))
    bus.add("llm-x")
    bus.set_health("llm0", Health.DEGRADED, "slow")
    bus.set_health("llm0", Health.FAILED)
    before = bus.get("llm0")
    with pytest.raises(IllegalTransition):
        bus.set_health("llm0", Health.DEGRADED)  # failed -> degraded is not a move
    assert bus.get("llm0") == before
    bus.set_health("llm0", Health.OK)
    bus.set_health("llm0", Health.REMOVED)
    assert bus.ls() == []


def test_accelerators_found_by_a_probe() -> None:
    bus = DeviceBus()
    found = bus.probe_accelerators(lambda: parse_nvidia_smi(SMI))
    assert [(d.id, d.capabilities["memory_mib"]) for d in found] == [("gpu0", 81559),
                                                                     ("gpu1", 81559)]
    assert bus.classes["gpu"].right == "ACCESS_GPU"
    assert bus.probe_accelerators(lambda: parse_nvidia_smi(SMI)) == []  # already there
    assert bus.get("gpu1").health is Health.OK


def test_nvidia_probe_uses_nvidia_smi_when_present_and_nothing_otherwise() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> Any:
        calls.append(argv)
        return SimpleNamespace(returncode=0, stdout=SMI)

    got = nvidia_probe(run=run, which=lambda name: "/usr/bin/nvidia-smi")
    assert [a.index for a in got] == [0, 1] and isinstance(got[0], Accelerator)
    assert calls and calls[0][0] == "/usr/bin/nvidia-smi"
    assert nvidia_probe(run=run, which=lambda name: None) == []
    # this host has no NVIDIA GPU: the real probe finds none and does not fail
    assert nvidia_probe() == []
