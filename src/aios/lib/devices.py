"""The device and driver bus, as a pure table (whitepaper 2.2, subsystem 6).

Agents reach scarce hardware and services (a language model, a GPU) as
*devices*.  This module is the bus's core, with no I/O of its own; the kernel
module that wraps it adds capabilities, syscalls and the event bus.

* **Device classes** name a kind of device and the capability right that
  gates it (``llm``; ``gpu`` behind ``ACCESS_GPU``, ``tpu`` behind
  ``ACCESS_TPU``, ``npu`` behind ``ACCESS_NPU``).
* **Drivers** are versioned (``MAJOR.MINOR.PATCH``) and found through Python
  entry points in the group ``aios.drivers``: a package that ships a driver
  declares ``[project.entry-points."aios.drivers"]`` and the bus loads its
  :class:`DriverSpec`.  Several versions of one driver may be present;
  :meth:`DeviceBus.driver` picks the newest that satisfies a minimum.  An
  entry point that fails to load is recorded in ``discovery_errors``, never
  fatal.
* **Devices** are instances: a class, a driver, per-device capabilities (slots,
  context length, memory, features) and a **health** state that moves only
  along the transitions of :data:`HEALTH_MOVES` (an illegal move raises
  ``IllegalTransition`` and changes nothing).
* **Hotplug**: :meth:`DeviceBus.add` and :meth:`DeviceBus.remove` work on a
  running system and append :class:`DeviceEvent` records (with sequence
  numbers) that the kernel publishes as ``dev.added`` / ``dev.removed`` /
  ``dev.health`` events.
* **Accelerators** are discovered by a probe function (a seam): the default
  asks NVML when ``pynvml`` is importable, else ``nvidia-smi``, else finds
  nothing; tests pass their own.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from aios.abi.errors import AlreadyExists, IllegalTransition, InvalidArgument, NoSuchObject

ENTRY_POINT_GROUP: Final = "aios.drivers"


class Health(StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    REMOVED = "removed"


HEALTH_MOVES: Final[dict[Health, frozenset[Health]]] = {
    Health.UNKNOWN: frozenset({Health.OK, Health.DEGRADED, Health.FAILED, Health.REMOVED}),
    Health.OK: frozenset({Health.DEGRADED, Health.FAILED, Health.REMOVED}),
    Health.DEGRADED: frozenset({Health.OK, Health.FAILED, Health.REMOVED}),
    Health.FAILED: frozenset({Health.OK, Health.REMOVED}),
    Health.REMOVED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class DeviceClass:
    name: str
    right: str | None = None  # the capability right that gates it
    description: str = ""


BUILTIN_CLASSES: Final = (
    DeviceClass("llm", None, "language models (embedded, HTTP endpoints, simulated)"),
    DeviceClass("gpu", "ACCESS_GPU", "graphics/compute accelerators"),
    DeviceClass("tpu", "ACCESS_TPU", "tensor accelerators"),
    DeviceClass("npu", "ACCESS_NPU", "neural accelerators"),
)


def parse_version(v: str) -> tuple[int, int, int]:
    parts = v.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InvalidArgument(f"driver version must be MAJOR.MINOR.PATCH, got {v!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """What a driver package declares: its name, class, version and a factory."""

    name: str
    device_class: str
    version: str
    factory: Callable[..., Any] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.device_class:
            raise InvalidArgument("a driver needs a name and a device class")
        parse_version(self.version)

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    device_class: str
    driver: str
    driver_version: str
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    health: Health = Health.UNKNOWN


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    seq: int
    kind: str  # "added" | "removed" | "health"
    device_id: str
    device_class: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Accelerator:
    vendor: str
    kind: str  # "gpu" | "tpu" | "npu"
    index: int
    name: str
    uuid: str
    memory_mib: int


Probe = Callable[[], list[Accelerator]]


class DeviceBus:
    def __init__(self, classes: Iterable[DeviceClass] = BUILTIN_CLASSES) -> None:
        self.classes: dict[str, DeviceClass] = {}
        self._drivers: dict[str, dict[str, DriverSpec]] = {}
        self._devices: dict[str, Device] = {}
        self._events: list[DeviceEvent] = []
        self._seq = itertools.count(1)
        self.discovery_errors: list[tuple[str, str]] = []
        for c in classes:
            self.register_class(c)

    # -- classes and drivers ---------------------------------------------------------

    def register_class(self, c: DeviceClass) -> None:
        if c.name in self.classes:
            raise AlreadyExists(f"device class {c.name!r} exists")
        self.classes[c.name] = c

    def register_driver(self, spec: DriverSpec) -> None:
        if spec.device_class not in self.classes:
            raise NoSuchObject(f"driver {spec.name!r}: no device class {spec.device_class!r}")
        versions = self._drivers.setdefault(spec.name, {})
        if spec.version in versions:
            raise AlreadyExists(f"driver {spec.name} {spec.version} is registered")
        versions[spec.version] = spec

    def discover(
        self, entry_points: Callable[..., Iterable[Any]] = importlib.metadata.entry_points
    ) -> list[DriverSpec]:
        """Load every driver declared in the ``aios.drivers`` entry-point group."""
        found: list[DriverSpec] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                spec = obj() if callable(obj) and not isinstance(obj, DriverSpec) else obj
                if not isinstance(spec, DriverSpec):
                    raise TypeError(f"{ep.value} is not a DriverSpec")
                if self._drivers.get(spec.name, {}).get(spec.version) == spec:
                    found.append(spec)  # registered directly before discovery ran
                    continue
                self.register_driver(spec)
                found.append(spec)
            except Exception as e:  # a broken plug-in must not break the bus
                self.discovery_errors.append((str(getattr(ep, "name", ep)), repr(e)))
        return found

    def driver(self, name: str, min_version: str | None = None) -> DriverSpec:
        versions = self._drivers.get(name)
        if not versions:
            raise NoSuchObject(f"no driver {name!r}")
        floor = parse_version(min_version) if min_version else (0, 0, 0)
        ok = [s for s in versions.values() if s.version_tuple >= floor]
        if not ok:
            raise NoSuchObject(f"driver {name!r} has no version >= {min_version}")
        return max(ok, key=lambda s: s.version_tuple)

    def drivers(self) -> list[DriverSpec]:
        return sorted((s for v in self._drivers.values() for s in v.values()),
                      key=lambda s: (s.name, s.version_tuple))

    # -- devices (hotplug) ---------------------------------------------------------------

    def _emit(self, kind: str, d: Device, detail: str = "") -> None:
        self._events.append(DeviceEvent(next(self._seq), kind, d.id, d.device_class, detail))

    def add(self, driver: str, capabilities: Mapping[str, Any] | None = None, *,
            device_id: str | None = None, min_version: str | None = None,
            health: Health = Health.UNKNOWN) -> Device:
        spec = self.driver(driver, min_version)
        if device_id is None:
            n = sum(1 for d in self._devices if d.startswith(spec.device_class))
            while f"{spec.device_class}{n}" in self._devices:
                n += 1
            device_id = f"{spec.device_class}{n}"
        if device_id in self._devices:
            raise AlreadyExists(f"device {device_id!r} exists")
        d = Device(device_id, spec.device_class, spec.name, spec.version,
                   dict(capabilities or {}), health)
        self._devices[device_id] = d
        self._emit("added", d, f"{spec.name} {spec.version}")
        return d

    def remove(self, device_id: str) -> Device:
        d = self._devices.pop(device_id, None)
        if d is None:
            raise NoSuchObject(f"no device {device_id!r}")
        gone = replace(d, health=Health.REMOVED)
        self._emit("removed", gone)
        return gone

    def set_health(self, device_id: str, health: Health, detail: str = "") -> Device:
        d = self.get(device_id)
        if health == d.health:
            return d
        if health not in HEALTH_MOVES[d.health]:
            raise IllegalTransition(f"device {device_id}: health {d.health} -> {health}")
        if health is Health.REMOVED:
            return self.remove(device_id)
        d = replace(d, health=health)
        self._devices[device_id] = d
        self._emit("health", d, f"{health}" + (f": {detail}" if detail else ""))
        return d

    def describe(self, device_id: str, capabilities: Mapping[str, Any]) -> Device:
        """Merge what the device's class module learnt of it (slots, model) into its
        capabilities (no event: the device is the same)."""
        d = self.get(device_id)
        d = replace(d, capabilities={**d.capabilities, **capabilities})
        self._devices[device_id] = d
        return d

    def get(self, device_id: str) -> Device:
        d = self._devices.get(device_id)
        if d is None:
            raise NoSuchObject(f"no device {device_id!r}")
        return d

    def ls(self, device_class: str | None = None) -> list[Device]:
        return sorted((d for d in self._devices.values()
                       if device_class is None or d.device_class == device_class),
                      key=lambda d: d.id)

    def drain_events(self) -> list[DeviceEvent]:
        out, self._events = self._events, []
        return out

    # -- accelerators ------------------------------------------------------------------------

    def probe_accelerators(self, probe: Probe | None = None) -> list[Device]:
        """Add a device for every accelerator the probe finds (not already present)."""
        added = []
        for a in (probe or nvidia_probe)():
            did = f"{a.kind}{a.index}"
            if did in self._devices:
                continue
            name = f"{a.vendor}-{a.kind}"
            if name not in self._drivers:
                self.register_driver(DriverSpec(name, a.kind, "1.0.0",
                                                description=f"{a.vendor} {a.kind} (discovered)"))
            added.append(self.add(name, {"name": a.name, "uuid": a.uuid,
                                         "memory_mib": a.memory_mib}, device_id=did,
                                  health=Health.OK))
        return added


def parse_nvidia_smi(text: str) -> list[Accelerator]:
    """``nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv,noheader,nounits``."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        try:
            mem = int(float(parts[3]))
        except ValueError:
            continue
        out.append(Accelerator("nvidia", "gpu", int(parts[0]), parts[1], parts[2], mem))
    return out


def nvidia_probe(
    run: Callable[..., Any] = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
) -> list[Accelerator]:
    """NVIDIA GPUs via NVML (``pynvml``) or ``nvidia-smi``; none when neither exists."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                out = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    name = pynvml.nvmlDeviceGetName(h)
                    out.append(Accelerator(
                        "nvidia", "gpu", i, name.decode() if isinstance(name, bytes) else name,
                        str(pynvml.nvmlDeviceGetUUID(h)),
                        int(pynvml.nvmlDeviceGetMemoryInfo(h).total) >> 20))
                return out
            finally:
                pynvml.nvmlShutdown()
        except Exception:
            pass  # no driver loaded: fall through to nvidia-smi
    exe = which("nvidia-smi")
    if exe is None:
        return []
    try:
        r = run([exe, "--query-gpu=index,name,uuid,memory.total",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(r.stdout) if r.returncode == 0 else []
