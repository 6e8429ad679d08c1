"""Signed agent images: build, sign, verify, inspect.

An image is a directory, or a ``.tar`` of one, holding an ``agent.toml``
manifest and the agent's files.  Its identity is a *content digest*:

    canonical listing = for each regular file except ``agent.sig``, sorted by
                        path:  "<sha256 hex>  <size>  <path>\\n"
    digest            = SHA-256(b"aios-image-v1\\n" + listing)

so any flipped byte, added, removed or renamed file changes it; symlinks,
devices, absolute paths and ``..`` are refused outright (an image cannot
point outside itself).  The publisher signs the digest with ML-DSA-65 (FIPS
204) under the context string ``aios/image/v1``; the signature, the
publisher's name and the fingerprint of their key go in ``agent.sig``.

Verification (before the supervisor loads anything) checks, in order:
a signature is present; the digest recomputed from the files equals the
signed one (IntegrityError otherwise, naming what differs); the publisher
is in the trust store and the key fingerprint matches theirs
(PermissionDenied: unknown / wrong key); the ML-DSA signature verifies
(IntegrityError); and the manifest asks for no more than the publisher may
grant - capabilities, executor kinds, resources (PermissionDenied, listing
the excess).

Trust store: a directory of ``<publisher>.toml`` files::

    name = "acme"
    public_key = "<base64 of the raw ML-DSA-65 public key>"
    capabilities = ["ACCESS_NET"]            # what its agents may be granted
    executors = ["isolated", "wasm"]
    max_memory_bytes = 268435456
    max_cpu_seconds = 60
    max_processes = 16

Publisher keys are 32-byte ML-DSA seeds in ``<name>.key`` (mode 0600) with
the public key beside them in ``<name>.pub``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchObject, PermissionDenied

MANIFEST = "agent.toml"
SIGNATURE = "agent.sig"
DOMAIN = b"aios-image-v1\n"
CONTEXT = b"aios/image/v1"
ALGORITHM = "ML-DSA-65"
EXECUTORS = ("inproc", "worker", "isolated", "wasm")
MAX_IMAGE_BYTES = 256 << 20
MAX_FILES = 10_000


@dataclass(frozen=True, slots=True)
class Resources:
    memory_bytes: int = 256 << 20
    cpu_seconds: int = 0
    processes: int = 16
    cpu_weight: int = 1024


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    entry: str
    executor: str
    capabilities: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @classmethod
    def parse(cls, text: str) -> Manifest:
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"agent.toml is not valid TOML: {exc}") from None
        missing = [
            k
            for k in ("name", "version", "entry", "executor")
            if not isinstance(d.get(k), str) or not d[k]
        ]
        if missing:
            raise InvalidArgument(
                f"agent.toml lacks required string field(s): {', '.join(missing)}"
            )
        if d["executor"] not in EXECUTORS:
            raise InvalidArgument(
                f"executor {d['executor']!r} is not one of {', '.join(EXECUTORS)}"
            )
        caps = d.get("capabilities", [])
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise InvalidArgument("capabilities must be a list of strings")
        res = d.get("resources", {})
        if not isinstance(res, dict):
            raise InvalidArgument("[resources] must be a table")
        known = {f for f in Resources.__dataclass_fields__}
        unknown = set(res) - known
        if unknown:
            raise InvalidArgument(f"unknown resource(s): {', '.join(sorted(unknown))}")
        if not all(isinstance(v, int) and v >= 0 for v in res.values()):
            raise InvalidArgument("resources must be non-negative integers")
        return cls(
            d["name"],
            d["version"],
            d["entry"],
            d["executor"],
            tuple(sorted(set(caps))),
            Resources(**res),
        )


@dataclass(frozen=True, slots=True)
class Signature:
    publisher: str
    key_fingerprint: str
    digest: str
    signature: bytes
    algorithm: str = ALGORITHM

    def to_toml(self) -> str:
        return (
            f'algorithm = "{self.algorithm}"\npublisher = "{self.publisher}"\n'
            f'key_fingerprint = "{self.key_fingerprint}"\ndigest = "{self.digest}"\n'
            f'signature = "{base64.b64encode(self.signature).decode()}"\n'
        )

    @classmethod
    def parse(cls, text: str) -> Signature:
        try:
            d = tomllib.loads(text)
            return cls(
                str(d["publisher"]), str(d["key_fingerprint"]), str(d["digest"]),
                base64.b64decode(d["signature"], validate=True), str(d.get("algorithm", ALGORITHM)),
            )  # fmt: skip
        except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
            raise IntegrityError(f"agent.sig is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class Publisher:
    name: str
    public_key: bytes
    capabilities: frozenset[str]
    executors: frozenset[str]
    max_memory_bytes: int
    max_cpu_seconds: int
    max_processes: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True, slots=True)
class VerifiedImage:
    manifest: Manifest
    digest: str
    publisher: str
    files: tuple[str, ...]


def fingerprint(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:32]


# -- reading images -------------------------------------------------------------------


def _check_rel(path: str) -> None:
    parts = Path(path).parts
    if not path or os.path.isabs(path) or ".." in parts or "\\" in path:
        raise IntegrityError(f"image path {path!r} escapes the image")


def read_tree(image: str | os.PathLike[str]) -> dict[str, bytes]:
    """All files of an image (directory or tar) by relative path."""
    p = Path(image)
    files: dict[str, bytes] = {}
    total = 0
    if p.is_dir():
        for root, dirs, names in os.walk(p, followlinks=False):
            for d in dirs:
                if os.path.islink(os.path.join(root, d)):
                    raise IntegrityError(
                        f"image contains a symlink: {os.path.relpath(os.path.join(root, d), p)}"
                    )
            for n in names:
                full = os.path.join(root, n)
                rel = os.path.relpath(full, p).replace(os.sep, "/")
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    raise IntegrityError(f"image contains a non-regular file: {rel}")
                total += st.st_size
                if total > MAX_IMAGE_BYTES or len(files) >= MAX_FILES:
                    raise InvalidArgument("image too large")
                files[rel] = Path(full).read_bytes()
    elif p.is_file():
        try:
            with tarfile.open(p, "r:*") as tar:
                for m in tar.getmembers():
                    if m.isdir():
                        continue
                    if not m.isfile():
                        raise IntegrityError(f"image archive contains a link or device: {m.name}")
                    name = m.name[2:] if m.name.startswith("./") else m.name
                    _check_rel(name)
                    total += m.size
                    if total > MAX_IMAGE_BYTES or len(files) >= MAX_FILES:
                        raise InvalidArgument("image too large")
                    f = tar.extractfile(m)
                    assert f is not None
                    if name in files:
                        raise IntegrityError(f"image archive lists {name} twice")
                    files[name] = f.read()
        except tarfile.TarError as exc:
            raise IntegrityError(f"image archive unreadable: {exc}") from None
    else:
        raise NoSuchObject(f"no image at {p}")
    for name in files:
        _check_rel(name)
    return files


def listing(files: dict[str, bytes]) -> str:
    return "".join(
        f"{hashlib.sha256(files[n]).hexdigest()}  {len(files[n])}  {n}\n"
        for n in sorted(files)
        if n != SIGNATURE
    )


def digest_of(files: dict[str, bytes]) -> str:
    return hashlib.sha256(DOMAIN + listing(files).encode()).hexdigest()


def manifest_of(files: dict[str, bytes]) -> Manifest:
    if MANIFEST not in files:
        raise InvalidArgument("image has no agent.toml")
    try:
        text = files[MANIFEST].decode()
    except UnicodeDecodeError:
        raise InvalidArgument("agent.toml is not UTF-8") from None
    return Manifest.parse(text)


# -- keys ------------------------------------------------------------------------------


def create_key(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Make a publisher key pair: ``name.key`` (seed, 0600) and ``name.pub``."""
    from cryptography.hazmat.primitives.asymmetric import mldsa

    if not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgument(f"publisher name {name!r} must be alphanumeric (with - or _)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, pub_path = d / f"{name}.key", d / f"{name}.pub"
    if key_path.exists():
        from aios.abi.errors import AlreadyExists

        raise AlreadyExists(f"publisher key {key_path} already exists")
    sk = mldsa.MLDSA65PrivateKey.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(sk.private_bytes_raw())
    os.chmod(key_path, 0o600)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys/ holds 0600 files only
    with os.fdopen(fd, "wb") as f:
        f.write(sk.public_key().public_bytes_raw())
    return key_path, pub_path


def load_private_key(path: str | os.PathLike[str]) -> Any:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    seed = Path(path).read_bytes()
    if len(seed) != 32:
        raise InvalidArgument(f"{path} is not an ML-DSA-65 seed (32 bytes)")
    return mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)


