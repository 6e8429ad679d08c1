"""``aios image``: build, sign, verify and inspect signed agent images."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from aios.cli.keys import publishers_dir, trust_dir

NAME = "image"
app = typer.Typer(
    help="Agent images: build, sign (ML-DSA-65), verify, inspect.", no_args_is_help=True
)

OUT = typer.Option("table", "-o", "--output", help="table, wide (digests unwrapped) or json")


def _run(fn, output: str, title: str):  # type: ignore[no-untyped-def]
    from aios.abi.errors import AIOSError
    from aios.cli.output import check_format, emit

    check_format(output)
    try:
        result = fn()
    except AIOSError as exc:
        if output == "json":
            typer.echo(
                json.dumps(
                    {"ok": False, "error": exc.name, "code": exc.code, "message": exc.message}
                )
            )
        else:
            typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    emit({"ok": True, **result} if output == "json" else result, output, title=title)


@app.command("build")
def build_cmd(
    directory: str,
    out: str = typer.Option("", "--out", help="also write a .tar archive"),
    output: str = OUT,
) -> None:
    """Check an image directory (agent.toml, files) and print its content digest."""
    from aios.kmod.images.signed import build

    def go() -> dict[str, object]:
        m, digest = build(directory, out or None)
        return {"name": m.name, "version": m.version, "digest": digest, "archive": out or None}

    _run(go, output, "image build")


@app.command("sign")
def sign_cmd(
    image: str,
    key: str = typer.Option(..., "--key", help="publisher key name (or path to a .key file)"),
    output: str = OUT,
) -> None:
    """Sign IMAGE with a publisher key (ML-DSA-65)."""
    from pathlib import Path

    from aios.kmod.images.signed import sign

    key_path = Path(key) if key.endswith(".key") else publishers_dir() / f"{key}.key"
    publisher = key_path.stem

    def go() -> dict[str, object]:
        s = sign(image, key_path, publisher)
        return {"publisher": s.publisher, "key_fingerprint": s.key_fingerprint, "digest": s.digest}

    _run(go, output, "image sign")


@app.command("verify")
def verify_cmd(
    image: str,
    trust: str = typer.Option(
        "", "--trust", help="trust store dir (default $AIOS_HOME/keys/trusted)"
    ),
    output: str = OUT,
) -> None:
    """Verify signature, content hash, publisher trust and grants."""
    from aios.kmod.images.signed import verify

    def go() -> dict[str, object]:
        v = verify(image, trust or trust_dir())
        return {
            "name": v.manifest.name,
            "publisher": v.publisher,
            "digest": v.digest,
            "verified": True,
        }

    _run(go, output, "image verify")


@app.command("install")
def install_cmd(image: str, output: str = OUT) -> None:
    """Verify IMAGE and install it in the verified store ($AIOS_HOME/images/<digest>).

    Agents then start it as ``image:sha256:<digest>`` or ``image:name:<name>``
    (only the operator names images by path)."""
    from aios.abi.home import aios_home
    from aios.kmod.images.store import install_verified

    def go() -> dict[str, object]:
        from aios.cli.output import progress

        with progress(f"installing {image} (verifying its signature)"):
            v, _root = install_verified(image, aios_home().resolve())
        return {"name": v.manifest.name, "version": v.manifest.version, "publisher": v.publisher,
                "digest": v.digest, "ref": f"image:sha256:{v.digest}"}

    _run(go, output, "image install")


@app.command("inspect")
def inspect_cmd(image: str, output: str = OUT) -> None:
    """Show an image's manifest, digest and signature (without verifying trust)."""
    from aios.kmod.images.signed import inspect_image

    def go() -> dict[str, object]:
        m, digest, sig = inspect_image(image)
        d = asdict(m)
        d["digest"] = digest
        d["signed_by"] = sig.publisher if sig else None
        d["signature_matches_content"] = bool(sig and sig.digest == digest)
        return d

    _run(go, output, "image inspect")
