from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import image as image_cli
from aios.cli import keys as keys_cli


def test_keys_and_image_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "home"))
    r = CliRunner()
    res = r.invoke(keys_cli.app, ["create", "acme", "-o", "json"])
    assert res.exit_code == 0, res.output
    key = Path(json.loads(res.output)["key"])
    assert (key.stat().st_mode & 0o777) == 0o600
    assert r.invoke(keys_cli.app, ["trust", "acme", "--executor", "wasm"]).exit_code == 0
    d = tmp_path / "img"
    d.mkdir()
    (d / "agent.toml").write_text('name="a"\nversion="1"\nentry="x.wat"\nexecutor="wasm"\n')
    (d / "x.wat").write_text("(module)")
    assert r.invoke(image_cli.app, ["build", str(d), "-o", "json"]).exit_code == 0
    res = r.invoke(image_cli.app, ["verify", str(d), "-o", "json"])
    assert res.exit_code == 1 and json.loads(res.output)["error"] == "EBADMSG"
    assert r.invoke(image_cli.app, ["sign", str(d), "--key", "acme"]).exit_code == 0
    res = r.invoke(image_cli.app, ["verify", str(d), "-o", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["verified"] is True
    res = r.invoke(image_cli.app, ["inspect", str(d), "-o", "json"])
    assert json.loads(res.output)["signed_by"] == "acme"
