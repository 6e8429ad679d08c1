"""``aios audit`` and ``aios attest`` on files under $AIOS_HOME."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import attest as attest_cli
from aios.cli import audit as audit_cli
from aios.lib.audit.checkpoint import CheckpointPolicy
from aios.lib.audit.log import AuditLog, leaf_data
from aios.lib.audit.recorder import AuditRecorder
from aios.lib.identity import Keystore
from aios.lib.paths import audit_db_path, audit_origin

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIOS_HOME", str(tmp_path))
    monkeypatch.delenv("AIOS_KEY_PASSPHRASE", raising=False)
    ks = Keystore(tmp_path)
    log = AuditLog(
        audit_db_path(tmp_path),
        audit_origin(ks.node_id),
        ks.node_identity(),
        CheckpointPolicy(every_n=25),
        batch_max=5,
    )
    rec = AuditRecorder(log, wall_ns=iter(range(10**9, 10**9 + 1000)).__next__)
    for i in range(60):
        rec.on_event(
            "cap.grant" if i % 2 else "policy.decision", {"agent": i % 3, "cap": i, "result": "ok"}
        )
    rec.close()
    return tmp_path


def _json(args: list[str], app: object = audit_cli.app, code: int = 0) -> dict[str, object]:
    res = runner.invoke(app, [*args, "-o", "json"])  # type: ignore[arg-type]
    assert res.exit_code == code, res.output
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_log_filters(home: Path) -> None:
    res = runner.invoke(
        audit_cli.app, ["log", "--agent", "1", "--type", "cap.*", "-o", "json", "--limit", "100"]
    )
    rows = json.loads(res.stdout)
    assert [r["entry"] for r in rows] == [i for i in reversed(range(60)) if i % 3 == 1 and i % 2]  # newest first
    res = runner.invoke(
        audit_cli.app, ["log", "--since", str(10**9 + 10), "--until", str(10**9 + 12), "-o", "json"]
    )
    assert [r["entry"] for r in json.loads(res.stdout)] == [11, 10]
    res = runner.invoke(audit_cli.app, ["log", "-n", "3", "-o", "json"])
    assert [r["entry"] for r in json.loads(res.stdout)] == [59, 58, 57]
    res = runner.invoke(audit_cli.app, ["log", "-n", "2", "--oldest-first", "-o", "json"])
    assert [r["entry"] for r in json.loads(res.stdout)] == [0, 1]
    res = runner.invoke(audit_cli.app, ["log", "-n", "2", "--from-entry", "30", "-o", "json"])
    assert [r["entry"] for r in json.loads(res.stdout)] == [30, 31]
    assert runner.invoke(audit_cli.app, ["log"]).exit_code == 0


def test_verify_prove_consistency_checkpoint(home: Path) -> None:
    assert _json(["verify"])["ok"] is True
    p = _json(["prove", "--entry", "7"])
    assert p["verified"] is True and p["tree_size"] == 50 and p["against_signed_checkpoint"] is True
    c = _json(["consistency", "--from", "25"])
    assert c["verified"] is True and c["signed_ends"] == [25, 50]
    res = runner.invoke(audit_cli.app, ["checkpoint"])
    assert res.exit_code == 0 and res.stdout.split("\n")[1] == "60"
    assert _json(["prove", "--entry", "55"])["tree_size"] == 60
    assert runner.invoke(audit_cli.app, ["prove", "--entry", "99"]).exit_code == 2


def test_verify_reports_tampering(home: Path) -> None:
    db = sqlite3.connect(audit_db_path(home), isolation_level=None)
    db.execute("UPDATE leaves SET data = ? WHERE idx = 33", (leaf_data(33, b"{}"),))
    db.close()
    out = _json(["verify"], code=1)
    assert out["ok"] is False and out["first_bad_entry"] == 33


def test_attest_quote_and_verify(home: Path, tmp_path: Path) -> None:
    assert runner.invoke(attest_cli.app, ["measure"]).exit_code == 0
    qfile = tmp_path / "q.json"
    res = runner.invoke(attest_cli.app, ["quote", "--nonce", "c0ffee", "--out", str(qfile)])
    assert res.exit_code == 0 and json.loads(qfile.read_text())["nonce"] == "c0ffee"
    ok = runner.invoke(
        attest_cli.app, ["verify", "--quote", str(qfile), "--nonce", "c0ffee", "--check-local"]
    )
    assert ok.exit_code == 0 and "quote verified" in ok.stdout
    stale = runner.invoke(attest_cli.app, ["verify", "--quote", str(qfile), "--nonce", "c0ffef"])
    assert stale.exit_code == 1
    log = home / "attest" / "eventlog.json"
    events = json.loads(log.read_text())
    events[1]["digest"] = "00" * 32
    log.write_text(json.dumps(events))
    assert (
        runner.invoke(
            attest_cli.app, ["verify", "--quote", str(qfile), "--nonce", "c0ffee"]
        ).exit_code
        == 1
    )
    assert runner.invoke(attest_cli.app, ["status"]).exit_code == 0
