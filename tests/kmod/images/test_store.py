"""The verified image store: install verifies first; references by digest and by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument, NoSuchObject, PermissionDenied
from aios.kmod.images import signed as img
from aios.kmod.images.store import install_verified, is_store_ref, resolve_stored
from aios.lib.paths import images_dir, private_dir, trust_dir


def make_image(root: Path, name: str, version: str) -> Path:
    d = root / f"{name}-{version}"
    d.mkdir()
    (d / "agent.toml").write_text(f'name="{name}"\nversion="{version}"\nentry="m:main"\nexecutor="isolated"\n')
    (d / "m.py").write_text(f"async def main(ctx):\n    return {version!r}\n")
    return d


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path / "home"
    key, pub = img.create_key(tmp_path / "keys", "acme")
    (private_dir(trust_dir(home)) / "acme.toml").write_text(
        img.trust_entry("acme", pub.read_bytes(), capabilities=[], executors=["isolated"]))
    return home, key, tmp_path


def test_refused_images_leave_nothing_on_disk(home: tuple[Path, Path, Path]) -> None:
    h, key, tmp = home
    d = make_image(tmp, "a", "1")
    with pytest.raises(IntegrityError):
        install_verified(d, h)  # unsigned
    img.sign(d, key, "acme")
    (d / "m.py").write_text("tampered")
    with pytest.raises(IntegrityError):
        install_verified(d, h)
    store = images_dir(h)
    assert not store.exists() or list(store.iterdir()) == []


def test_digest_and_name_references(home: tuple[Path, Path, Path]) -> None:
    h, key, tmp = home
    v1, v2 = make_image(tmp, "a", "1"), make_image(tmp, "a", "2")
    for d in (v1, v2):
        img.sign(d, key, "acme")
    one, dir1 = install_verified(v1, h)
    two, _ = install_verified(v2, h)
    assert dir1 == images_dir(h) / one.digest
    again, same = install_verified(v1, h)  # already there: the stored copy, verified again
    assert same == dir1 and again.digest == one.digest
    assert resolve_stored(f"sha256:{one.digest}", h)[0].manifest.version == "1"
    assert resolve_stored(f"sha256:{two.digest[:12]}", h)[0].manifest.version == "2"
    assert resolve_stored("name:a@2", h)[0].digest == two.digest
    with pytest.raises(InvalidArgument, match="versions"):
        resolve_stored("name:a", h)
    with pytest.raises(NoSuchObject):
        resolve_stored("name:b", h)
    with pytest.raises(InvalidArgument):
        resolve_stored("sha256:../../etc", h)
    assert resolve_stored("/some/path", h) is None and not is_store_ref("./name:x")


def test_untrusting_a_publisher_takes_effect_at_the_next_resolve(home: tuple[Path, Path, Path]) -> None:
    h, key, tmp = home
    d = make_image(tmp, "a", "1")
    img.sign(d, key, "acme")
    v, _ = install_verified(d, h)
    (trust_dir(h) / "acme.toml").unlink()
    with pytest.raises(PermissionDenied, match="not in the trust store"):
        resolve_stored(f"sha256:{v.digest}", h)
