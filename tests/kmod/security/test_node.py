"""aios.kmod.security.node: boot wiring, agent measurement, rotation mid-log."""

from __future__ import annotations

from pathlib import Path

from aios.kmod.security.node import open_node_security
from aios.lib import attest
from aios.lib.audit.log import LogReader
from aios.lib.identity import read_node_public
from aios.lib.paths import audit_db_path, event_log_path


def test_boot_spawn_rotate_and_reboot(tmp_path: Path) -> None:
    sec = open_node_security(tmp_path)
    assert "first boot" in sec.notice
    sec.recorder.on_event("agent.lifecycle.spawn", {"agent": 1, "image": "img"})
    digest = sec.measure_agent(1, b"agent image bytes")
    agent = sec.keystore.issue_agent_identity(1, digest)
    assert agent.binding_valid(sec.node.public_key)
    q = sec.quote(b"nonce")
    attest.verify_quote(
        q, attest.load_event_log(event_log_path(tmp_path)), sec.node.public_key, b"nonce"
    )
    old = sec.node.public_key
    rot = sec.rotate_node_key()
    assert rot.valid() and sec.node.public_key != old
    sec.recorder.on_event("cap.grant", {"agent": 1, "cap": 3})
    sec.close()

    _name, keys = read_node_public(tmp_path)
    reader = LogReader.open(audit_db_path(tmp_path))
    report = reader.verify(keys)
    assert report.ok and report.size == 4 and report.checkpoints == 3
    assert not reader.verify(keys[1:]).ok  # the old key's checkpoints need the old key
    kinds = [e.kind for e in reader.entries()]
    assert kinds == [
        "security.boot",
        "agent.lifecycle.spawn",
        "security.node_key.rotated",
        "cap.grant",
    ]

    sec2 = open_node_security(tmp_path)
    assert sec2.node.public_key == keys[1].public_key and sec2.log.acknowledged_size == 4
    sec2.close()
