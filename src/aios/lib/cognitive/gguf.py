"""Read a GGUF file's metadata (llama.cpp's model format) without loading the model.

A context window has to be counted in the model's own tokens, and the only
place the embedded model's tokenizer is written down is its GGUF file:
``xllamacpp`` exposes chat completion, not tokenization.  GGUF (versions 2 and
3) starts with the magic ``GGUF``, a ``u32`` version, a ``u64`` tensor count
and a ``u64`` key/value count, then the key/value pairs: a string key, a
``u32`` value type, the value.  Strings are a ``u64`` length and UTF-8 bytes;
arrays are an element type, a ``u64`` count and the elements.  Tensor
descriptions and the tensors themselves follow; they are never read here.

The vocabulary lives under ``tokenizer.ggml.*`` (``tokens``, ``token_type``,
``merges``, ``pre``, ``model``) and the chat template under
``tokenizer.chat_template``.  :func:`read_metadata` returns every pair as
plain Python values.  Lengths and counts are bounded, so a damaged or hostile
file fails with :class:`~aios.abi.errors.InvalidArgument` naming what was wrong
instead of allocating without limit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

from aios.abi.errors import InvalidArgument, NoSuchObject

MAGIC: Final = b"GGUF"
MAX_STRING: Final = 64 << 20  # a chat template or a token is far smaller
MAX_ARRAY: Final = 1 << 24  # vocabularies are ~10^5 entries
MAX_KV: Final = 1 << 16
MAX_DEPTH: Final = 4

# value types (gguf.h)
_SCALARS: Final = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}
_STRING: Final = 8
_ARRAY: Final = 9


class _Reader:
    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f = f
        self.path = path

    def bad(self, why: str) -> InvalidArgument:
        return InvalidArgument(f"{self.path} is not a readable GGUF file: {why}", path=str(self.path))

    def exact(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise self.bad("it ends inside its metadata")
        return b

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.exact(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise self.bad(f"a string of {n} bytes")
        return self.exact(n).decode("utf-8", "replace")

    def value(self, vtype: int, depth: int = 0) -> Any:
        fmt = _SCALARS.get(vtype)
        if fmt is not None:
            return self.unpack(fmt)
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth >= MAX_DEPTH:
                raise self.bad("arrays nested too deep")
            etype = self.unpack("<I")
            n = self.unpack("<Q")
            if n > MAX_ARRAY:
                raise self.bad(f"an array of {n} elements")
            if etype in _SCALARS:  # one read for the whole array
                f = _SCALARS[etype]
                size = struct.calcsize(f)
                return list(struct.unpack(f"<{n}{f[1]}", self.exact(n * size)))
            read: Callable[[], Any] = (
                self.string if etype == _STRING else (lambda: self.value(etype, depth + 1))
            )
            return [read() for _ in range(n)]
        raise self.bad(f"unknown value type {vtype}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Every metadata key/value pair of the GGUF file at ``path``."""
    p = Path(path)
    if not p.is_file():
        raise NoSuchObject(f"no model file {p}")
    with p.open("rb") as f:
        r = _Reader(f, p)
        if r.exact(4) != MAGIC:
            raise r.bad("wrong magic (not GGUF)")
        version = r.unpack("<I")
        if version not in (2, 3):
            raise r.bad(f"GGUF version {version} (2 and 3 are understood)")
        r.unpack("<Q")  # tensor count
        nkv = r.unpack("<Q")
        if nkv > MAX_KV:
            raise r.bad(f"{nkv} metadata entries")
        out: dict[str, Any] = {"gguf.version": version}
        for _ in range(nkv):
            key = r.string()
            out[key] = r.value(r.unpack("<I"))
        return out
