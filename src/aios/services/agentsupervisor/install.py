"""Installing a verified image where the kernel loads it from.

Verification and loading must see the same bytes.  So the kernel reads the
image once, writes it into ``$AIOS_HOME/images/<digest>/`` (a directory only
the kernel's user can write, and that the agents' uids can only read), and
verifies *that* copy: signature, content
hash, the publisher's trust and what the publisher may grant.  Executors then
load code only from the verified copy, so changing the original after the
check changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from aios.errors import InvalidArgument
from aios.services.agentsupervisor.image import VerifiedImage, read_tree, verify


def install_verified(image: str | os.PathLike[str], home: Path) -> tuple[VerifiedImage, Path]:
    files = read_tree(image)
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    dest = home / "images" / h.hexdigest()[:32]
    if not dest.exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for name, data in files.items():
            p = (tmp / name).resolve()
            if not str(p).startswith(str(tmp.resolve())):
                raise InvalidArgument(f"image path {name!r} escapes the image")
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            p.write_bytes(data)
            p.chmod(0o444)  # readable by the agents' own uids, writable by nobody
        for d in [tmp, *(x for x in tmp.rglob("*") if x.is_dir())]:
            d.chmod(0o755)
        dest.parent.chmod(0o711)
        os.replace(tmp, dest)
    verified = verify(dest, home / "trust")
    return verified, dest