def trust_entry(
    name: str,
    public_key: bytes,
    *,
    capabilities: list[str],
    executors: list[str],
    max_memory_bytes: int = 1 << 30,
    max_cpu_seconds: int = 3600,
    max_processes: int = 64,
) -> str:
    """The text of a trust-store file for one publisher."""
    caps = ", ".join(f'"{c}"' for c in capabilities)
    exes = ", ".join(f'"{e}"' for e in executors)
    return (
        f'name = "{name}"\npublic_key = "{base64.b64encode(public_key).decode()}"\n'
        f"capabilities = [{caps}]\nexecutors = [{exes}]\n"
        f"max_memory_bytes = {max_memory_bytes}\nmax_cpu_seconds = {max_cpu_seconds}\nmax_processes = {max_processes}\n"
    )


def load_trust(directory: str | os.PathLike[str]) -> dict[str, Publisher]:
    out: dict[str, Publisher] = {}
    d = Path(directory)
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.toml")):
        try:
            t = tomllib.loads(f.read_text())
            pub = Publisher(
                str(t["name"]), base64.b64decode(t["public_key"], validate=True),
                frozenset(t.get("capabilities", [])), frozenset(t.get("executors", list(EXECUTORS))),
                int(t.get("max_memory_bytes", 1 << 30)), int(t.get("max_cpu_seconds", 3600)),
                int(t.get("max_processes", 64)),
            )  # fmt: skip
        except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as exc:
            raise InvalidArgument(f"trust store entry {f.name} is malformed: {exc}") from None
        out[pub.name] = pub
    return out


