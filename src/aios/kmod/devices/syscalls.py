"""The device bus's syscalls (block 175-179): enumerate, open, hotplug, health.

Enumeration needs only a valid authority (what devices exist is not a secret
inside one kernel).  Opening a device needs the authority right its class
names (``ACCESS_GPU`` ...) or ``ADMIN`` for a class that names none; plugging,
unplugging and setting health need ``ADMIN``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aios.abi.errors import InvalidArgument, PermissionDenied
from aios.abi.rights import DEV_RIGHTS, ObjKind, Rights, rights_from_names
from aios.abi.slots import SLOT_AUTHORITY
from aios.abi.sysno import Sys
from aios.kernel.agents import Agent
from aios.kernel.args import as_dict, as_opts, as_str, copy_plain
from aios.kmod.devices.table import table, view

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

MAX_CONFIG_BYTES = 16 * 1024


def sys_dev_list(k: Kernel, a: Agent, auth_slot: Any = SLOT_AUTHORITY, device_class: Any = None) -> dict[str, Any]:
    """Devices (of one class, or all), drivers and classes of the bus."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.NONE)
    cls = None if device_class is None else as_str(device_class, "device_class", 32)
    t = table(k)
    return {
        "devices": [view(d) for d in t.ls(cls)],
        "drivers": [{"name": s.name, "class": s.device_class, "version": s.version,
                     "description": s.description} for s in t.drivers()],
        "classes": [{"name": c.name, "right": c.right, "description": c.description}
                    for c in t.bus.classes.values()],
        "discovery_errors": [list(e) for e in t.bus.discovery_errors],
    }


def sys_dev_open(k: Kernel, a: Agent, auth_slot: Any, device_id: Any, rights: Any = None) -> int:
    """A capability for a device, with ``rights`` (default: all device rights)."""
    auth = a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.NONE)
    t = table(k)
    dev = t.get(as_str(device_id, "device_id", 64))
    right = t.bus.classes[dev.device_class].right
    need = Rights[right] if right else Rights.ADMIN
    if not auth.rights & need:
        raise PermissionDenied(f"opening a {dev.device_class} device needs {need.name} on the authority")
    r = DEV_RIGHTS if rights is None else rights_from_names(rights) & DEV_RIGHTS
    k.guard("dev_open", a, device=dev.id, rights=int(r))
    slot: int = k.cdt.root(a.cspace, t.object(dev.id), r).slot
    k.publish("dev.opened", a.aid, agent=a.aid, device=dev.id, rights=int(r))
    return slot


def sys_dev_add(k: Kernel, a: Agent, auth_slot: Any, driver: Any, config: Any = None,
                opts: Any = None) -> dict[str, Any]:
    """Hotplug: a device of ``driver`` (its factory takes ``config``) on the running kernel."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    name = as_str(driver, "driver", 64)
    cfg: dict[str, Any] = {}
    if config is not None:
        cfg = copy_plain(as_dict(config, "config"), "config", MAX_CONFIG_BYTES)
        if not all(type(key) is str for key in cfg):
            raise InvalidArgument("config keys must be strings")
    o = as_opts(opts, frozenset({"device_id", "min_version"}))
    did = None if o.get("device_id") is None else as_str(o["device_id"], "device_id", 64)
    mv = None if o.get("min_version") is None else as_str(o["min_version"], "min_version", 32)
    return view(table(k).plug(name, cfg, device_id=did, min_version=mv))


def sys_dev_remove(k: Kernel, a: Agent, auth_slot: Any, device_id: Any) -> dict[str, Any]:
    """Hot-unplug: work on the device ends (its requests fail), capabilities to it go stale."""
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, Rights.ADMIN)
    return view(table(k).unplug(as_str(device_id, "device_id", 64)))


def sys_dev_health(k: Kernel, a: Agent, auth_slot: Any, device_id: Any, health: Any = None,
                   detail: Any = "") -> dict[str, Any]:
    """A device's health; with ``health`` (ADMIN) move it (ok, degraded, failed, removed)."""
    need = Rights.NONE if health is None else Rights.ADMIN
    a.cspace.lookup(auth_slot, ObjKind.AUTHORITY, need)
    t = table(k)
    did = as_str(device_id, "device_id", 64)
    if health is None:
        return view(t.get(did))
    return view(t.set_health(did, as_str(health, "health", 16), as_str(detail, "detail", 256)))


HANDLERS: dict[Sys, Callable[..., Any]] = {
    Sys.DEV_LIST: sys_dev_list,
    Sys.DEV_OPEN: sys_dev_open,
    Sys.DEV_ADD: sys_dev_add,
    Sys.DEV_REMOVE: sys_dev_remove,
    Sys.DEV_HEALTH: sys_dev_health,
}
