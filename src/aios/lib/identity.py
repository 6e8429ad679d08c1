"""identityd core: the node identity, per-agent identities and the keystore.

Design
------
**Keys at rest.**  Everything lives in ``$AIOS_HOME/keys`` (mode 0700, files
0600, written atomically).  Private keys are ML-DSA *seeds* (32 bytes),
sealed with AES-256-GCM under a key-encryption key (KEK).  The KEK comes
from one of two places, chosen at first boot and recorded (without
secrets) in ``keystore.json``:

* a **passphrase**: ``KEK = scrypt(passphrase, salt, n=2**15, r=8, p=1)``;
  nothing on disk suffices to unseal the keys;
* a **key file**: when no passphrase is given, 32 random bytes are written
  to ``master.key`` (0600) and ``KEK = HKDF-SHA256(master.key, salt)``.  This
  protects against leaks of the key files alone (backups, copies of
  ``node.key``), not against someone who can read the whole directory.

The first boot says which it chose in :attr:`Keystore.notice`.  A check
value (the AEAD of a constant) in ``keystore.json`` makes a wrong
passphrase an immediate ``IntegrityError``.  Each sealed file is
``"AIOSKEY1" || nonce (12) || AES-GCM(KEK, seed)`` with the file's role
(``node``, ``agent/42``) as associated data, so swapping two sealed files
fails to open rather than silently exchanging identities.

**Node identity.**  ML-DSA-65, created at first boot.  It signs audit
checkpoints, attestation quotes, agent bindings and rotation statements;
each kind with its own FIPS 204 context string, so no signature can be
replayed as another kind.

**Agent identities.**  At spawn, :meth:`Keystore.issue_agent_identity` makes
an ML-DSA-65 key pair and a *binding*: a short text statement of agent id,
image hash, algorithm and public key, signed by the node key.  Anyone with
the node public key can check that a message signed by that agent key came
from that agent id running that image.

**Rotation.**  :meth:`Keystore.rotate_node_key` makes a new node key and a
rotation statement naming the old and new public keys and the old key's
last checkpoint; the *new* key signs it (it vouches for the history) and the
*old* key signs it (it hands over).  The old private key is destroyed, its
public key stays in ``node-history.json`` so old checkpoints still verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchObject, StorageError
from aios.lib.audit.checkpoint import TrustedKey, note_key_hash
from aios.lib.crypto import pqc
from aios.lib.paths import keys_dir, private_dir, private_file
from aios.lib.storage import storage_edge

KEYS_HINT: Final = (
    "restore $AIOS_HOME/keys from a backup; without it the node's keys cannot be opened "
    "(a new home starts a new node identity, and old checkpoints stay verifiable only with the old keys)"
)

ALG: Final = "mldsa65"
MAGIC: Final = b"AIOSKEY1"
CHECK_PLAINTEXT: Final = b"aios keystore check v1"
CTX_BINDING: Final = b"aios/agent-binding/v1"
CTX_ROTATION: Final = b"aios/key-rotation/v1"
SCRYPT_N: Final = 1 << 15


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(s), validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{what} is not valid base64") from None


def _write_private(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """The node's signing key.  ``name`` is its key name in signed notes."""

    name: str
    public_key: bytes
    _key: Any

    @property
    def key_hash(self) -> bytes:
        return note_key_hash(self.name, self.public_key)

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        return pqc.sign_with(self._key, message, context)

    def verify(self, message: bytes, signature: bytes, context: bytes = b"") -> bool:
        return pqc.verify(ALG, self.public_key, message, signature, context)

    def trusted(self) -> TrustedKey:
        return TrustedKey(self.name, self.public_key)


