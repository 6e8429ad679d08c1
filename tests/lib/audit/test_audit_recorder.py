"""aios.lib.audit.recorder: which events are audited and how they are encoded."""

from __future__ import annotations

import json
from pathlib import Path

from aios.lib.audit.log import AuditLog, LogReader
from aios.lib.audit.recorder import AuditRecord, AuditRecorder, canonical_json

ORIGIN = "aios.local/t/audit"


def test_relevant_topics_recorded_others_ignored(tmp_path: Path) -> None:
    rec = AuditRecorder(AuditLog(tmp_path / "a.db", ORIGIN), wall_ns=lambda: 777)
    rec.on_event("cap.revoke", {"agent": 4, "cap": 12, "result": "ok"})
    rec.on_event("ipc.send", {"agent": 4})
    rec.on_event("scheduler.tick", {})
    rec.on_event("policy.decision", {"agent_id": "9", "decision": "deny", "action": "mem.read"})
    rec.on_event("agent.lifecycle.spawn", {"who": "planner", "image": b"\x01\x02"})
    rec.on_event("metrics.sample", {"audit": True, "agent": 1})
    assert (rec.recorded, rec.ignored) == (4, 2)
    assert rec.log.acknowledged_size == 0
    assert rec.flush() == 4
    entries = list(LogReader.open(tmp_path / "a.db").entries(limit=10))
    recs = [AuditRecord.decode(e.record) for e in entries]
    assert [r.kind for r in recs] == [
        "cap.revoke",
        "policy.decision",
        "agent.lifecycle.spawn",
        "metrics.sample",
    ]
    assert (
        recs[0].agent == 4
        and recs[0].capability == 12
        and recs[0].result == "ok"
        and recs[0].ts_ns == 777
    )
    assert (
        recs[1].agent == 9
        and recs[1].decision == "deny"
        and recs[1].detail == {"action": "mem.read"}
    )
    assert recs[2].agent is None and recs[2].detail == {
        "agent_name": "planner",
        "image": "b64:AQI=",
    }
    assert entries[1].agent == 9 and entries[0].kind == "cap.revoke"


def test_canonical_json_is_stable() -> None:
    a = canonical_json({"b": 1, "a": [1, {"z": b"\x00", "y": {3, 1}}], "c": float("nan")})
    b = canonical_json({"a": [1, {"y": {1, 3}, "z": b"\x00"}], "c": float("nan"), "b": 1})
    assert a == b
    assert json.loads(a) == {"a": [1, {"y": [1, 3], "z": "b64:AA=="}], "b": 1, "c": "nan"}
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(20):
        cur["x"] = {}
        cur = cur["x"]  # type: ignore[assignment]
    assert canonical_json(deep)  # depth-limited, never raises


def test_event_timestamp_is_kept(tmp_path: Path) -> None:
    rec = AuditRecorder(AuditLog(tmp_path / "a.db", ORIGIN), wall_ns=lambda: 1)
    rec.on_event("security.violation", {"agent": 2, "ts_ns": 5555, "what": object()})
    rec.flush()
    e = next(LogReader.open(tmp_path / "a.db").entries())
    r = AuditRecord.decode(e.record)
    assert r.ts_ns == 5555 == e.ts_ns and isinstance(r.detail["what"], str)
