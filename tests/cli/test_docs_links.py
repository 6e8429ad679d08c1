"""``docs/`` stands alone: no link leaves the repository.

A reader who has only the repository (a clone, a release tarball) must be able
to follow every link in ``docs/*.md``.  So a link is either a web address, an
anchor, or a relative path that stays inside the repository and names a file
that exists; an absolute path (``/home/...``, ``file://``, ``~/...``) or a
``../`` that climbs out of the checkout is refused, and so is any mention of
the checkout's parent directory (this machine's own path), in a link or not.  Fenced code is skipped for
links (a Python call like ``table[5](kernel, ...)`` is not a link) but not for
the mention of that path.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_WEB = re.compile(r"^(?:https?|mailto):", re.I)


def _prose(text: str) -> str:
    """The text with fenced code blocks and inline code blanked out."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def bad_links(doc: Path, root: Path = ROOT) -> list[str]:
    """Every link in ``doc`` that leaves ``root`` or names nothing, as ``"doc:target (why)"``."""
    text = doc.read_text(encoding="utf-8")
    parent = str(ROOT.parent) + "/"
    out = [f"{doc.name}: mentions {parent}"] if parent != "/" and parent in text else []
    prose = _prose(text)
    for target in _INLINE.findall(prose) + _REFDEF.findall(prose) + _HTML.findall(prose):
        if _WEB.match(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path.startswith(("/", "~", "\\")) or re.match(r"^[a-z][a-z0-9+.-]*:", path, re.I):
            out.append(f"{doc.name}:{target} (absolute or non-web scheme)")
            continue
        resolved = (doc.parent / path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            out.append(f"{doc.name}:{target} (outside the repository)")
        elif not resolved.exists():
            out.append(f"{doc.name}:{target} (no such file)")
    return out


def test_the_scanner_catches_each_kind_of_escape(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("x")
    (root / "docs" / "here.md").write_text("x")
    doc = root / "docs" / "t.md"
    doc.write_text(
        "ok: [a](here.md) [b](../README.md#top) [c](https://example.org/x) [d](#anchor)\n"
        "```\ncode(x)[5](not, a, link)\n```\n"
        "bad: [e](../../elsewhere.md) [f](/etc/passwd) [g](file:///tmp/x) [h](missing.md)\n"
        "[ref]: ~/notes.md\n<img src=\"/abs.png\">\nsee " + str(ROOT.parent) + "/shared for notes\n"
    )
    found = bad_links(doc, root)
    assert found[0] == f"t.md: mentions {ROOT.parent}/"
    assert [f.split(":", 1)[1] for f in found[1:]] == [
        "../../elsewhere.md (outside the repository)",
        "/etc/passwd (absolute or non-web scheme)",
        "file:///tmp/x (absolute or non-web scheme)",
        "missing.md (no such file)",
        "~/notes.md (absolute or non-web scheme)",
        "/abs.png (absolute or non-web scheme)",
    ]


def test_docs_have_no_links_outside_the_repository() -> None:
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert len(docs) > 5
    assert [bad for d in docs for bad in bad_links(d)] == []
