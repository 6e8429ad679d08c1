"""Signed agent archives (``aios agent export|import``): ML-DSA-65 over everything."""

from __future__ import annotations

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchAgent
from aios.kmod.journal import archive
from aios.kmod.journal import records as R
from aios.kmod.journal.replay import KernelImage
from aios.lib.crypto import pqc
from aios.lib.identity import NodeIdentity


def _node(name: str) -> NodeIdentity:
    pub, seed = pqc.sig_keygen("mldsa65")
    return NodeIdentity(name, pub, pqc.sig_private_key("mldsa65", seed))


@pytest.fixture(scope="module")
def node() -> NodeIdentity:
    return _node("aios-node-a")


def _image() -> KernelImage:
    img = KernelImage()
    for r in (
        R.AgentSpawned(5, 1, "planner", "agents.planner:main", "isolated",
                       {"rights": ["ACCESS_NET"]}, {"plan": [1, 2]}, "", 0),
        R.ObjectCreated(10, R.OBJ_AGENT, 5), R.CapInstalled(1, 5, 0, 10, 1, 0, 0),
        R.ObjectCreated(11, R.OBJ_ENDPOINT, 5), R.CapInstalled(2, 5, 1, 11, 7, 0, 0),
        R.ObjectCreated(12, R.OBJ_MEMNS, "planner/notes"), R.CapInstalled(3, 5, 6, 12, 7, 0, 0),
        R.ObjectCreated(13, R.OBJ_MEMNS, "team/shared"), R.CapInstalled(4, 1, 0, 13, 7, 0, 0),
        R.CapInstalled(5, 5, 7, 13, 1, 0, 4),
        R.NameRegistered("planner", 2),
    ):  # fmt: skip
        img.apply(r)
    return img


def test_export_import_roundtrip(node: NodeIdentity) -> None:
    arc = archive.from_image(_image(), 5, checkpoint=(4, {"plan": [3]}), image_bytes=b"tar")
    blob = archive.pack(arc, node)
    back = archive.unpack(blob, [node.trusted()])
    assert back == arc and back.signer == node.name
    assert back.state == {"plan": [3]} and back.checkpoint == 4 and back.image == b"tar"
    assert back.namespaces == (("planner/notes", 7),)  # owned: the root capability
    refs = {c.slot: c.ref for c in back.claims}
    assert refs[1] == "planner" and refs[6] == "planner/notes" and refs[7] == "team/shared"
    assert back.entry == "agents.planner:main" and back.executor == "isolated"


def test_every_flipped_byte_is_refused(node: NodeIdentity) -> None:
    blob = archive.pack(archive.from_image(_image(), 5), node)
    trusted = [node.trusted()]
    for i in range(len(archive.MAGIC), len(blob), max(1, len(blob) // 97)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises((IntegrityError, InvalidArgument)):
            archive.unpack(bytes(bad), trusted)


def test_untrusted_signer_truncation_and_garbage(node: NodeIdentity) -> None:
    blob = archive.pack(archive.from_image(_image(), 5), node)
    other = _node("aios-node-a")  # same name, another key: still refused
    with pytest.raises(IntegrityError, match="does not verify"):
        archive.unpack(blob, [other.trusted()])
    with pytest.raises(IntegrityError, match="not trusted"):
        archive.unpack(blob, [_node("aios-node-b").trusted()])
    for cut in (10, 20, len(blob) - 1):
        with pytest.raises(IntegrityError):
            archive.unpack(blob[:cut], [node.trusted()])
    with pytest.raises(IntegrityError):
        archive.unpack(blob + b"x", [node.trusted()])
    with pytest.raises(InvalidArgument):
        archive.unpack(b"PK\x03\x04 a zip file", [node.trusted()])


def test_a_signature_made_for_something_else_does_not_pass(node: NodeIdentity) -> None:
    blob = archive.pack(archive.from_image(_image(), 5), node)
    signed = blob[: -archive.SIG_LEN]
    forged = signed + node.sign(signed, b"aios/agent-binding/v1")  # right key, wrong context
    with pytest.raises(IntegrityError, match="does not verify"):
        archive.unpack(forged, [node.trusted()])


def test_unknown_agent() -> None:
    with pytest.raises(NoSuchAgent):
        archive.from_image(_image(), 99)
