"""A plain-numpy BERT forward pass: the oracle the ONNX graph is tested against.

It is written independently of :mod:`voicebot.nlu.onnx_graph` and as literally
as the BERT paper / Hugging Face ``BertModel`` define it (float64 inside, so the
oracle's own rounding error is negligible):

1. embeddings = word[input_ids] + position[0..S) + token_type[0], then LayerNorm;
2. per layer: multi-head self-attention, softmax over keys with an additive
   mask of -10000 on padded keys, output projection, residual, LayerNorm
   (post-LN); then the FFN ``dense -> GELU -> dense``, residual, LayerNorm.
   GELU is the exact ``0.5 x (1 + erf(x / sqrt 2))`` form BERT uses;
3. sentence-transformers pooling: the mean of the last hidden states over the
   tokens whose attention mask is 1, then L2 normalization.

``erf`` is the Abramowitz & Stegun 7.1.26 approximation (error < 1.5e-7, i.e.
below float32 resolution), since numpy has none.  Meant for tests only.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from voicebot.nlu.weights import MiniLmWeights

__all__ = [
    "MASK_BIAS",
    "bert_hidden_states",
    "erf",
    "gelu",
    "l2_normalize",
    "layer_norm",
    "mean_pool",
    "reference_embed",
]

MASK_BIAS = -10000.0
"""Added to the attention scores of padded keys (the classic BERT value)."""

F64 = npt.NDArray[np.float64]

_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: F64) -> F64:
    """Vectorized erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7, below float32 eps)."""
    sign = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * ax)
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERF_A):
        poly = (poly + coefficient) * t
    out: F64 = sign * (1.0 - poly * np.exp(-ax * ax))
    return out


def layer_norm(x: F64, weight: F64, bias: F64, *, eps: float) -> F64:
    """LayerNorm over the last axis (biased variance, as torch computes it)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: F64 = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


def gelu(x: F64) -> F64:
    """Exact GELU: ``0.5 * x * (1 + erf(x / sqrt(2)))``."""
    out: F64 = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return out


def _w(weights: MiniLmWeights, name: str) -> F64:
    return weights.tensor(name).astype(np.float64)


def _linear(weights: MiniLmWeights, prefix: str, x: F64) -> F64:
    """``x @ W.T + b`` with torch's ``nn.Linear`` layout (W is [out, in])."""
    out: F64 = x @ _w(weights, f"{prefix}.weight").T + _w(weights, f"{prefix}.bias")
    return out


def _self_attention(weights: MiniLmWeights, prefix: str, x: F64, mask_bias: F64) -> F64:
    cfg = weights.config
    batch, seq, hidden = x.shape
    heads, size = cfg.num_heads, cfg.head_size

    def split(t: F64) -> F64:
        return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

    q = split(_linear(weights, f"{prefix}.query", x))
    k = split(_linear(weights, f"{prefix}.key", x))
    v = split(_linear(weights, f"{prefix}.value", x))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + mask_bias
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    context: F64 = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    return context


def bert_hidden_states(
    weights: MiniLmWeights,
    input_ids: npt.NDArray[np.int64],
    attention_mask: npt.NDArray[np.int64],
) -> F64:
    """Last-layer hidden states, float64 ``[batch, seq, hidden]``."""
    cfg = weights.config
    eps = cfg.layer_norm_eps
    ids = np.asarray(input_ids, dtype=np.int64)
    mask = np.asarray(attention_mask, dtype=np.float64)
    seq = ids.shape[1]
    x = (
        _w(weights, "embeddings.word_embeddings.weight")[ids]
        + _w(weights, "embeddings.position_embeddings.weight")[:seq][None, :, :]
        + _w(weights, "embeddings.token_type_embeddings.weight")[0][None, None, :]
    )
    x = layer_norm(
        x,
        _w(weights, "embeddings.LayerNorm.weight"),
        _w(weights, "embeddings.LayerNorm.bias"),
        eps=eps,
    )
    mask_bias = ((1.0 - mask) * MASK_BIAS)[:, None, None, :]
    for layer in range(cfg.num_layers):
        p = f"encoder.layer.{layer}"
        context = _self_attention(weights, f"{p}.attention.self", x, mask_bias)
        attn = _linear(weights, f"{p}.attention.output.dense", context)
        x = layer_norm(
            attn + x,
            _w(weights, f"{p}.attention.output.LayerNorm.weight"),
            _w(weights, f"{p}.attention.output.LayerNorm.bias"),
            eps=eps,
        )
        inner = gelu(_linear(weights, f"{p}.intermediate.dense", x))
        ffn = _linear(weights, f"{p}.output.dense", inner)
        x = layer_norm(
            ffn + x,
            _w(weights, f"{p}.output.LayerNorm.weight"),
            _w(weights, f"{p}.output.LayerNorm.bias"),
            eps=eps,
        )
    return x


def mean_pool(hidden: F64, attention_mask: npt.NDArray[np.int64]) -> F64:
    """Mean of ``hidden`` over the positions where the mask is 1."""
    mask = np.asarray(attention_mask, dtype=np.float64)[:, :, None]
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    pooled: F64 = (hidden * mask).sum(axis=1) / counts
    return pooled


def l2_normalize(x: F64) -> F64:
    """Rows divided by their L2 norm (floored at 1e-12, like ``F.normalize``)."""
    norms = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    out: F64 = x / norms
    return out


def reference_embed(
    weights: MiniLmWeights,
    input_ids: npt.NDArray[np.int64],
    attention_mask: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """Sentence embeddings ``[batch, hidden]`` float32: BERT, mean pool, L2 normalize."""
    hidden = bert_hidden_states(weights, input_ids, attention_mask)
    return l2_normalize(mean_pool(hidden, attention_mask)).astype(np.float32)