def binding_statement(
    agent_id: int, image_hash: bytes, public_key: bytes, node_key_hash: bytes, issued_ns: int
) -> bytes:
    return (
        "aios-agent-binding/v1\n"
        f"agent {agent_id}\n"
        f"image {image_hash.hex()}\n"
        f"alg {ALG}\n"
        f"key {_b64(public_key)}\n"
        f"node {node_key_hash.hex()}\n"
        f"issued {issued_ns}\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """An agent's key pair and the node's signed binding of it to id and image."""

    agent_id: int
    image_hash: bytes
    public_key: bytes
    statement: bytes
    node_signature: bytes
    _key: Any = None

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        if self._key is None:
            raise InvalidArgument(f"agent {self.agent_id}: only the public half is loaded")
        return pqc.sign_with(self._key, message, context)

    def verify(self, message: bytes, signature: bytes, context: bytes = b"") -> bool:
        return pqc.verify(ALG, self.public_key, message, signature, context)

    def binding_valid(self, node_public_key: bytes) -> bool:
        """Does the node key vouch for exactly this agent id, image and key?"""
        lines = self.statement.decode(errors="replace").split("\n")
        node_hash = next((ln[5:] for ln in lines if ln.startswith("node ")), "")
        issued = next((ln[7:] for ln in lines if ln.startswith("issued ")), "")
        if not issued.isdigit():
            return False
        try:
            expect = binding_statement(
                self.agent_id,
                self.image_hash,
                self.public_key,
                bytes.fromhex(node_hash),
                int(issued),
            )
        except ValueError:
            return False
        return expect == self.statement and pqc.verify(
            ALG, node_public_key, self.statement, self.node_signature, CTX_BINDING
        )


@dataclass(frozen=True, slots=True)
class RotationStatement:
    statement: bytes
    old_public_key: bytes
    new_public_key: bytes
    old_signature: bytes
    new_signature: bytes

    def valid(self) -> bool:
        return pqc.verify(
            ALG, self.new_public_key, self.statement, self.new_signature, CTX_ROTATION
        ) and pqc.verify(ALG, self.old_public_key, self.statement, self.old_signature, CTX_ROTATION)

    def to_json(self) -> dict[str, str]:
        return {
            "statement": _b64(self.statement),
            "old_public_key": _b64(self.old_public_key),
            "new_public_key": _b64(self.new_public_key),
            "old_signature": _b64(self.old_signature),
            "new_signature": _b64(self.new_signature),
        }

    @classmethod
    def from_json(cls, obj: dict[str, str]) -> RotationStatement:
        return cls(
            *(
                _unb64(obj[k], k)
                for k in (
                    "statement",
                    "old_public_key",
                    "new_public_key",
                    "old_signature",
                    "new_signature",
                )
            )
        )


class Keystore:
    """Keys under ``home/keys``; ``passphrase=None`` means key-file protection."""

    def __init__(
        self, home: Path, passphrase: bytes | None = None, scrypt_n: int = SCRYPT_N
    ) -> None:
        self.home = Path(home)
        self.dir = keys_dir(self.home)
        self.created = False
        self.notice = ""
        if passphrase is not None and (not isinstance(passphrase, bytes) or not passphrase):
            raise InvalidArgument("passphrase must be non-empty bytes")
        private_dir(self.dir)
        meta_path = self.dir / "keystore.json"
        if meta_path.exists():
            with storage_edge(meta_path, "the keystore", KEYS_HINT):
                meta = json.loads(meta_path.read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
                self._kek = self._open_existing(meta, passphrase)
        else:
            with storage_edge(meta_path, "the keystore", KEYS_HINT):
                self._kek = self._first_boot(meta_path, passphrase, scrypt_n)
        self._aead = AESGCM(self._kek)
        self._node: NodeIdentity | None = None

    # -- the KEK -------------------------------------------------------------

    def _first_boot(self, meta_path: Path, passphrase: bytes | None, scrypt_n: int) -> bytes:
        salt = os.urandom(16)
        meta: dict[str, Any] = {"version": 1, "salt": _b64(salt)}
        if passphrase is not None:
            meta.update(kdf="scrypt", n=scrypt_n, r=8, p=1)
            kek = self._scrypt(passphrase, salt, scrypt_n)
            self.notice = (
                "first boot: node keys are sealed under a key derived from your passphrase "
                f"(scrypt n={scrypt_n}, r=8, p=1); the passphrase is needed at every boot."
            )
        else:
            master = os.urandom(32)
            _write_private(self.dir / "master.key", master)
            meta.update(kdf="keyfile")
            kek = self._hkdf(master, salt)
            self.notice = (
                f"first boot: no passphrase given, so node keys are sealed under a random key file "
                f"{self.dir / 'master.key'} (mode 0600). This guards copies of the key files, not "
                "the whole directory; set a passphrase for stronger protection."
            )
        nonce = os.urandom(12)
        meta["check"] = _b64(nonce + AESGCM(kek).encrypt(nonce, CHECK_PLAINTEXT, b"check"))
        _write_private(meta_path, json.dumps(meta, indent=1).encode())
        private_file(self.dir / "node.id").write_text(os.urandom(8).hex() + "\n")
        self.created = True
        return kek

    def _open_existing(self, meta: dict[str, Any], passphrase: bytes | None) -> bytes:
        salt = _unb64(meta.get("salt", ""), "keystore salt")
        if meta.get("kdf") == "scrypt":
            if passphrase is None:
                raise InvalidArgument("this keystore is sealed with a passphrase; give it")
            kek = self._scrypt(passphrase, salt, int(meta["n"]))
        elif meta.get("kdf") == "keyfile":
            if passphrase is not None:
                raise InvalidArgument("this keystore is sealed with a key file, not a passphrase")
            try:
                kek = self._hkdf((self.dir / "master.key").read_bytes(), salt)
            except FileNotFoundError:
                raise NoSuchObject(f"key file {self.dir / 'master.key'} is missing") from None
        else:
            raise IntegrityError("keystore.json names no known KDF")
        check = _unb64(meta.get("check", ""), "keystore check")
        try:
            AESGCM(kek).decrypt(check[:12], check[12:], b"check")
        except (InvalidTag, ValueError):
            raise IntegrityError("wrong passphrase or key file for this keystore") from None
        self.notice = f"keystore opened ({meta['kdf']})"
        return kek

    @staticmethod
    def _scrypt(passphrase: bytes, salt: bytes, n: int) -> bytes:
        return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase)

    @staticmethod
    def _hkdf(master: bytes, salt: bytes) -> bytes:
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=salt, info=b"aios keystore kek v1"
        ).derive(master)

    # -- sealed files ---------------------------------------------------------

    def seal(self, role: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, secret, MAGIC + role.encode())

    def unseal(self, role: str, blob: bytes) -> bytes:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
            raise IntegrityError(f"sealed key for {role} is malformed")
        nonce = blob[len(MAGIC) : len(MAGIC) + 12]
        try:
            return self._aead.decrypt(nonce, blob[len(MAGIC) + 12 :], MAGIC + role.encode())
        except InvalidTag:
            raise IntegrityError(
                f"sealed key for {role} failed to open (tampered or swapped)"
            ) from None

    # -- node identity --------------------------------------------------------

    @property
    def node_id(self) -> str:
        with storage_edge(self.dir / "node.id", "the node id file", KEYS_HINT):
            return (self.dir / "node.id").read_text().strip()

    @property
    def node_name(self) -> str:
        return f"aios-node-{self.node_id}"

    def node_identity(self) -> NodeIdentity:
        """Load the node key, creating it on first use."""
        if self._node is None:
            path = self.dir / "node.key"
            with storage_edge(path, "the node key", KEYS_HINT):
                if path.exists():
                    seed = self.unseal("node", path.read_bytes())
                else:
                    _pub, seed = pqc.sig_keygen(ALG)
                    self._store_node(seed)
                self._node = self._node_from_seed(seed)
        return self._node

    def _node_from_seed(self, seed: bytes) -> NodeIdentity:
        key = pqc.sig_private_key(ALG, seed)
        return NodeIdentity(self.node_name, key.public_key().public_bytes_raw(), key)

    def _store_node(self, seed: bytes) -> None:
        node = self._node_from_seed(seed)
        _write_private(self.dir / "node.key", self.seal("node", seed))
        _write_private(self.dir / "node.pub", node.public_key)
        history = self.node_history()
        if not any(h["public_key"] == _b64(node.public_key) for h in history):
            history.append(
                {
                    "public_key": _b64(node.public_key),
                    "created_ns": time.time_ns(),
                    "retired_ns": None,
                }
            )
            _write_private(self.dir / "node-history.json", json.dumps(history, indent=1).encode())

    def node_history(self) -> list[dict[str, Any]]:
        path = self.dir / "node-history.json"
        if not path.exists():
            return []
        with storage_edge(path, "the node key history", KEYS_HINT):
            out: list[dict[str, Any]] = json.loads(path.read_text())
        return out

    def trusted_node_keys(self) -> list[TrustedKey]:
        """Every node public key ever used (current and retired)."""
        return [
            TrustedKey(self.node_name, _unb64(h["public_key"], "history key"))
            for h in self.node_history()
        ]

    def rotate_node_key(self, last_checkpoint: str | None = None) -> RotationStatement:
        """Replace the node key; both keys sign a statement naming the old key's
        last checkpoint.  The old private key is destroyed."""
        old = self.node_identity()
        _pub, seed = pqc.sig_keygen(ALG)
        new = self._node_from_seed(seed)
        cp = "-" if last_checkpoint is None else _b64(last_checkpoint.encode())
        statement = (
            "aios-key-rotation/v1\n"
            f"name {self.node_name}\n"
            f"old {_b64(old.public_key)}\n"
            f"new {_b64(new.public_key)}\n"
            f"checkpoint {cp}\n"
            f"time {time.time_ns()}\n"
        ).encode()
        rot = RotationStatement(
            statement,
            old.public_key,
            new.public_key,
            old.sign(statement, CTX_ROTATION),
            new.sign(statement, CTX_ROTATION),
        )
        rot_dir = self.dir / "rotations"
        rot_dir.mkdir(mode=0o700, exist_ok=True)
        n = len(list(rot_dir.glob("*.json")))
        _write_private(rot_dir / f"{n:06d}.json", json.dumps(rot.to_json(), indent=1).encode())
        history = self.node_history()
        for h in history:
            if h["public_key"] == _b64(old.public_key):
                h["retired_ns"] = time.time_ns()
        _write_private(self.dir / "node-history.json", json.dumps(history, indent=1).encode())
        self._store_node(seed)
        self._node = new
        return rot

    def rotations(self) -> list[RotationStatement]:
        rot_dir = self.dir / "rotations"
        return [
            RotationStatement.from_json(json.loads(p.read_text()))
            for p in sorted(rot_dir.glob("*.json"))
        ]

    # -- agent identities -------------------------------------------------------

    def issue_agent_identity(
        self, agent_id: int, image_hash: bytes, persist: bool = True
    ) -> AgentIdentity:
        """Create an agent's key pair and its node-signed binding to ``agent_id`` and ``image_hash``."""
        if isinstance(agent_id, bool) or not isinstance(agent_id, int) or agent_id < 0:
            raise InvalidArgument("agent id must be a non-negative int")
        if not isinstance(image_hash, bytes) or len(image_hash) != 32:
            raise InvalidArgument("image hash must be 32 bytes (SHA-256)")
        node = self.node_identity()
        pub, seed = pqc.sig_keygen(ALG)
        statement = binding_statement(agent_id, image_hash, pub, node.key_hash, time.time_ns())
        ident = AgentIdentity(
            agent_id,
            image_hash,
            pub,
            statement,
            node.sign(statement, CTX_BINDING),
            pqc.sig_private_key(ALG, seed),
        )
        if persist:
            adir = self.dir / "agents"
            adir.mkdir(mode=0o700, exist_ok=True)
            _write_private(
                adir / f"{agent_id}.key", self.seal(f"agent/{agent_id}", seed), sync=False
            )
            record = {"statement": _b64(statement), "signature": _b64(ident.node_signature)}
            _write_private(adir / f"{agent_id}.binding", json.dumps(record).encode(), sync=False)
        return ident

    def load_agent_identity(self, agent_id: int) -> AgentIdentity:
        adir = self.dir / "agents"
        try:
            record = json.loads((adir / f"{agent_id}.binding").read_text())
            blob = (adir / f"{agent_id}.key").read_bytes()
        except FileNotFoundError:
            raise NoSuchObject(f"no identity for agent {agent_id}") from None
        seed = self.unseal(f"agent/{agent_id}", blob)
        key = pqc.sig_private_key(ALG, seed)
        statement = _unb64(record["statement"], "binding")
        fields = dict(ln.split(" ", 1) for ln in statement.decode().splitlines()[1:])
        return AgentIdentity(
            agent_id,
            bytes.fromhex(fields["image"]),
            key.public_key().public_bytes_raw(),
            statement,
            _unb64(record["signature"], "binding signature"),
            key,
        )

    def forget_agent(self, agent_id: int) -> None:
        """Delete an agent's private key (at reap); its binding stays for attribution."""
        try:
            (self.dir / "agents" / f"{agent_id}.key").unlink()
        except FileNotFoundError:
            pass


def image_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def read_node_public(home: Path) -> tuple[str, list[TrustedKey]]:
    """The node's key name and every public key it has used, from the public
    files only (no passphrase needed): what ``aios audit verify`` trusts."""
    d = keys_dir(home)
    try:
        with storage_edge(d / "node-history.json", "the node key history", KEYS_HINT):
            name = f"aios-node-{(d / 'node.id').read_text().strip()}"
            history = json.loads((d / "node-history.json").read_text())
            return name, [TrustedKey(name, _unb64(h["public_key"], "history key")) for h in history]
    except StorageError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise NoSuchObject(f"no node identity under {d} (has the kernel booted?)") from None
        raise
