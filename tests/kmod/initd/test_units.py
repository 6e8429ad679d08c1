"""Unit files: parsing, validation messages that name file and key, shipped units."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.abi.errors import AlreadyExists, InvalidArgument
from aios.abi.rights import RIGHT_NAMES as KERNEL_RIGHTS
from aios.kmod.initd import core
from aios.kmod.initd.graph import UnitGraph
from aios.kmod.initd.restart import Restart
from aios.kmod.initd.units import (
    RIGHT_NAMES,
    SECOND,
    ServiceType,
    load_dir,
    merge_units,
    parse_file,
    parse_text,
    shipped_units,
)

GOOD = """
[Unit]
Description = "a test service"
Requires = ["db.service"]
After = ["db.service"]
StartLimitIntervalSec = "30s"
StartLimitBurst = 3

[Service]
Type = "notify"
Entry = "pkg.mod:main"
Executor = "isolated"
Rights = ["ACCESS_NET", "READ"]
Quota = { memory = 1048576, agents = 2 }
Restart = "on-abnormal"
RestartSec = "1min 30s"
TimeoutStartSec = "250ms"
WatchdogSec = 10
SuccessExitStatus = [2, 3]
RestartPreventExitStatus = [4, "SIGUSR1"]

[Install]
WantedBy = ["services.target"]
"""


def test_a_full_unit_parses() -> None:
    u = parse_text("web.service", GOOD, "web.service.toml")
    assert u.requires == ("db.service",) and u.after == ("db.service",)
    assert u.type is ServiceType.NOTIFY and u.entry == "pkg.mod:main" and u.image is None
    assert u.executor == "isolated" and u.rights == ("ACCESS_NET", "READ")
    assert u.quota.memory == 1048576 and u.quota.agents == 2 and u.quota.cpu_weight is None
    assert u.restart is Restart.ON_ABNORMAL and u.restart_ns == 90 * SECOND
    assert u.timeout_start_ns == SECOND // 4 and u.watchdog_ns == 10 * SECOND
    assert u.start_limit_interval_ns == 30 * SECOND and u.start_limit_burst == 3
    assert u.success_exit_status == {2, 3}
    assert u.restart_prevent_exit_status == {4} and u.restart_prevent_signals == {10}
    assert u.wanted_by == ("services.target",)


def test_defaults_follow_systemd() -> None:
    u = parse_text("x.service", '[Service]\nEntry = "a:b"\n', "x.service.toml")
    assert u.type is ServiceType.SIMPLE and u.restart is Restart.NO
    assert u.restart_ns == SECOND // 10 and u.timeout_start_ns == 90 * SECOND
    assert (u.start_limit_burst, u.start_limit_interval_ns) == (5, 10 * SECOND)
    assert u.watchdog_ns == 0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[Service]\nEntry = "a:b"\nRestart = "sometimes"\n', "[Service] Restart: 'sometimes' is not one of no, on-success"),
        ('[Service]\nEntry = "a:b"\nType = "forking"\n', "[Service] Type"),
        ('[Service]\nEntry = "a:b"\nRights = ["ROOT"]\n', "[Service] Rights: unknown right 'ROOT'"),
        ('[Service]\nEntry = "a:b"\nQuota = { disk = 1 }\n', "[Service] Quota: unknown quota field 'disk'"),
        ('[Service]\nEntry = "a:b"\nQuota = { memory = -1 }\n', "[Service] Quota.memory"),
        ('[Service]\nEntry = "a:b"\nRestartSec = "5 fortnights"\n', "[Service] RestartSec: unknown time unit"),
        ('[Service]\nEntry = "a:b"\nTimeoutStartSec = true\n', "[Service] TimeoutStartSec"),
        ('[Service]\nEntry = "a:b"\nExecutor = "vm"\n', "[Service] Executor"),
        ('[Service]\nEntry = "not an entry"\n', "[Service] Entry"),
        ('[Service]\nEntry = "a:b"\nImage = "x"\n', "exactly one of Entry and Image"),
        ('[Service]\nEntry = "a:b"\nColour = "red"\n', "[Service] Colour: unknown key"),
        ('[Unit]\nRequires = ["db"]\n[Service]\nEntry = "a:b"\n', "[Unit] Requires: 'db' is not a unit name"),
        ('[Unit]\nAfter = ["x.service"]\n[Service]\nEntry = "a:b"\n', "[Unit] After: a unit cannot name itself"),
        ('[Unit]\nStartLimitBurst = "five"\n[Service]\nEntry = "a:b"\n', "[Unit] StartLimitBurst"),
        ('[Install]\nWantedBy = "nothing here"\n[Service]\nEntry = "a:b"\n', "[Install] WantedBy"),
        ('[Unit]\nDescription = "no service section"\n', "needs a [Service] section"),
        ('[Exec]\n', "unknown section [Exec]"),
        ('[Service\n', "not valid TOML"),
    ],
)
def test_bad_units_name_the_file_and_the_key(text: str, where: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        parse_text("x.service", text, "/units/x.service.toml")
    assert str(ei.value).startswith("[EINVAL] /units/x.service.toml:")
    assert where in str(ei.value)


def test_a_target_runs_nothing() -> None:
    with pytest.raises(InvalidArgument, match=r"\[Service\] \(a target runs nothing\)"):
        parse_text("t.target", '[Service]\nEntry = "a:b"\n', "t.target.toml")


def test_the_file_name_is_the_unit_name(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text('[Service]\nEntry = "a:b"\n')
    with pytest.raises(InvalidArgument, match=r"NAME\.service\.toml"):
        parse_file(tmp_path / "web.toml")
    (tmp_path / "web.toml").unlink()
    (tmp_path / "web.service.toml").write_text('[Service]\nEntry = "a:b"\n')
    (tmp_path / "README.md").write_text("not a unit")
    [u] = load_dir(tmp_path)
    assert u.name == "web.service" and u.source == str(tmp_path / "web.service.toml")
    assert load_dir(tmp_path / "missing") == []


def test_oversize_unit_file_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="at most"):
        parse_text("x.service", "#" * (70 << 10), "x.service.toml")


def test_right_names_match_the_kernel() -> None:
    assert set(KERNEL_RIGHTS) == RIGHT_NAMES


def test_timespans() -> None:
    def span(v: object) -> int:
        return parse_text("x.service", f'[Service]\nEntry = "a:b"\nRestartSec = {v}\n', "x").restart_ns

    assert span(2) == 2 * SECOND and span(0.5) == SECOND // 2
    assert span('"1min 30s"') == 90 * SECOND and span('"250ms"') == SECOND // 4
    assert span('"1h"') == 3600 * SECOND and span('"infinity"') == 0 and span('"5"') == 5 * SECOND


def test_hard_dependencies_must_exist_soft_ones_may_not() -> None:
    a = parse_text("a.service", '[Unit]\nRequires = ["ghost.service"]\n[Service]\nEntry = "a:b"\n', "a.service.toml")
    with pytest.raises(InvalidArgument, match=r"a.service.toml: \[Unit\] Requires: no unit named ghost.service"):
        UnitGraph([a])
    b = parse_text("b.service", '[Unit]\nWants = ["planner.service"]\nAfter = ["planner.service"]\n'
                   '[Service]\nEntry = "a:b"\n[Install]\nWantedBy = ["nowhere.target"]\n', "b.service.toml")
    UnitGraph([b])  # the planner is not installed: ignored, as systemd does


def test_a_unit_defined_twice_is_refused() -> None:
    u = parse_text("a.service", '[Service]\nEntry = "a:b"\n', "one.toml")
    with pytest.raises(AlreadyExists):
        UnitGraph([u, u])


def test_shipped_units_load_and_boot_through_the_targets() -> None:
    units = {u.name: u for u in shipped_units()}
    for svc in ("identityd", "memoryd", "semantic-ipcd", "agentsupervisor"):
        u = units[f"{svc}.service"]
        assert u.entry and u.type is ServiceType.NOTIFY and u.restart is not Restart.NO
    assert set(core.BOOT_TARGETS) <= set(units)
    g = UnitGraph(units.values())
    assert g.start_closure("operational.target") == set(units)


def test_local_units_override_shipped_ones() -> None:
    local = parse_text("memoryd.service", '[Service]\nEntry = "my.memoryd:main"\n', "local.toml")
    merged = {u.name: u for u in merge_units(shipped_units(), [local])}
    assert merged["memoryd.service"].entry == "my.memoryd:main"
    assert merged["identityd.service"].entry == "aios.kmod.initd.agents:identityd"


def test_disabled_units_are_not_pulled_in_by_their_targets() -> None:
    eng = core.Engine(shipped_units(), lambda: 0, disabled={"semantic-ipcd.service"})
    out = eng.boot()
    pending = list(out)
    started = []
    while pending:
        act = pending.pop(0)
        if isinstance(act, core.StartUnit):
            started.append(act.unit.name)
            pending += eng.handle(core.Started(act.unit.name)) + eng.handle(core.Ready(act.unit.name))
    assert "semantic-ipcd.service" not in started and "memoryd.service" in started
