"""The ABI's single copies: home resolution, audited topics, the message wire form, slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.abi.home import aios_home
from aios.abi.message import WIRE_MESSAGE, Message, from_wire, to_wire
from aios.abi.slots import FIRST_FREE_SLOT, SLOT_AUTHORITY
from aios.abi.sysno import BLOCKS, Sys
from aios.abi.topics import AUDIT_PATTERNS, AUDIT_PREFIXES, AUDITED


def test_home_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("AIOS_HOME", "")
    assert aios_home() == tmp_path / ".local" / "state" / "aios"
    monkeypatch.delenv("AIOS_HOME")
    assert aios_home() == tmp_path / ".local" / "state" / "aios"
    monkeypatch.setenv("AIOS_HOME", "/srv/node")
    assert aios_home() == Path("/srv/node")
    assert aios_home("/explicit") == Path("/explicit")


def test_home_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aios.abi.home import home_source

    monkeypatch.delenv("AIOS_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert aios_home() == tmp_path / "state" / "aios" and home_source() == "XDG_STATE_HOME"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # the convention: ignore a relative path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert aios_home() == tmp_path / ".local" / "state" / "aios" and home_source() == "default"
    monkeypatch.setenv("AIOS_HOME", str(tmp_path / "node"))
    assert aios_home() == tmp_path / "node" and home_source() == "AIOS_HOME"


def test_daemon_and_security_agree_on_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aios.daemon import home_dir
    from aios.lib.policy.files import operator_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("AIOS_HOME", "")
    assert home_dir() == (tmp_path / ".local" / "state" / "aios").resolve()
    assert operator_dir() == tmp_path / ".local" / "state" / "aios" / "policy"


def test_audited_topics_are_one_list() -> None:
    from aios.lib.audit.recorder import AuditRecorder

    assert len(AUDIT_PATTERNS) == len(AUDIT_PREFIXES) == len(AUDITED)
    for prefix, pattern in zip(AUDIT_PREFIXES, AUDIT_PATTERNS, strict=True):
        assert pattern == (prefix + "**" if prefix.endswith(".") else prefix)
    rec = AuditRecorder.__init__.__defaults__
    assert rec is not None and AUDIT_PREFIXES in rec


def test_message_wire_roundtrip() -> None:
    m = Message(7, 3, 0, b"hi", 9, -1)
    wire = to_wire(m)
    assert wire == {WIRE_MESSAGE: [7, 3, 0, b"hi", 9, -1]}
    assert from_wire(wire) == m and type(from_wire(wire)) is Message
    assert to_wire([m, m]) == [wire, wire]
    assert to_wire((1, m)) == [1, wire]
    assert from_wire({"other": 1}) == {"other": 1}


def test_blocks_cover_every_number_once() -> None:
    owners = {}
    for owner, ranges in BLOCKS.items():
        for lo, hi in ranges:
            for n in range(lo, hi + 1):
                assert n not in owners, n
                owners[n] = owner
    for s in Sys:
        assert int(s) in owners, s
    assert SLOT_AUTHORITY == 2 and FIRST_FREE_SLOT == 6
