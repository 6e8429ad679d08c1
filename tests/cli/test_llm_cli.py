"""``aios dev ls`` and ``aios llm ls | chat | stats`` against a daemon with the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli.test_daemon import aios, daemon  # noqa: F401 - the fixture

pytestmark = [pytest.mark.llm, pytest.mark.slow]  # a daemon and ten CLI processes: ~80 s here


def test_dev_and_llm_commands(daemon: Path, tmp_path: Path) -> None:  # noqa: F811
    home = daemon
    devices = json.loads(aios(home, "dev", "ls", "-o", "json").stdout)
    assert [(d["id"], d["class"], d["driver"]) for d in devices] == [("llm0", "llm", "llm-embedded")]
    drivers = json.loads(aios(home, "dev", "ls", "--drivers", "-o", "json").stdout)
    assert {"llm-embedded", "llm-http"} <= {d["name"] for d in drivers}
    table = aios(home, "dev", "ls").stdout
    assert "llm0" in table and "SmolLM2" in table

    r = json.loads(aios(home, "llm", "chat", "What is the capital of France? One word.",
                        "--max-tokens", "8", "--seed", "1", "-o", "json").stdout)
    assert "paris" in r["text"].lower() and r["device"] == "llm0"
    assert r["usage"]["completion_tokens"] >= 1
    streamed = aios(home, "llm", "chat", "Say hi.", "--max-tokens", "4")
    assert streamed.stdout.strip() and "completion tokens" in streamed.stderr

    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}},
                                  "required": ["ok"]}))
    r = json.loads(aios(home, "llm", "chat", "Is water wet? Answer as JSON.", "--json-schema",
                        str(schema), "--max-tokens", "16", "-o", "json").stdout)
    assert isinstance(json.loads(r["text"])["ok"], bool)

    models = json.loads(aios(home, "llm", "ls", "-o", "json").stdout)
    assert models[0]["id"] == "llm0" and models[0]["requests"] >= 3
    st = json.loads(aios(home, "llm", "stats", "-o", "json").stdout)
    assert st["device"] == "llm0" and st["completed"] >= 3
    assert sum(c["requests"] for c in st["clients"].values()) >= 3
    assert "clients of llm0" in aios(home, "llm", "stats").stdout

    bad = aios(home, "llm", "chat", "x", "--device", "nope", check=False)
    assert bad.returncode == 1 and "ENOENT" in bad.stderr
