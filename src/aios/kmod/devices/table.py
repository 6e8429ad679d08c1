"""The device bus inside a running kernel: devices as capabilities, hotplug as events.

Design
------
:class:`aios.lib.devices.DeviceBus` is the bus as a pure table: device
classes, versioned drivers found through the ``aios.drivers`` entry points,
devices with a health state machine, and the hotplug events it records.  This
module gives it a place in a kernel:

* **One table per kernel**, in ``k.ext[DEVICES]``.  Drivers are discovered
  once, on first need (a broken plug-in is recorded in ``discovery_errors``,
  never fatal); a class module may register the drivers it ships directly;
  accelerators are probed on request (``probe``), not at boot, so
  booting never spawns ``nvidia-smi``.
* **Backends.**  Plugging a device instantiates its driver (the spec's
  factory, with the caller's plain configuration) or takes a backend the host
  built itself (tests, embedders).  A device class may have a *class module*
  (the LLM device is one): it is told of every device of its class plugged or
  unplugged (:meth:`DeviceTable.on_class`), reads the backend's own figures
  (slots, context, model) for the device's capabilities, and serves the
  device's syscalls.  A device without a class module is enumerable and
  openable but has no work syscalls (accelerators today).
* **Devices are capabilities.**  Each plugged device is one kernel object of
  kind ``DEVICE`` (payload :class:`DeviceRef`: its id and the generation of
  the plug).  ``DEV_OPEN`` makes a root capability for it; the authority must
  carry the right the class names (``ACCESS_GPU`` for a GPU, ...) or, for a
  class that names none (language models), ``ADMIN``: an operator opens the
  model and hands agents attenuated, budgeted capabilities derived from its
  own.  Unplugging a device revokes nothing but makes every capability to it
  name a gone device (``NoSuchObject``); plugging the same id again makes a
  new generation, so an old capability never reaches the new device.
* **Hotplug is evented.**  Every change of the table (added, removed, health)
  is published on the kernel's event bus as ``dev.added`` / ``dev.removed``
  / ``dev.health`` (the ``dev.`` prefix is reserved to the kernel and
  audited), in the bus's sequence order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, NoSuchObject
from aios.abi.rights import ObjKind
from aios.kernel.registry import Key
from aios.lib.devices import Device, DeviceBus, DriverSpec, Health, Probe

if TYPE_CHECKING:
    from aios.kernel.capabilities import KObject
    from aios.kernel.kernel import Kernel

log = logging.getLogger("aios.devices")

Attach = Callable[[Device, Any], Mapping[str, Any]]
Detach = Callable[[Device, Any], None]


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """Payload of a DEVICE kernel object: which device, which plug of it."""

    id: str
    generation: int


@dataclass(slots=True)
class _Plugged:
    device: Device
    backend: Any
    generation: int
    obj: KObject | None = None


class DeviceTable:
    """A kernel's devices: the pure bus, the backends, the DEVICE objects."""

    def __init__(self, k: Kernel, *, discover: bool = True) -> None:
        self.k = k
        self.bus = DeviceBus()
        self._plugged: dict[str, _Plugged] = {}
        self._classes: dict[str, tuple[Attach, Detach]] = {}
        self._generation = 0
        self._discovered = not discover

    def discover(self) -> None:
        """Load the ``aios.drivers`` entry points, once (lazily: scanning every
        installed distribution costs tens of milliseconds a boot would pay)."""
        if self._discovered:
            return
        self._discovered = True
        self.bus.discover()
        for name, err in self.bus.discovery_errors:
            log.warning("device driver %s failed to load: %s", name, err)

    def drivers(self) -> list[DriverSpec]:
        self.discover()
        return self.bus.drivers()

    # -- class modules and drivers ---------------------------------------------

    def on_class(self, device_class: str, attach: Attach, detach: Detach) -> None:
        """Register the module serving ``device_class``: ``attach(device, backend)``
        returns the device's capabilities (and may refuse the backend by raising);
        ``detach(device, backend)`` runs when it is unplugged."""
        if device_class not in self.bus.classes:
            raise NoSuchObject(f"no device class {device_class!r}")
        self._classes[device_class] = (attach, detach)

    def register_driver(self, spec: DriverSpec) -> None:
        self.bus.register_driver(spec)

    # -- hotplug -----------------------------------------------------------------

    def plug(self, driver: str, config: Mapping[str, Any] | None = None, *,
             device_id: str | None = None, min_version: str | None = None,
             backend: Any = None) -> Device:
        """Add a device on the running kernel: build its backend (unless given),
        let its class module attach it, publish ``dev.added``.  A failure at any
        step leaves the table as it was."""
        try:
            spec = self.bus.driver(driver, min_version)
        except NoSuchObject:
            if self._discovered:
                raise
            self.discover()
            spec = self.bus.driver(driver, min_version)
        if device_id is not None and device_id in self._plugged:
            from aios.abi.errors import AlreadyExists

            raise AlreadyExists(f"device {device_id!r} exists")
        if backend is None:
            if spec.factory is None:
                raise InvalidArgument(f"driver {driver!r} has no factory: pass a backend")
            try:
                backend = spec.factory(**dict(config or {}))
            except TypeError as e:  # an unknown configuration key
                raise InvalidArgument(f"driver {driver!r}: bad configuration ({e})") from e
        hooks = self._classes.get(spec.device_class)
        dev = self.bus.add(spec.name, {}, device_id=device_id, min_version=min_version,
                           health=Health.OK)
        try:
            if hooks is not None:
                self.bus.describe(dev.id, hooks[0](dev, backend))
        except BaseException:
            self.bus.remove(dev.id)
            self.bus.drain_events()  # it never was: no event for it
            raise
        self._generation += 1
        self._plugged[dev.id] = _Plugged(dev, backend, self._generation)
        self._publish()
        return self.bus.get(dev.id)

    def unplug(self, device_id: str) -> Device:
        """Remove a device: its class module detaches it (work on it ends), every
        capability to it now names a gone device, ``dev.removed`` is published."""
        p = self._plugged.get(device_id)
        if p is None:
            raise NoSuchObject(f"no device {device_id!r}")
        hooks = self._classes.get(p.device.device_class)
        try:
            if hooks is not None:
                hooks[1](self.bus.get(device_id), p.backend)
        finally:
            del self._plugged[device_id]
            gone = self.bus.remove(device_id)
            self._publish()
        return gone

    def set_health(self, device_id: str, health: Health | str, detail: str = "") -> Device:
        try:
            h = Health(health)
        except ValueError:
            raise InvalidArgument(f"health must be one of {[x.value for x in Health]}") from None
        if h is Health.REMOVED:
            return self.unplug(device_id)
        d = self.bus.set_health(device_id, h, detail)
        self._publish()
        return d

    def probe(self, probe: Probe | None = None) -> list[Device]:
        """Discover accelerators (NVML / nvidia-smi, or ``probe``) and plug them."""
        added = self.bus.probe_accelerators(probe)
        for d in added:
            self._generation += 1
            self._plugged[d.id] = _Plugged(d, None, self._generation)
        self._publish()
        return added

    def _publish(self) -> None:
        for ev in self.bus.drain_events():
            self.k.publish(f"dev.{ev.kind}", 0, seq=ev.seq, device=ev.device_id,
                           device_class=ev.device_class, detail=ev.detail)

    # -- lookups -------------------------------------------------------------------

    def get(self, device_id: str) -> Device:
        return self.bus.get(device_id)

    def backend(self, device_id: str) -> Any:
        p = self._plugged.get(device_id)
        if p is None:
            raise NoSuchObject(f"no device {device_id!r}")
        return p.backend

    def ls(self, device_class: str | None = None) -> list[Device]:
        return self.bus.ls(device_class)

    def object(self, device_id: str) -> KObject:
        """The live DEVICE object of ``device_id`` (made on first use)."""
        p = self._plugged.get(device_id)
        if p is None:
            raise NoSuchObject(f"no device {device_id!r}")
        if p.obj is None or p.obj.destroyed:
            p.obj = self.k.cdt.new_object(ObjKind.DEVICE, DeviceRef(device_id, p.generation))
        return p.obj

    def resolve(self, obj: KObject) -> Device:
        """The device a DEVICE object names; ``NoSuchObject`` once it was unplugged."""
        ref = obj.payload
        p = self._plugged.get(ref.id) if isinstance(ref, DeviceRef) else None
        if p is None or p.generation != ref.generation:
            raise NoSuchObject(f"device {getattr(ref, 'id', '?')!r} was removed")
        return self.bus.get(ref.id)

    def close(self) -> None:
        """Kernel shutdown: unplug every device (class modules stop their work)."""
        for did in list(self._plugged):
            try:
                self.unplug(did)
            except Exception as e:  # every device is unplugged; one failure is logged
                log.error("unplugging %s at shutdown failed: %r", did, e)


def view(d: Device) -> dict[str, Any]:
    """A device as plain data (what DEV_LIST and DEV_HEALTH return)."""
    return {"id": d.id, "class": d.device_class, "driver": d.driver,
            "version": d.driver_version, "health": d.health.value,
            "capabilities": dict(d.capabilities)}


DEVICES: Key[DeviceTable] = Key("devices")


def install(k: Kernel, cfg: Any = None) -> DeviceTable:
    """The device bus: its table in ``k.ext[DEVICES]``, its syscall block (175-179)
    and a shutdown hook that unplugs every device."""
    from aios.kmod.devices.syscalls import HANDLERS

    t = DeviceTable(k)
    k.ext[DEVICES] = t
    k.registry.syscalls.block("devices").add_all(HANDLERS)
    k.registry.on_shutdown(t.close, order=40)
    return t


def table(k: Kernel) -> DeviceTable:
    return k.ext[DEVICES]