# -- build / sign / verify ---------------------------------------------------------------


def build(
    directory: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> tuple[Manifest, str]:
    """Validate an image directory; optionally write a deterministic tar. Returns (manifest, digest)."""
    files = read_tree(directory)
    manifest = manifest_of(files)
    files.pop(SIGNATURE, None)
    if out is not None:
        write_tar(files, out)
    return manifest, digest_of(files)


def write_tar(files: dict[str, bytes], out: str | os.PathLike[str]) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))


def sign(
    image: str | os.PathLike[str], key_path: str | os.PathLike[str], publisher: str
) -> Signature:
    """Sign an image in place (directory: writes agent.sig; tar: rewrites the archive)."""
    files = read_tree(image)
    manifest_of(files)  # refuse to sign something that is not an image
    files.pop(SIGNATURE, None)
    sk = load_private_key(key_path)
    digest = digest_of(files)
    sig = Signature(
        publisher,
        fingerprint(sk.public_key().public_bytes_raw()),
        digest,
        sk.sign(bytes.fromhex(digest), CONTEXT),
    )
    p = Path(image)
    if p.is_dir():
        (p / SIGNATURE).write_text(sig.to_toml())
    else:
        files[SIGNATURE] = sig.to_toml().encode()
        write_tar(files, p)
    return sig


def inspect_image(image: str | os.PathLike[str]) -> tuple[Manifest, str, Signature | None]:
    files = read_tree(image)
    sig = Signature.parse(files[SIGNATURE].decode()) if SIGNATURE in files else None
    return manifest_of(files), digest_of(files), sig


