"""Signed agent images for tests: a trusted publisher and a small image signed by it."""

from __future__ import annotations

from pathlib import Path

from aios.kmod.images import signed as img
from aios.lib.paths import private_dir, trust_dir

GREETER_MANIFEST = 'name = "greeter"\nversion = "1.0"\nentry = "greeter_agent:main"\nexecutor = "isolated"\n'


def traversable(p: Path) -> None:
    """Agents run under their own uids: they must reach the kernel's image store below ``p``."""
    for d in [p, *p.parents]:
        if d == Path(p.anchor) or str(d) == "/tmp":
            break
        d.chmod(d.stat().st_mode | 0o011)


def signed_greeter(tmp_path: Path, home: Path) -> tuple[Path, Path]:
    """Publisher ``acme`` (may run isolated and inproc agents) trusted in ``home``'s one trust
    store, as ``aios keys trust`` writes it, and the ``greeter`` image signed by it: (image, key)."""
    traversable(tmp_path)
    trusted = private_dir(trust_dir(home))
    key, pub = img.create_key(tmp_path / "keys", "acme")
    (trusted / "acme.toml").write_text(
        img.trust_entry("acme", pub.read_bytes(), capabilities=[], executors=["isolated", "inproc"]))
    image = tmp_path / "greeter"
    image.mkdir()
    (image / "agent.toml").write_text(GREETER_MANIFEST)
    (image / "greeter_agent.py").write_text(
        "async def main(ctx):\n    return 'hello from ' + ctx.spec['image']['name']\n")
    img.sign(image, key, "acme")
    return image, key
