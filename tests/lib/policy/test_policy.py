"""Cedar policy engine: decisions, settings, marking, safe reload, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.abi.errors import InvalidArgument, PolicyDenied
from aios.lib.policy.engine import (
    AgentInfo,
    HostRef,
    ImageRef,
    PolicyEngine,
    compile_policies,
    parse_quantity,
)
from aios.lib.policy.files import (
    DEFAULTS_DIR,
    PolicyWatcher,
    load_engine,
    read_sources,
)

WORKER = AgentInfo(1, type="worker", publisher="acme", image="w:1")
SPAWN_CTX = {"child_type": "worker", "child_publisher": "acme", "rights": []}


def engine(extra: dict[str, str] | None = None, emit=None) -> PolicyEngine:
    src = read_sources([DEFAULTS_DIR])
    src.update(extra or {})
    return PolicyEngine.from_sources(src, emit=emit)


def test_defaults_allow_normal_operation() -> None:
    e = engine()
    assert e.check_spawn(WORKER, ImageRef("app"), child_type="worker").allowed
    assert e.check_grant(WORKER, AgentInfo(2), {"READ", "WRITE"}).allowed
    assert e.check_net(WORKER, "api.example.com", 443).allowed
    assert e.check_mem_share(WORKER, AgentInfo(2), 4096, writable=True).allowed


def test_forbid_beats_permit() -> None:
    e = engine(
        {
            "x.cedar": (
                '@id("allow-all-spawn") permit(principal, action == Action::"spawn", resource);\n'
                '@id("no-miners") forbid(principal, action == Action::"spawn", resource == Image::"miner");'
            )
        }
    )
    d = e.check_spawn(WORKER, ImageRef("miner"), child_type="worker")
    assert not d.allowed
    assert d.policies == ("x.cedar:no-miners",)
    assert e.check_spawn(WORKER, ImageRef("app"), child_type="worker").allowed


def test_denied_spawn_decision_raises_policy_denied_and_is_audited() -> None:
    records: list[tuple[str, dict]] = []
    e = engine(emit=lambda t, r: records.append((t, dict(r))))
    d = e.check_spawn(AgentInfo(5, trust="untrusted"), ImageRef("app"), child_type="worker")
    assert not d.allowed
    assert "security.cedar:spawn-untrusted-no-children" in d.policies
    with pytest.raises(PolicyDenied):
        d.enforce()
    topic, rec = records[-1]
    assert topic == "policy.decision"
    assert rec["allowed"] is False and rec["action"] == "spawn"
    assert rec["policies"] == list(d.policies)


def test_metadata_service_is_unreachable_by_default() -> None:
    e = engine()
    d = e.check_net(WORKER, "169.254.169.254", 80)
    assert not d.allowed and d.policies == ("security.cedar:net-no-metadata-service",)
    assert not e.check_net(WORKER, "metadata.google.internal", 80).allowed
    assert e.check_net(WORKER, "10.1.2.3", 80).allowed


def test_grant_of_admin_to_untrusted_denied_per_right() -> None:
    e = engine()
    d = e.check_grant(WORKER, AgentInfo(9, trust="untrusted"), {"READ", "ADMIN"})
    assert not d.allowed
    assert d.policies == ("security.cedar:grant-no-admin-to-untrusted",)
    assert e.check_grant(WORKER, AgentInfo(9, trust="untrusted"), {"READ"}).allowed


def test_policy_on_agent_type_applies_to_new_agents_of_that_type() -> None:
    e = engine(
        {
            "crawler.cedar": (
                '@id("crawler-quota") @priority("10") @quota_memory("512MiB") @quota_agents("4")\n'
                'permit(principal, action == Action::"quota", resource == AgentType::"crawler");\n'
                '@id("crawler-sched") @priority("10") @sched_weight("100")\n'
                'permit(principal, action == Action::"schedule", resource == AgentType::"crawler");\n'
                '@id("crawler-no-net") forbid(principal in AgentType::"crawler",\n'
                '  action == Action::"net_connect", resource) when { context.port != 443 };'
            )
        }
    )
    # agents created after the policy was loaded, never seen by the engine before
    for key in (100, 101, 102):
        fresh = AgentInfo(key, type="crawler", publisher=f"p{key}")
        q = e.quotas(fresh)
        assert q.get("memory") == 512 << 20 and q.get("agents") == 4
        assert "crawler.cedar:crawler-quota" in q.policies
        assert e.schedule(fresh).get("weight") == 100
        assert not e.check_net(fresh, "example.com", 80).allowed
        assert e.check_net(fresh, "example.com", 443).allowed
    other = AgentInfo(200, type="worker")
    assert e.quotas(other).get("memory") == 256 << 20
    assert e.schedule(other).get("weight") == 1024
    assert e.check_net(other, "example.com", 80).allowed


def test_settings_priority_then_strictest() -> None:
    e = engine(
        {
            "t.cedar": (
                '@id("a") @priority("3") @quota_memory("2GiB") permit(principal, action == Action::"quota", resource);\n'
                '@id("b") @priority("3") @quota_memory("1GiB") permit(principal, action == Action::"quota", resource);\n'
                '@id("c") @priority("2") @quota_memory("64MiB") permit(principal, action == Action::"quota", resource);'
            )
        }
    )
    assert e.quotas(WORKER).get("memory") == 1 << 30
    assert e.quotas(AgentInfo(3, trust="untrusted")).get("memory") == 64 << 20  # priority 5 default


def test_marks_only_named_actions() -> None:
    e = engine()
    assert e.marks("spawn") and e.marks("net_connect") and e.marks("grant")
    assert not e.marks("ipc_send") and not e.marks("kill")
    e2 = engine({"k.cedar": 'forbid(principal, action, resource) when { principal.trust == "x" };'})
    assert not e2.marks("kill")  # unconstrained scope marks nothing
    e3 = engine(
        {
            "k.cedar": 'forbid(principal, action in [Action::"kill", Action::"ipc_send"], resource)'
            ' when { principal.trust == "untrusted" };'
        }
    )
    assert e3.marks("kill") and e3.marks("ipc_send")
    assert not e3.decide(AgentInfo(4, trust="untrusted"), "kill", AgentInfo(5)).allowed


@pytest.mark.parametrize(
    "bad",
    [
        "permit(principal, action, resource",  # syntax
        'permit(principal, action == Action::"spawn", resource) when { principal.tpye == "x" };',
        'permit(principal, action == Action::"fly", resource);',
        '@quota_memory("lots") permit(principal, action == Action::"quota", resource);',
        '@sched_weight("5") forbid(principal, action == Action::"schedule", resource);',
        '@quota_disk("5") permit(principal, action == Action::"quota", resource);',
        '@id("d") permit(principal, action == Action::"kill", resource);\n'
        '@id("d") permit(principal, action == Action::"kill", resource);',
        'permit(?principal, action == Action::"kill", resource);',
    ],
)
def test_bad_policy_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument) as ei:
        compile_policies({"bad.cedar": bad})
    assert ei.value.detail["errors"]


def test_bad_policy_file_changes_nothing_on_reload(tmp_path: Path) -> None:
    d = tmp_path / "policy"
    d.mkdir()
    (d / "site.cedar").write_text(
        '@id("no-miner") forbid(principal, action == Action::"spawn", resource == Image::"miner");'
    )
    e = load_engine(tmp_path)
    before = (e.generation, e.compiled.digest)
    assert not e.check_spawn(WORKER, ImageRef("miner"), child_type="w").allowed
    # an operator breaks the file and also tries to drop the forbid
    (d / "site.cedar").write_text('permit(principal, action == Action::"spawn", resource) when {')
    r = e.reload()
    assert not r.ok and not r.changed and r.errors
    assert (e.generation, e.compiled.digest) == before
    assert not e.check_spawn(WORKER, ImageRef("miner"), child_type="w").allowed
    # fixed file: applied
    (d / "site.cedar").write_text(
        '@id("no-app") forbid(principal, action == Action::"spawn", resource == Image::"app");'
    )
    r = e.reload()
    assert r.ok and r.changed and r.generation == before[0] + 1
    assert e.check_spawn(WORKER, ImageRef("miner"), child_type="w").allowed
    assert not e.check_spawn(WORKER, ImageRef("app"), child_type="w").allowed


def test_watcher_reloads_on_change_only(tmp_path: Path) -> None:
    d = tmp_path / "policy"
    d.mkdir()
    e = load_engine(tmp_path)
    w = PolicyWatcher(e, [DEFAULTS_DIR, d])
    assert w.poll() is None
    (d / "x.cedar").write_text('@id("nk") forbid(principal, action == Action::"kill", resource);')
    r = w.poll()
    assert r is not None and r.ok and r.changed
    assert e.marks("kill")
    assert w.poll() is None


def test_operator_file_overrides_shipped_default(tmp_path: Path) -> None:
    d = tmp_path / "policy"
    d.mkdir()
    (d / "security.cedar").write_text("")  # switch the shipped security defaults off
    e = load_engine(tmp_path)
    assert not e.marks("spawn")
    assert e.marks("quota")


def test_invalid_set_at_boot_raises(tmp_path: Path) -> None:
    d = tmp_path / "policy"
    d.mkdir()
    (d / "x.cedar").write_text("nonsense")
    with pytest.raises(InvalidArgument):
        load_engine(tmp_path)


def test_unknown_action_and_rights_are_argument_errors() -> None:
    e = engine()
    with pytest.raises(InvalidArgument):
        e.decide(WORKER, "teleport", HostRef("x"))
    with pytest.raises(InvalidArgument):
        e.check_grant(WORKER, AgentInfo(2), {"FLY"})
    with pytest.raises(InvalidArgument):
        e.check_net(WORKER, "x", 70000)


def test_parse_quantity() -> None:
    assert parse_quantity("512MiB") == 512 << 20
    assert parse_quantity("10k") == 10_000
    assert parse_quantity("7") == 7
    with pytest.raises(InvalidArgument):
        parse_quantity("1.5GiB")


def test_cli_check_and_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aios.cli.policy import app

    monkeypatch.setenv("AIOS_HOME", str(tmp_path))
    (tmp_path / "policy").mkdir()
    runner = CliRunner()
    r = runner.invoke(app, ["check", "-o", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["ok"] is True
    r = runner.invoke(
        app,
        [
            "test",
            "--principal",
            "key=3,trust=untrusted",
            "--action",
            "spawn",
            "--resource",
            "Image:app",
            "--context",
            json.dumps(SPAWN_CTX),
            "-o",
            "json",
        ],
    )
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert out["allowed"] is False
    assert "security.cedar:spawn-untrusted-no-children" in out["policies"]
    (tmp_path / "policy" / "bad.cedar").write_text("permit(")
    r = runner.invoke(app, ["check", "-o", "json"])
    assert r.exit_code == 1 and json.loads(r.output)["ok"] is False
    r = runner.invoke(app, ["reload", "-o", "json"])
    assert r.exit_code == 1 and json.loads(r.output)["kept_previous"] is True
