"""A node identity with a fresh ML-DSA-65 key, for tests that sign and verify."""

from __future__ import annotations

from aios.lib.crypto import pqc
from aios.lib.identity import NodeIdentity


def make_node(name: str = "aios-node-test") -> NodeIdentity:
    """A new node named ``name`` with its own signing key (never the same twice)."""
    _pk, seed = pqc.sig_keygen("mldsa65")
    key = pqc.sig_private_key("mldsa65", seed)
    return NodeIdentity(name, key.public_key().public_bytes_raw(), key)
