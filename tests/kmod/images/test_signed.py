from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from aios.abi.errors import IntegrityError, InvalidArgument, PermissionDenied
from aios.kmod.images import signed as img

MANIFEST = """name = "hello"
version = "1.0.0"
entry = "hello:main"
executor = "isolated"
capabilities = ["ACCESS_NET"]
[resources]
memory_bytes = 134217728
cpu_seconds = 10
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "keys"
    trust = tmp_path / "trust"
    trust.mkdir()
    key, pub = img.create_key(keys, "acme")
    (trust / "acme.toml").write_text(
        img.trust_entry(
            "acme", pub.read_bytes(), capabilities=["ACCESS_NET"], executors=["isolated", "wasm"]
        )
    )
    image = tmp_path / "hello"
    (image / "pkg").mkdir(parents=True)
    (image / "agent.toml").write_text(MANIFEST)
    (image / "hello.py").write_text("async def main():\n    return 1\n")
    (image / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    return {"key": key, "pub": pub, "trust": trust, "image": image, "keys": keys, "tmp": tmp_path}


def test_key_file_mode_0600(env: dict[str, Path]) -> None:
    assert (os.stat(env["key"]).st_mode & 0o777) == 0o600
    assert len(env["key"].read_bytes()) == 32


def test_valid_image_verifies(env: dict[str, Path]) -> None:
    sig = img.sign(env["image"], env["key"], "acme")
    v = img.verify(env["image"], env["trust"])
    assert v.manifest.name == "hello" and v.publisher == "acme" and v.digest == sig.digest
    assert v.manifest.capabilities == ("ACCESS_NET",)
    assert "pkg/data.bin" in v.files


def test_tar_image_roundtrip(env: dict[str, Path]) -> None:
    out = env["tmp"] / "hello.tar"
    _m, digest = img.build(env["image"], out)
    sig = img.sign(out, env["key"], "acme")
    assert sig.digest == digest
    assert img.verify(out, env["trust"]).digest == digest


def test_flipped_byte_refused(env: dict[str, Path]) -> None:
    img.sign(env["image"], env["key"], "acme")
    data = bytearray((env["image"] / "pkg" / "data.bin").read_bytes())
    data[100] ^= 1
    (env["image"] / "pkg" / "data.bin").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="content hash mismatch"):
        img.verify(env["image"], env["trust"])


def test_added_file_refused(env: dict[str, Path]) -> None:
    img.sign(env["image"], env["key"], "acme")
    (env["image"] / "extra.py").write_text("x = 1\n")
    with pytest.raises(IntegrityError, match="content hash mismatch"):
        img.verify(env["image"], env["trust"])


def test_missing_signature_refused(env: dict[str, Path]) -> None:
    with pytest.raises(IntegrityError, match="not signed"):
        img.verify(env["image"], env["trust"])


def test_wrong_key_refused(env: dict[str, Path]) -> None:
    other_key, _ = img.create_key(env["keys"], "mallory")
    img.sign(env["image"], other_key, "acme")  # claims to be acme
    with pytest.raises(PermissionDenied, match="not publisher acme's trusted key"):
        img.verify(env["image"], env["trust"])


def test_untrusted_publisher_refused(env: dict[str, Path]) -> None:
    other_key, _ = img.create_key(env["keys"], "mallory")
    img.sign(env["image"], other_key, "mallory")
    with pytest.raises(PermissionDenied, match="not in the trust store"):
        img.verify(env["image"], env["trust"])


def test_forged_signature_bytes_refused(env: dict[str, Path]) -> None:
    img.sign(env["image"], env["key"], "acme")
    sig_path = env["image"] / img.SIGNATURE
    s = img.Signature.parse(sig_path.read_text())
    bad = bytearray(s.signature)
    bad[10] ^= 0xFF
    sig_path.write_text(
        img.Signature(s.publisher, s.key_fingerprint, s.digest, bytes(bad)).to_toml()
    )
    with pytest.raises(IntegrityError, match="does not verify"):
        img.verify(env["image"], env["trust"])


@pytest.mark.parametrize(
    "patch, what",
    [
        ('capabilities = ["ACCESS_NET", "ACCESS_FS"]', "capabilities"),
        ('executor = "inproc"', "executor"),
        ("memory_bytes = 99999999999", "memory_bytes"),
    ],
)
def test_over_asking_manifest_refused(env: dict[str, Path], patch: str, what: str) -> None:
    key = patch.split(" = ")[0]
    lines = [patch if line.startswith(key + " =") else line for line in MANIFEST.splitlines()]
    (env["image"] / "agent.toml").write_text("\n".join(lines) + "\n")
    img.sign(env["image"], env["key"], "acme")
    with pytest.raises(PermissionDenied, match=what):
        img.verify(env["image"], env["trust"])


def test_bad_manifest_and_symlink(env: dict[str, Path]) -> None:
    (env["image"] / "agent.toml").write_text('name = "x"\n')
    with pytest.raises(InvalidArgument, match="lacks required"):
        img.build(env["image"])
    (env["image"] / "agent.toml").write_text(MANIFEST)
    os.symlink("/etc/passwd", env["image"] / "link")
    with pytest.raises(IntegrityError, match="non-regular"):
        img.build(env["image"])


def test_tar_with_escape_refused(env: dict[str, Path]) -> None:
    bad = env["tmp"] / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(env["image"] / "agent.toml", arcname="agent.toml")
        tar.add(env["image"] / "hello.py", arcname="../evil.py")
    with pytest.raises(IntegrityError, match="escapes"):
        img.read_tree(bad)


def test_valid_wasm_image_runs(env: dict[str, Path]) -> None:
    from aios.abi.faults import Sink
    from aios.sandbox.wasm import WasmExecutor

    d = env["tmp"] / "wasmimg"
    d.mkdir()
    src = Path(img.__file__).resolve().parents[2] / "sandbox" / "examples" / "hello.wat"
    (d / "hello.wat").write_text(src.read_text())
    (d / "agent.toml").write_text(
        'name="hello"\nversion="1"\nentry="hello.wat"\nexecutor="wasm"\n[resources]\nmemory_bytes=1048576\n'
    )
    img.sign(d, env["key"], "acme")
    spec = img.to_spec(img.verify(d, env["trust"]), d, agent_id=7)
    echoes: list[tuple[object, ...]] = []

    def trap(aid: int, seq: int, sysno: int, args: tuple[object, ...]) -> None:
        echoes.append(args) if sysno == 21 else None
        ex.deliver(aid, seq, 0, aid)

    ex = WasmExecutor(Sink(trap, lambda r: None, lambda e: None))
    ex.spawn_now(spec)
    assert ex.run_slice(7).value == 7
    assert echoes == [("hello", 1)]
    ex.shutdown()


def test_wasm_entry_outside_image_refused(env: dict[str, Path]) -> None:
    d = env["tmp"] / "escape"
    d.mkdir()
    (d / "agent.toml").write_text(
        'name="x"\nversion="1"\nentry="../../etc/passwd"\nexecutor="wasm"\n'
    )
    img.sign(d, env["key"], "acme")
    with pytest.raises(IntegrityError, match="outside"):
        img.to_spec(img.verify(d, env["trust"]), d, agent_id=1)
