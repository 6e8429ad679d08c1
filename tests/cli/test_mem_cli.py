"""``aios mem`` and ``aios ask`` against a daemon in a temporary $AIOS_HOME."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.cli.test_daemon import aios, daemon  # noqa: F401 - the fixture


def test_mem_and_ask(daemon: Path) -> None:  # noqa: F811
    home = daemon
    st = json.loads(aios(home, "mem", "stats", "-o", "json").stdout)
    assert st["embedder"] and st["embedder_reason"] and st["directory"] == str(home / "memory")

    stored = json.loads(aios(home, "mem", "put", "notes", "The Louvre is a museum in Paris",
                             "--meta", '{"kind": "sight"}', "-o", "json").stdout)
    assert stored["namespace"] == "notes" and stored["meta"] == {"kind": "sight"}
    aios(home, "mem", "put", "notes", "Bananas are rich in potassium")
    hits = json.loads(aios(home, "mem", "search", "notes", "art gallery in France", "-k", "1",
                           "-o", "json").stdout)
    assert [h["text"] for h in hits] == ["The Louvre is a museum in Paris"]
    rows = json.loads(aios(home, "mem", "ls", "-o", "json").stdout)
    assert [(r["namespace"], r["items"]) for r in rows] == [("notes", 2)]
    assert "no memory namespace 'nope'" in aios(home, "mem", "search", "nope", "x", check=False).stderr

    ag = json.loads(aios(home, "spawn", "aios.demos.team:Forecaster", "--name", "wx", "-o", "json").stdout)
    aios(home, "mem", "share", "notes", str(ag["aid"]), "--rights", "READ,WRITE")
    aios(home, "send", str(ag["aid"]), "start")
    for _ in range(100):  # registration embeds the examples in the daemon
        st = json.loads(aios(home, "mem", "stats", "-o", "json").stdout)
        if st["semantic_skills"]:
            break
        time.sleep(0.2)
    out = aios(home, "ask", "Is it going to be rainy in Lyon tomorrow?").stdout
    assert f"-> agent {ag['aid']} skill weather score" in out and "reply:  \"Lyon, tomorrow:" in out
    refused = aios(home, "ask", "Tell me a joke about penguins", check=False)
    assert refused.returncode == 1 and "ENOENT" in refused.stderr and "nearest" in refused.stderr
    expl = json.loads(aios(home, "ask", "windy in Nice?", "--explain", "-o", "json").stdout)
    assert expl["explain"] and expl["targets"][0]["skill"] == "weather"
    # the forecaster recorded its finding in the shared namespace
    st = json.loads(aios(home, "mem", "stats", "notes", "-o", "json").stdout)
    assert st["items"] == 3
    # aios skills: the forecaster's skill, its raw background and expected scores, explained
    sk = json.loads(aios(home, "skills", "ls", "-o", "json").stdout)
    (wx,) = [s for s in sk["skills"] if s["skill"] == "weather"]
    assert wx["agent"] == ag["aid"] and wx["expected"] > wx["background"]
    table = aios(home, "skills", "ls").stdout
    assert "weather" in table and "EXPECTED" in table and "threshold" in table
    ex = json.loads(aios(home, "skills", "explain", "weather", "-o", "json").stdout)
    assert ex[0]["skill"] == "weather" and "confusions" in ex[0] and "neighbours" in ex[0]
    assert "nearest skills" in aios(home, "skills", "explain", "weather").stdout
    missing = aios(home, "skills", "explain", "nope", check=False)
    assert missing.returncode == 1 and "ENOENT" in missing.stderr
