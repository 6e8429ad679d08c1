"""Unit files: systemd's unit model, written in TOML.

A unit is a named thing initd can start and stop.  Two kinds exist, told
apart by the name's suffix as in systemd: ``NAME.service`` runs an agent
(an entry point ``package.module:function`` or a signed image), ``NAME.target``
runs nothing and is a synchronisation point (the boot stages of whitepaper
4.1 are targets).  A unit lives in ``NAME.toml`` (``memoryd.service.toml``);
the file name is the unit name.  Keys are systemd's, in systemd's sections::

    [Unit]
    Description = "memoryd: semantic memory namespaces"
    Requires = ["identityd.service"]        # pull in; fail with it if ordered after it
    Wants = []                              # pull in; never fail with it
    BindsTo = []                            # like Requires, and stop when it goes away
    PartOf = []                             # stop/restart when it is stopped/restarted
    Conflicts = []                          # starting one stops the other
    After = ["identityd.service"]           # ordering, separate from requirement
    Before = []
    StartLimitIntervalSec = 10
    StartLimitBurst = 5

    [Service]                               # .service units only
    Type = "notify"                         # simple | notify (ready call, sd_notify READY=1)
    Entry = "aios.kmod.memoryd:main"        # or Image = "path/to/signed/image"
    Executor = "inproc"                     # inproc | worker | isolated | wasm
    Rights = ["ALLOC_MEMORY"]
    Quota = { memory = 1073741824, agents = 4 }
    Restart = "on-failure"                  # no | on-success | on-failure | on-abnormal
                                            # | on-watchdog | on-abort | always
    RestartSec = "100ms"
    RestartSteps = 0                        # systemd 254's growing delay (0: off)
    RestartMaxDelaySec = "infinity"
    TimeoutStartSec = "30s"                 # notify: ready call within this, or killed
    TimeoutStopSec = "10s"                  # stop request, then a kill after this
    WatchdogSec = 0                         # > 0: pet (WATCHDOG=1) within this, or killed
    SuccessExitStatus = [2]
    RestartPreventExitStatus = [3]

    [Install]
    WantedBy = ["services.target"]
    RequiredBy = []

Times are numbers of seconds or systemd time spans (``"1min 30s"``,
``"250ms"``, ``"infinity"``), held as integer nanoseconds.  Every mistake is an
:class:`~aios.abi.errors.InvalidArgument` whose message names the file, the
section and the key.  Rights are checked against the kernel's right names
(a test keeps :data:`RIGHT_NAMES` in step with ``Rights``); quotas against the
four quota fields of an authority capability.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final

from aios.abi.errors import InvalidArgument
from aios.kmod.initd.restart import Restart

SECOND: Final = 1_000_000_000
INFINITY: Final = 0  # "no timeout" / "no watchdog" / "no maximum"

# the kernel's capability right names (aios.abi.rights.Rights); kept equal by a test
RIGHT_NAMES: Final = frozenset(
    {
        "READ", "WRITE", "GRANT", "SPAWN_AGENT", "KILL_AGENT", "ALLOC_MEMORY", "ACCESS_FS",
        "ACCESS_NET", "ACCESS_GPU", "ACCESS_TPU", "ACCESS_NPU", "SUPERVISOR", "ADMIN",
        "SEMANTIC_SEND",
    }
)  # fmt: skip
QUOTA_FIELDS: Final = ("memory", "agents", "ipc_rate", "cpu_weight")
EXECUTORS: Final = ("inproc", "worker", "isolated", "wasm")
NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,126}\.(service|target)$")
ENTRY_RE: Final = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_UNIT_FILE: Final = 64 << 10


class UnitKind(StrEnum):
    SERVICE = "service"
    TARGET = "target"


class ServiceType(StrEnum):
    SIMPLE = "simple"  # started = running
    NOTIFY = "notify"  # started = the unit made its ready call


@dataclass(frozen=True, slots=True)
class UnitQuota:
    """The quota of the authority a service's agent is spawned with (None: as the parent's)."""

    memory: int | None = None
    agents: int | None = None
    ipc_rate: int | None = None
    cpu_weight: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {f: getattr(self, f) for f in QUOTA_FIELDS}


@dataclass(frozen=True, slots=True)
class Unit:
    """One parsed, validated unit.  Times are nanoseconds; 0 means infinity/off."""

    name: str
    description: str = ""
    source: str = "<memory>"
    # [Unit] requirement and ordering
    wants: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    binds_to: tuple[str, ...] = ()
    part_of: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    default_dependencies: bool = True
    start_limit_interval_ns: int = 10 * SECOND
    start_limit_burst: int = 5
    # [Service]
    type: ServiceType = ServiceType.SIMPLE
    entry: str | None = None
    image: str | None = None
    executor: str = "inproc"
    rights: tuple[str, ...] = ()
    quota: UnitQuota = field(default_factory=UnitQuota)
    restart: Restart = Restart.NO
    restart_ns: int = SECOND // 10
    restart_steps: int = 0
    restart_max_delay_ns: int = INFINITY
    timeout_start_ns: int = 90 * SECOND
    timeout_stop_ns: int = 90 * SECOND
    watchdog_ns: int = INFINITY
    success_exit_status: frozenset[int] = frozenset()
    restart_prevent_exit_status: frozenset[int] = frozenset()
    restart_prevent_signals: frozenset[int] = frozenset()
    # [Install]
    wanted_by: tuple[str, ...] = ()
    required_by: tuple[str, ...] = ()

    @property
    def kind(self) -> UnitKind:
        return UnitKind.TARGET if self.name.endswith(".target") else UnitKind.SERVICE

    def restart_delay_ns(self, n_restarts: int) -> int:
        """``RestartSec=`` grown towards ``RestartMaxDelaySec=`` over ``RestartSteps=`` restarts.

        systemd 254's rule: the delay for the n-th restart is
        ``RestartSec * (Max/RestartSec) ** (n / Steps)``, capped at ``Max``.
        """
        base, top, steps = self.restart_ns, self.restart_max_delay_ns, self.restart_steps
        if steps <= 0 or top <= base or n_restarts <= 0 or base <= 0:
            return base
        if n_restarts >= steps:
            return top
        grown: float = base * (top / base) ** (n_restarts / steps)
        return min(top, round(grown / 1000) * 1000)  # to the microsecond, as systemd's usec


# -- parsing ------------------------------------------------------------------------------

_UNIT_KEYS: Final = frozenset(
    {"Description", "Wants", "Requires", "BindsTo", "PartOf", "Conflicts", "After", "Before",
     "DefaultDependencies", "StartLimitIntervalSec", "StartLimitBurst"}
)  # fmt: skip
_SERVICE_KEYS: Final = frozenset(
    {"Type", "Entry", "Image", "Executor", "Rights", "Quota", "Restart", "RestartSec",
     "RestartSteps", "RestartMaxDelaySec", "TimeoutStartSec", "TimeoutStopSec", "TimeoutSec",
     "WatchdogSec", "SuccessExitStatus", "RestartPreventExitStatus"}
)  # fmt: skip
_INSTALL_KEYS: Final = frozenset({"WantedBy", "RequiredBy"})
_SPAN_UNITS: Final = {
    "us": 1_000, "usec": 1_000, "ms": 1_000_000, "msec": 1_000_000,
    "s": SECOND, "sec": SECOND, "second": SECOND, "seconds": SECOND,
    "m": 60 * SECOND, "min": 60 * SECOND, "minute": 60 * SECOND, "minutes": 60 * SECOND,
    "h": 3600 * SECOND, "hr": 3600 * SECOND, "hour": 3600 * SECOND, "hours": 3600 * SECOND,
    "d": 86400 * SECOND, "day": 86400 * SECOND, "days": 86400 * SECOND,
}  # fmt: skip
_SPAN_RE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")
_SIGNALS: Final = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGABRT": 6, "SIGFPE": 8, "SIGKILL": 9,
    "SIGSEGV": 11, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGUSR1": 10, "SIGUSR2": 12,
}  # fmt: skip


class _Where:
    """Names the file and section in every error message."""

    def __init__(self, source: str, section: str) -> None:
        self.source = source
        self.section = section

    def fail(self, key: str, why: str) -> InvalidArgument:
        return InvalidArgument(f"{self.source}: [{self.section}] {key}: {why}")


def parse_timespan(value: Any, where: _Where, key: str) -> int:
    """Seconds (int/float) or a systemd time span to nanoseconds; ``infinity`` is 0."""
    if isinstance(value, bool):
        raise where.fail(key, "must be a number of seconds or a time span like '5s'")
    if isinstance(value, int | float):
        if value < 0 or value != value or value > 10**9:
            raise where.fail(key, f"{value!r} is out of range")
        return round(value * SECOND)
    if not isinstance(value, str):
        raise where.fail(key, "must be a number of seconds or a time span like '5s'")
    text = value.strip().lower()
    if text == "infinity":
        return INFINITY
    total, pos = 0, 0
    while pos < len(text):
        m = _SPAN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise where.fail(key, f"{value!r} is not a time span (e.g. '90s', '1min 30s', '250ms')")
        unit = m.group(2) or "s"
        if unit not in _SPAN_UNITS:
            raise where.fail(key, f"unknown time unit {unit!r} in {value!r}")
        total += round(float(m.group(1)) * _SPAN_UNITS[unit])
        pos = m.end()
        while pos < len(text) and text[pos] == " ":
            pos += 1
    if not text:
        raise where.fail(key, "empty time span")
    return total


def _names(value: Any, where: _Where, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.fail(key, "must be a list of unit names")
    for v in value:
        if not NAME_RE.match(v):
            raise where.fail(key, f"{v!r} is not a unit name (NAME.service or NAME.target)")
    return tuple(dict.fromkeys(value))


def _statuses(value: Any, where: _Where, key: str) -> tuple[frozenset[int], frozenset[int]]:
    """Exit codes and signal names (``[2, "SIGUSR1"]``) to (codes, signal numbers)."""
    if isinstance(value, int | str):
        value = [value]
    if not isinstance(value, list):
        raise where.fail(key, "must be a list of exit codes and signal names")
    codes: set[int] = set()
    sigs: set[int] = set()
    for v in value:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
            codes.add(v)
        elif isinstance(v, str) and v.upper() in _SIGNALS:
            sigs.add(_SIGNALS[v.upper()])
        else:
            raise where.fail(key, f"{v!r} is neither an exit code 0-255 nor a known signal name")
    return frozenset(codes), frozenset(sigs)


def _int(value: Any, where: _Where, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise where.fail(key, f"must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def _str(value: Any, where: _Where, key: str, limit: int = 512) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise where.fail(key, f"must be a string of at most {limit} characters")
    return value


def parse_unit(name: str, data: dict[str, Any], source: str = "<memory>") -> Unit:
    """Validate one unit's TOML tables; ``name`` is the unit name (the file's stem)."""
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"{source}: the file name must be NAME.service.toml or NAME.target.toml, not {name!r}"
        )
    is_target = name.endswith(".target")
    allowed = {"Unit", "Install"} if is_target else {"Unit", "Service", "Install"}
    for sect, body in data.items():
        if sect not in allowed:
            hint = " (a target runs nothing)" if sect == "Service" else ""
            raise InvalidArgument(f"{source}: unknown section [{sect}]{hint}")
        if not isinstance(body, dict):
            raise InvalidArgument(f"{source}: [{sect}] must be a table")
    u: dict[str, Any] = {"name": name, "source": source}

    unit_t, w = data.get("Unit", {}), _Where(source, "Unit")
    for key in unit_t:
        if key not in _UNIT_KEYS:
            raise w.fail(key, "unknown key")
    if "Description" in unit_t:
        u["description"] = _str(unit_t["Description"], w, "Description")
    for key, attr in (("Wants", "wants"), ("Requires", "requires"), ("BindsTo", "binds_to"),
                      ("PartOf", "part_of"), ("Conflicts", "conflicts"), ("After", "after"),
                      ("Before", "before")):  # fmt: skip
        if key in unit_t:
            names = _names(unit_t[key], w, key)
            if name in names:
                raise w.fail(key, f"a unit cannot name itself ({name})")
            u[attr] = names
    if "DefaultDependencies" in unit_t:
        if not isinstance(unit_t["DefaultDependencies"], bool):
            raise w.fail("DefaultDependencies", "must be true or false")
        u["default_dependencies"] = unit_t["DefaultDependencies"]
    if "StartLimitIntervalSec" in unit_t:
        u["start_limit_interval_ns"] = parse_timespan(
            unit_t["StartLimitIntervalSec"], w, "StartLimitIntervalSec"
        )
    if "StartLimitBurst" in unit_t:
        u["start_limit_burst"] = _int(unit_t["StartLimitBurst"], w, "StartLimitBurst", 0, 10_000)

    svc, w = data.get("Service"), _Where(source, "Service")
    if not is_target:
        if svc is None:
            raise InvalidArgument(f"{source}: a service needs a [Service] section with Entry or Image")
        _parse_service(svc, w, u)

    inst, w = data.get("Install", {}), _Where(source, "Install")
    for key in inst:
        if key not in _INSTALL_KEYS:
            raise w.fail(key, "unknown key")
    if "WantedBy" in inst:
        u["wanted_by"] = _names(inst["WantedBy"], w, "WantedBy")
    if "RequiredBy" in inst:
        u["required_by"] = _names(inst["RequiredBy"], w, "RequiredBy")
    return Unit(**u)


def _parse_service(svc: dict[str, Any], w: _Where, u: dict[str, Any]) -> None:
    for key in svc:
        if key not in _SERVICE_KEYS:
            raise w.fail(key, "unknown key")
    if ("Entry" in svc) == ("Image" in svc):
        raise InvalidArgument(f"{w.source}: [Service] needs exactly one of Entry and Image")
    if "Entry" in svc:
        entry = _str(svc["Entry"], w, "Entry", 256)
        if not ENTRY_RE.match(entry):
            raise w.fail("Entry", f"{entry!r} is not 'package.module:function'")
        u["entry"] = entry
    else:
        image = _str(svc["Image"], w, "Image", 4096)
        if not image:
            raise w.fail("Image", "must not be empty")
        u["image"] = image
    if "Type" in svc:
        try:
            u["type"] = ServiceType(svc["Type"])
        except ValueError:
            raise w.fail("Type", f"{svc['Type']!r} is not one of simple, notify") from None
    if "Executor" in svc:
        if svc["Executor"] not in EXECUTORS:
            raise w.fail("Executor", f"{svc['Executor']!r} is not one of {', '.join(EXECUTORS)}")
        u["executor"] = svc["Executor"]
    if "Rights" in svc:
        rights = svc["Rights"]
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            raise w.fail("Rights", "must be a list of right names")
        for r in rights:
            if r not in RIGHT_NAMES:
                raise w.fail("Rights", f"unknown right {r!r}")
        u["rights"] = tuple(dict.fromkeys(rights))
    if "Quota" in svc:
        q = svc["Quota"]
        if not isinstance(q, dict):
            raise w.fail("Quota", f"must be a table of {', '.join(QUOTA_FIELDS)}")
        for k, v in q.items():
            if k not in QUOTA_FIELDS:
                raise w.fail("Quota", f"unknown quota field {k!r}")
            _int(v, w, f"Quota.{k}", 0, 1 << 62)
        u["quota"] = UnitQuota(**q)
    if "Restart" in svc:
        try:
            u["restart"] = Restart(svc["Restart"])
        except ValueError:
            vals = ", ".join(r.value for r in Restart)
            raise w.fail("Restart", f"{svc['Restart']!r} is not one of {vals}") from None
    if "RestartSec" in svc:
        u["restart_ns"] = parse_timespan(svc["RestartSec"], w, "RestartSec")
    if "RestartSteps" in svc:
        u["restart_steps"] = _int(svc["RestartSteps"], w, "RestartSteps", 0, 3000)
    if "RestartMaxDelaySec" in svc:
        u["restart_max_delay_ns"] = parse_timespan(svc["RestartMaxDelaySec"], w, "RestartMaxDelaySec")
    if "TimeoutSec" in svc:  # systemd: sets both
        u["timeout_start_ns"] = u["timeout_stop_ns"] = parse_timespan(svc["TimeoutSec"], w, "TimeoutSec")
    if "TimeoutStartSec" in svc:
        u["timeout_start_ns"] = parse_timespan(svc["TimeoutStartSec"], w, "TimeoutStartSec")
    if "TimeoutStopSec" in svc:
        u["timeout_stop_ns"] = parse_timespan(svc["TimeoutStopSec"], w, "TimeoutStopSec")
    if "WatchdogSec" in svc:
        u["watchdog_ns"] = parse_timespan(svc["WatchdogSec"], w, "WatchdogSec")
    if "SuccessExitStatus" in svc:
        codes, sigs = _statuses(svc["SuccessExitStatus"], w, "SuccessExitStatus")
        if sigs:
            raise w.fail("SuccessExitStatus", "AIOS takes exit codes here, not signals")
        u["success_exit_status"] = codes
    if "RestartPreventExitStatus" in svc:
        codes, sigs = _statuses(svc["RestartPreventExitStatus"], w, "RestartPreventExitStatus")
        u["restart_prevent_exit_status"] = codes
        u["restart_prevent_signals"] = sigs


def parse_file(path: Path) -> Unit:
    """Read and validate ``NAME.toml``."""
    source = str(path)
    if not path.name.endswith(".toml"):
        raise InvalidArgument(f"{source}: unit files end in .toml")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"{source}: cannot read: {e.strerror}") from None
    return parse_text(path.name[: -len(".toml")], raw, source)


def parse_text(name: str, raw: bytes | str, source: str) -> Unit:
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_UNIT_FILE:
        raise InvalidArgument(f"{source}: unit file is {len(data)} bytes, at most {MAX_UNIT_FILE}")
    try:
        doc = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{source}: not valid TOML: {e}") from None
    return parse_unit(name, doc, source)


def load_dir(directory: Path) -> list[Unit]:
    """Every ``*.toml`` unit in ``directory`` (sorted by name); a missing directory has none."""
    if not directory.is_dir():
        return []
    return [parse_file(p) for p in sorted(directory.glob("*.toml"))]


def shipped_units() -> list[Unit]:
    """The unit files that ship with AIOS (package data: ``aios/kmod/initd/shipped/*.toml``)."""
    out = []
    root = resources.files("aios.kmod.initd") / "shipped"
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out.append(
                parse_text(entry.name[: -len(".toml")], entry.read_bytes(), f"<shipped>/{entry.name}")
            )
    return out


def merge_units(shipped: list[Unit], local: list[Unit]) -> list[Unit]:
    """``$AIOS_HOME/units`` overrides a shipped unit of the same name (as /etc over /usr/lib)."""
    by_name = {u.name: u for u in shipped}
    for u in local:
        by_name[u.name] = u
    return [by_name[n] for n in sorted(by_name)]
