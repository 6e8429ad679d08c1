"""``aios bench embed``: sentences per second for every installed embedder.

Each embedder embeds the same ``--n`` distinct sentences (varied length, 6
to 40 words, so padding matters as it does in real use) with its cache
cleared and then once more from a warm cache.  Keys are flat:
``<embedder>_sentences_per_s`` for each backend that loads here (``minilm``
= fp32 graph on ONNX Runtime, the default; ``minilm_int8`` = the int8
export; ``minilm_numpy`` = the numpy reference; ``hashing``) and
``<embedder>_cached_sentences_per_s`` for the warm pass.  The baseline is
the numpy reference: ``onnx_over_numpy`` is the default's speed-up over it
and ``<embedder>_cosine_to_reference_min`` each ONNX runner's worst
agreement with it on these sentences.  Absent backends are left out.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import numpy as np

_VOCAB = ("the a meeting weather book flight hotel tomorrow please send email budget recipe "
          "song play review code bug deploy server memory agent kernel route intent paris "
          "berlin price order delivery doctor sleep exercise translate spanish account "
          "transfer calendar schedule friday quickly carefully report summary")
_WORDS = _VOCAB.split()


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 40)))
            for i in range(n)]


def _rate(embedder: Any, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    embedder.clear_cache()
    embedder.batch_size = batch
    t0 = time.perf_counter()
    vecs = embedder.embed(texts)
    return len(texts) / (time.perf_counter() - t0), vecs


def run(argv: list[str]) -> dict[str, Any]:
    from aios.abi.errors import AIOSError
    from aios.lib.vectors.embedding import HashingEmbedder, MiniLMEmbedder

    p = argparse.ArgumentParser(prog="aios bench embed")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    texts = sentences(a.n)
    out: dict[str, Any] = {"n": a.n, "batch": a.batch}
    vecs: dict[str, np.ndarray] = {}
    candidates: list[tuple[str, Any]] = [
        ("minilm", lambda: MiniLMEmbedder("onnx")),
        ("minilm_int8", lambda: MiniLMEmbedder("int8")),
        ("minilm_numpy", lambda: MiniLMEmbedder("numpy")),
        ("hashing", lambda: HashingEmbedder()),
    ]
    for key, make in candidates:
        try:
            emb = make()
        except (AIOSError, ImportError):
            continue
        emb.embed(texts[:8])  # warm up (session init, first allocations)
        rate, v = _rate(emb, texts, a.batch)
        vecs[key] = v
        out[f"{key}_sentences_per_s"] = round(rate, 1)
        t0 = time.perf_counter()
        emb.embed(texts)
        out[f"{key}_cached_sentences_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
    if "minilm" in vecs and "minilm_numpy" in vecs:
        out["onnx_over_numpy"] = round(out["minilm_sentences_per_s"]
                                       / out["minilm_numpy_sentences_per_s"], 2)
        for key in ("minilm", "minilm_int8"):
            if key in vecs:
                cos = (vecs[key] * vecs["minilm_numpy"]).sum(axis=1)
                out[f"{key}_cosine_to_reference_min"] = round(float(cos.min()), 6)
    if "minilm" in vecs and "hashing" in vecs:
        out["hashing_over_minilm"] = round(out["hashing_sentences_per_s"]
                                           / out["minilm_sentences_per_s"], 1)
    return out
