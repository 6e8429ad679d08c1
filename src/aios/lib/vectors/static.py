"""Static (bag-of-token) sentence embeddings: WordLlama's shipped token table.

A static embedder has no transformer: a sentence's vector is the mean of
fixed per-token vectors, normalised.  WordLlama (MIT licence) distils the
token-embedding table of a large language model into 256 dimensions and
ships it inside its PyPI wheel (``wordllama/weights/l2_supercat_256.safetensors``,
32,000 x 256 fp16, 16 MB, plus the tokenizer's JSON), so it works offline
like MiniLM.  It is installed with ``pip install --no-deps wordllama`` and
its Python code is never imported: this module finds the package directory
with :func:`importlib.util.find_spec`, reads the weights with the project's
own safetensors reader and tokenises with ``tokenizers``.

Trade-off, measured on the routing benchmark (docs/memory.md): about 30x
MiniLM's throughput on this CPU (thousands of sentences per second on one
core) for markedly lower routing accuracy, because word order and context
are gone ("cancel my flight" and "my flight was cancelled" look alike).  It
suits very high-volume routing where a coarse answer is acceptable; MiniLM
stays the default.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import NoSuchObject
from aios.lib.vectors.embedding import Embedder

PACKAGE = "wordllama"
WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NoSuchObject(f"the Python package {PACKAGE!r} is not installed; install it with "
                           f"`pip install --no-deps {PACKAGE}` (no network is used at run time)")
    return Path(next(iter(spec.submodule_search_locations)))


class StaticEmbedder(Embedder):
    """Mean of WordLlama's token vectors (256-d), L2-normalised."""

    def __init__(self, directory: Path | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        from tokenizers import Tokenizer

        from aios.lib.vectors.minilm import read_safetensors

        d = directory or package_dir()
        for f in (d / WEIGHTS, d / TOKENIZER):
            if not f.is_file():
                raise NoSuchObject(f"static embedding file missing: {f}")
        table = next(iter(read_safetensors(d / WEIGHTS).values()))
        self._table = np.ascontiguousarray(table.astype(np.float32))
        tok = Tokenizer.from_file(str(d / TOKENIZER))
        tok.enable_padding()
        tok.enable_truncation(512)
        self._tok = tok
        self.dim = int(self._table.shape[1])
        self.name = f"wordllama-{self.dim}"

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        enc = self._tok.encode_batch(texts, add_special_tokens=False)
        ids = np.clip(np.asarray([e.ids for e in enc], dtype=np.int64), 0,
                      self._table.shape[0] - 1)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.float32)
        summed = (self._table[ids] * mask[..., None]).sum(axis=1)
        out: np.ndarray = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model="WordLlama l2_supercat (static token vectors)", weights="fp16 safetensors")
        return d
