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


def test_trust_store_is_private_and_install_fills_the_verified_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    from aios.lib.paths import trust_dir

    home = tmp_path / "home"
    monkeypatch.setenv("AIOS_HOME", str(home))
    monkeypatch.setenv("AIOS_QUIET", "1")  # CliRunner mixes stderr's progress into the JSON output
    r = CliRunner()
    assert r.invoke(keys_cli.app, ["create", "acme"]).exit_code == 0
    assert r.invoke(keys_cli.app, ["trust", "acme"]).exit_code == 0
    assert keys_cli.trust_dir() == trust_dir(home)  # one store, one path function
    for p in (home / "keys", trust_dir(home)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    for p in (home / "keys").rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    d = tmp_path / "img"
    d.mkdir()
    (d / "agent.toml").write_text('name="a"\nversion="1"\nentry="x.wat"\nexecutor="wasm"\n')
    (d / "x.wat").write_text("(module)")
    res = r.invoke(image_cli.app, ["install", str(d), "-o", "json"])
    assert res.exit_code == 1 and json.loads(res.output)["error"] == "EBADMSG"
    assert not (home / "images").exists() or not any((home / "images").iterdir())  # nothing unverified
    assert r.invoke(image_cli.app, ["sign", str(d), "--key", "acme"]).exit_code == 0
    res = r.invoke(image_cli.app, ["install", str(d), "-o", "json"])
    out = json.loads(res.output)
    assert res.exit_code == 0 and out["ref"] == f"image:sha256:{out['digest']}"
    assert [p.name for p in (home / "images").iterdir()] == [out["digest"]]