def check_grant(manifest: Manifest, pub: Publisher) -> None:
    """PermissionDenied if the manifest asks for more than the publisher may grant."""
    excess: list[str] = []
    extra_caps = set(manifest.capabilities) - pub.capabilities
    if extra_caps:
        excess.append(f"capabilities {sorted(extra_caps)}")
    if manifest.executor not in pub.executors:
        excess.append(f"executor {manifest.executor!r}")
    r = manifest.resources
    if r.memory_bytes > pub.max_memory_bytes:
        excess.append(f"memory_bytes {r.memory_bytes} > {pub.max_memory_bytes}")
    if r.cpu_seconds > pub.max_cpu_seconds:
        excess.append(f"cpu_seconds {r.cpu_seconds} > {pub.max_cpu_seconds}")
    if r.processes > pub.max_processes:
        excess.append(f"processes {r.processes} > {pub.max_processes}")
    if excess:
        raise PermissionDenied(
            f"image {manifest.name} asks for more than publisher {pub.name} may grant: "
            + "; ".join(excess)
        )


def verify(image: str | os.PathLike[str], trust_dir: str | os.PathLike[str]) -> VerifiedImage:
    """Verify signature, content hash, publisher trust and grants; return what may be loaded."""
    return verify_files(read_tree(image), trust_dir, str(image))


def verify_files(
    files: dict[str, bytes], trust_dir: str | os.PathLike[str], label: str = "image"
) -> VerifiedImage:
    """:func:`verify` on files already read (so what is verified is what gets installed)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import mldsa

    if SIGNATURE not in files:
        raise IntegrityError(f"{label} is not signed (no {SIGNATURE})")
    sig = Signature.parse(files[SIGNATURE].decode(errors="replace"))
    if sig.algorithm != ALGORITHM:
        raise IntegrityError(f"signature algorithm {sig.algorithm} is not {ALGORITHM}")
    manifest = manifest_of(files)
    digest = digest_of(files)
    if digest != sig.digest:
        raise IntegrityError(
            f"content hash mismatch: files hash to {digest[:16]}…, signature covers {sig.digest[:16]}… (image was modified after signing)"
        )
    trust = load_trust(trust_dir)
    pub = trust.get(sig.publisher)
    if pub is None:
        raise PermissionDenied(f"publisher {sig.publisher!r} is not in the trust store")
    if pub.fingerprint != sig.key_fingerprint:
        raise PermissionDenied(
            f"image was signed with key {sig.key_fingerprint[:16]}…, not publisher {pub.name}'s trusted key {pub.fingerprint[:16]}…"
        )
    try:
        mldsa.MLDSA65PublicKey.from_public_bytes(pub.public_key).verify(
            sig.signature, bytes.fromhex(sig.digest), CONTEXT
        )
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            f"ML-DSA-65 signature of image {manifest.name} does not verify"
        ) from None
    check_grant(manifest, pub)
    return VerifiedImage(
        manifest, digest, pub.name, tuple(sorted(n for n in files if n != SIGNATURE))
    )


def to_spec(
    verified: VerifiedImage, image_dir: str | os.PathLike[str], agent_id: int, home: str = ""
) -> Any:
    """The executor launch spec for a verified image unpacked at ``image_dir``.

    For ``wasm`` the entry is a module path inside the image; otherwise it is
    ``module:function`` importable from the image directory (added to the
    agent's read-only code paths).  Capabilities ACCESS_NET / ACCESS_FS /
    ACCESS_FS_WRITE map to the sandbox switches.
    """
    from aios.abi.faults import ProcessQuota as Quota
    from aios.sandbox.process import AgentSpec

    m = verified.manifest
    root = str(Path(image_dir).resolve())
    r = m.resources
    quota = Quota(
        memory_bytes=r.memory_bytes,
        processes=r.processes,
        cpu_seconds=r.cpu_seconds,
        cpu_weight=r.cpu_weight,
    )
    caps = set(m.capabilities)
    entry = m.entry
    if m.executor == "wasm":
        entry = str((Path(root) / m.entry).resolve())
        if not entry.startswith(root + os.sep):
            raise IntegrityError(f"wasm entry {m.entry!r} is outside the image")
    return AgentSpec(
        agent_id,
        entry,
        home=home,
        code_paths=(root,),
        quota=quota,
        access_net="ACCESS_NET" in caps,
        access_fs="ACCESS_FS" in caps or "ACCESS_FS_WRITE" in caps,
        access_fs_write="ACCESS_FS_WRITE" in caps,
    )
