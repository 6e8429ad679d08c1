"""aios.lib.identity: keystore at rest, node and agent identities, rotation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchObject
from aios.lib.audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from aios.lib.crypto import pqc
from aios.lib.identity import CTX_BINDING, Keystore, image_hash

FAST_N = 1 << 10  # scrypt cost for tests only


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_first_boot_with_key_file(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    assert ks.created and "key file" in ks.notice and "passphrase" in ks.notice
    node = ks.node_identity()
    keys = tmp_path / "keys"
    assert _mode(keys) == 0o700
    for f in keys.iterdir():
        if f.is_file():
            assert _mode(f) == 0o600, f
    seed_file = (keys / "node.key").read_bytes()
    assert len(node.public_key) == 1952
    # the sealed file does not contain the seed in the clear
    again = Keystore(tmp_path)
    assert not again.created and again.node_identity().public_key == node.public_key
    assert len(seed_file) == 8 + 12 + 32 + 16
    sig = node.sign(b"msg", b"ctx")
    assert again.node_identity().verify(b"msg", sig, b"ctx")
    with pytest.raises(InvalidArgument):
        Keystore(tmp_path, passphrase=b"not expected")


def test_passphrase_keystore(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, passphrase=b"correct horse", scrypt_n=FAST_N)
    assert "passphrase" in ks.notice and not (tmp_path / "keys" / "master.key").exists()
    pk = ks.node_identity().public_key
    assert Keystore(tmp_path, passphrase=b"correct horse").node_identity().public_key == pk
    with pytest.raises(IntegrityError):
        Keystore(tmp_path, passphrase=b"wrong")
    with pytest.raises(InvalidArgument):
        Keystore(tmp_path)


def test_tampered_or_swapped_key_files_fail(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    ks.node_identity()
    ks.issue_agent_identity(7, image_hash(b"img"))
    keys = tmp_path / "keys"
    blob = bytearray((keys / "node.key").read_bytes())
    blob[-1] ^= 1
    (keys / "node.key").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        Keystore(tmp_path).node_identity()
    (keys / "node.key").write_bytes((keys / "agents" / "7.key").read_bytes())  # swap roles
    with pytest.raises(IntegrityError):
        Keystore(tmp_path).node_identity()
    (keys / "master.key").write_bytes(b"\x00" * 32)
    with pytest.raises(IntegrityError):
        Keystore(tmp_path)


def test_agent_identity_binding(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    node = ks.node_identity()
    img = image_hash(b"agent image v1")
    agent = ks.issue_agent_identity(42, img)
    assert agent.binding_valid(node.public_key)
    sig = agent.sign(b"hello from 42", b"aios/ipc")
    assert agent.verify(b"hello from 42", sig, b"aios/ipc")
    # the binding names id, image and key; changing any breaks it
    forged = type(agent)(43, img, agent.public_key, agent.statement, agent.node_signature)
    assert not forged.binding_valid(node.public_key)
    other_img = type(agent)(
        42, image_hash(b"other"), agent.public_key, agent.statement, agent.node_signature
    )
    assert not other_img.binding_valid(node.public_key)
    other_key = ks.issue_agent_identity(43, img, persist=False)
    swapped = type(agent)(42, img, other_key.public_key, agent.statement, agent.node_signature)
    assert not swapped.binding_valid(node.public_key)
    assert not agent.binding_valid(Keystore(tmp_path / "other").node_identity().public_key)
    # node signature under another context does not count
    assert not pqc.verify("mldsa65", node.public_key, agent.statement, agent.node_signature, b"")
    assert pqc.verify(
        "mldsa65", node.public_key, agent.statement, agent.node_signature, CTX_BINDING
    )
    loaded = ks.load_agent_identity(42)
    assert loaded.public_key == agent.public_key and loaded.binding_valid(node.public_key)
    assert loaded.verify(b"x", loaded.sign(b"x"))
    assert _mode(tmp_path / "keys" / "agents" / "42.key") == 0o600
    ks.forget_agent(42)
    with pytest.raises(NoSuchObject):
        ks.load_agent_identity(42)
    with pytest.raises(InvalidArgument):
        ks.issue_agent_identity(-1, img)
    with pytest.raises(InvalidArgument):
        ks.issue_agent_identity(1, b"short")


def test_rotation(tmp_path: Path) -> None:
    ks = Keystore(tmp_path)
    old = ks.node_identity()
    origin = "aios.local/x/audit"
    last = sign_checkpoint(Checkpoint(origin, 10, bytes(32)), old).text()
    rot = ks.rotate_node_key(last)
    new = ks.node_identity()
    assert new.public_key != old.public_key and rot.valid()
    assert rot.old_public_key == old.public_key and rot.new_public_key == new.public_key
    assert (
        f"checkpoint {__import__('base64').b64encode(last.encode()).decode()}".encode()
        in rot.statement
    )
    bad = type(rot)(
        rot.statement + b"x",
        rot.old_public_key,
        rot.new_public_key,
        rot.old_signature,
        rot.new_signature,
    )
    assert not bad.valid()
    # persisted: a reboot loads the new key; both keys stay trusted for old checkpoints
    ks2 = Keystore(tmp_path)
    assert ks2.node_identity().public_key == new.public_key
    trusted = ks2.trusted_node_keys()
    assert [t.public_key for t in trusted] == [old.public_key, new.public_key]
    assert verify_checkpoint(last, origin, trusted).size == 10
    assert ks2.rotations()[0].valid()
    history = json.loads((tmp_path / "keys" / "node-history.json").read_text())
    assert history[0]["retired_ns"] is not None and history[1]["retired_ns"] is None
