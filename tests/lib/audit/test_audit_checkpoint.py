"""aios.lib.audit.checkpoint: C2SP text format, signatures, policy."""

from __future__ import annotations

import base64

import pytest
from nodes import make_node

from aios.abi.errors import IntegrityError, InvalidArgument
from aios.lib.audit.checkpoint import (
    Checkpoint,
    CheckpointPolicy,
    TrustedKey,
    note_key_hash,
    parse,
    sign_checkpoint,
    verify_checkpoint,
)

ORIGIN = "aios.local/n1/audit"


def test_text_layout() -> None:
    node = make_node("aios-node-n1")
    cp = Checkpoint(ORIGIN, 42, bytes(range(32)))
    text = sign_checkpoint(cp, node).text()
    lines = text.split("\n")
    assert lines[:4] == [ORIGIN, "42", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("\u2014 aios-node-n1 ") and lines[5] == ""
    blob = base64.b64decode(lines[4].split(" ")[2])
    assert blob[:4] == note_key_hash("aios-node-n1", node.public_key) and len(blob) == 4 + 3309
    assert parse(text).checkpoint == cp
    assert verify_checkpoint(text, ORIGIN, [TrustedKey(node.name, node.public_key)]) == cp


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("\n42\n", "\n43\n"),
        lambda t: t.replace("\n42\n", "\n042\n"),
        lambda t: t.replace(ORIGIN, "aios.local/n2/audit"),
        lambda t: t.replace("\n\n", "\n"),
        lambda t: t[:-1],
        lambda t: t.replace("\u2014", "-"),
        lambda t: t[:-10] + "AAAAAAAAA\n",
        lambda t: t.split("\n", 3)[0] + "\n42\nnot base64!\n\n" + t.split("\n\n", 1)[1],
    ],
)
def test_mutations_rejected(mutate: object) -> None:
    node = make_node("aios-node-n1")
    text = sign_checkpoint(Checkpoint(ORIGIN, 42, bytes(32)), node).text()
    with pytest.raises(IntegrityError):
        verify_checkpoint(mutate(text), ORIGIN, [TrustedKey(node.name, node.public_key)])  # type: ignore[operator]


def test_rotated_keys_both_accepted_when_trusted() -> None:
    old, new = make_node("n"), make_node("n")
    t1 = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), old).text()
    t2 = sign_checkpoint(Checkpoint(ORIGIN, 2, bytes(32)), new).text()
    keys = [TrustedKey("n", old.public_key), TrustedKey("n", new.public_key)]
    prev = verify_checkpoint(t1, ORIGIN, keys)
    assert verify_checkpoint(t2, ORIGIN, keys, previous=prev).size == 2
    with pytest.raises(IntegrityError):
        verify_checkpoint(t2, ORIGIN, keys[:1])


def test_policy_n_or_t() -> None:
    p = CheckpointPolicy(every_n=10, every_ms=5)
    assert not p.due(0, 10**12)
    assert not p.due(9, 4_999_999)
    assert p.due(10, 0)
    assert p.due(1, 5_000_000)
    p.mark(10, 5_000_000)
    assert not p.due(10, 10**12) and not p.due(19, 9_999_999) and p.due(20, 5_000_000)
    with pytest.raises(InvalidArgument):
        CheckpointPolicy(every_n=0)
