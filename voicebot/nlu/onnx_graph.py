"""Build the MiniLM-L6 sentence embedder as a plain fp32 ONNX graph, from the raw weights.

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
because :func:`voicebot.nlu.onnx_optimize.fuse_graph` then hands it to
onnxruntime's transformer optimizer, which only recognises that layout.  The
token-type-0 row is folded into the position table (exact).  Pooling and
normalization stay in the graph.

The LayerNorm outputs that feed projections (the SmoothQuant probes of
:mod:`voicebot.nlu.onnx_optimize`) are named ``l<i>.attn_in`` / ``l<i>.ffn_in``
and the projection MatMuls ``l<i>.<kind>.matmul``, so later passes can find
them by name.  :mod:`voicebot.nlu.model_cache` builds, optimizes and stores the
models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from voicebot.nlu.weights import MiniLmWeights

if TYPE_CHECKING:
    import onnx

__all__ = ["OPSET", "build_graph"]

OPSET = 17
_MASK_BIAS = -10000.0


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
