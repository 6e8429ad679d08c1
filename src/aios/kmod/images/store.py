"""The verified image store: installing images, and finding them again.

``$AIOS_HOME/images/<digest>/`` holds every image the kernel has verified,
named by its content digest (directories 0755 and files 0444: the agents'
own uids read them, nobody writes them).  Executors load code only from
there, so changing an original after the check changes nothing.

Installing reads a path, so it is the operator's (the CLI, the host, and
agents whose own code already has the kernel's file authority: see
:func:`aios.kernel.confinement.may_name_paths`).  In order:

1. read the image into memory (:func:`~.image.read_tree`: no symlinks,
   devices or escaping names, at most 256 MiB);
2. verify *those bytes*: signature, content digest, the publisher's trust and
   what the publisher may grant.  Nothing has been written yet, so a refused
   image leaves nothing on disk;
3. write a temporary directory inside the store and rename it to the digest
   (atomic); on any failure the temporary is removed.

Finding is for everyone: ``sha256:<digest>`` (or a unique prefix of at least
12 hex digits) or ``name:<name>[@<version>]`` names an image already in the
store, and the stored copy is verified again against *today's* trust store,
so trusting or untrusting a publisher takes effect on the running kernel at
its next spawn.  Errors name store entries only, never a host path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.abi.errors import AIOSError, IntegrityError, InvalidArgument, NoSuchObject
from aios.kernel.registry import IMAGES
from aios.kmod.images.signed import (
    MANIFEST,
    Manifest,
    VerifiedImage,
    read_tree,
    verify_files,
)
from aios.lib.paths import images_dir, trust_dir

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

_DIGEST = re.compile(r"^[0-9a-f]{12,64}$")


def install_verified(image: str | os.PathLike[str], home: Path) -> tuple[VerifiedImage, Path]:
    """Read, verify, then install ``image`` (a path): returns the verified record and its directory."""
    files = read_tree(image)
    verified = verify_files(files, trust_dir(home), str(image))  # before anything is written
    store = images_dir(home)
    dest = store / verified.digest
    if dest.is_dir():
        try:
            again = verify_files(read_tree(dest), trust_dir(home), f"sha256:{verified.digest}")
        except AIOSError:
            again = None  # a stale copy (e.g. signed by a publisher no longer trusted): replace it
        if again is not None:
            return again, dest
    store.mkdir(parents=True, exist_ok=True)
    store.chmod(0o711)  # agents traverse to their image, cannot list the store
    tmp = store / f".{verified.digest[:16]}.{secrets.token_hex(6)}.tmp"
    try:
        tmp.mkdir(mode=0o700)
        for name, data in files.items():
            p = (tmp / name).resolve()
            if not p.is_relative_to(tmp.resolve()):
                raise IntegrityError(f"image path {name!r} escapes the image")
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            p.write_bytes(data)
            p.chmod(0o444)  # readable by the agents' own uids, writable by nobody
        for d in [tmp, *(x for x in tmp.rglob("*") if x.is_dir())]:
            d.chmod(0o755)
        if dest.exists():
            old = store / f".{verified.digest[:16]}.{secrets.token_hex(6)}.old"
            os.replace(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return verified, dest


def is_store_ref(ref: str) -> bool:
    return ref.startswith(("sha256:", "name:"))


def resolve_stored(ref: str, home: Path) -> tuple[VerifiedImage, Path] | None:
    """The stored image ``ref`` names, verified again; None if ``ref`` is not a store reference."""
    if not is_store_ref(ref):
        return None
    store = images_dir(home)
    if ref.startswith("sha256:"):
        want = ref[len("sha256:"):]
        if not _DIGEST.match(want):
            raise InvalidArgument("an image digest is 12 to 64 lowercase hex digits")
        hits = [d for d in _entries(store) if d.name.startswith(want)]
        label = ref
    else:
        name, _, version = ref[len("name:"):].partition("@")
        if not name:
            raise InvalidArgument("name: needs an image name (name:<name>[@<version>])")
        hits = []
        for d in _entries(store):
            m = _manifest(d)
            if m is not None and m.name == name and (not version or m.version == version):
                hits.append(d)
        if len(hits) > 1 and not version:
            versions = sorted({m.version for m in (_manifest(d) for d in hits) if m is not None})
            raise InvalidArgument(f"image {name!r} has versions {versions}: name one as name:{name}@<version>")
        label = ref
    if not hits:
        raise NoSuchObject(f"no verified image {label} in the store")
    if len(hits) > 1:
        raise InvalidArgument(f"{label} is ambiguous ({len(hits)} images)")
    d = hits[0]
    return verify_files(read_tree(d), trust_dir(home), label), d


def _entries(store: Path) -> list[Path]:
    try:
        return sorted(d for d in store.iterdir() if d.is_dir() and not d.name.startswith("."))
    except FileNotFoundError:
        return []


def _manifest(d: Path) -> Manifest | None:
    with contextlib.suppress(OSError, UnicodeDecodeError, AIOSError):
        return Manifest.parse((d / MANIFEST).read_text())
    return None


class ImageStore:
    """The kernel's view of the verified store (``k.ext[IMAGES]``): what ``AGENT_SPAWN``
    of ``image:<ref>`` calls.  A path is verified and installed first."""

    def is_store_ref(self, ref: str) -> bool:
        return is_store_ref(ref)

    def resolve(self, ref: str, home: Path) -> tuple[VerifiedImage, Path]:
        stored = resolve_stored(ref, home)
        return stored if stored is not None else install_verified(ref, home)


def install(k: Kernel, cfg: Any = None) -> ImageStore:
    """The signed-images kernel module."""
    store = ImageStore()
    k.ext[IMAGES] = store
    return store
