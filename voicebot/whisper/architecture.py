"""Whisper's real layer sizes and random weights in CTranslate2's Whisper layout.

:data:`ARCHITECTURES` lists OpenAI's tiny, base and small (d_model, layers,
heads; feed-forward 4 * d_model; alignment heads of the released checkpoints).
:func:`fill_random_weights` sets every variable of a
``ctranslate2.specs.whisper_spec.WhisperSpec`` the way CTranslate2's Transformers
converter lays out real weights (fused self-attention q/k/v, fused cross-attention
k/v, tied output projection), with normal * 0.02 weights, zero biases, identity
layer norms and Whisper's sinusoidal encoder positions, so activations stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ARCHITECTURES",
    "AUDIO_POSITIONS",
    "MEL_BINS",
    "TEXT_POSITIONS",
    "WhisperArchitecture",
    "fill_random_weights",
]

_WEIGHT_STD = 0.02

MEL_BINS = 80
AUDIO_POSITIONS = 1500
TEXT_POSITIONS = 448


@dataclass(frozen=True, slots=True)
class WhisperArchitecture:
    """Layer sizes of one Whisper size (feed-forward width is 4 * d_model)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    alignment_heads_en: tuple[tuple[int, int], ...]
    alignment_heads_multilingual: tuple[tuple[int, int], ...]


ARCHITECTURES: dict[str, WhisperArchitecture] = {
    "whisper-tiny": WhisperArchitecture(
        384, 4, 4, 6,
        ((1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)),
        ((2, 2), (3, 0), (3, 2), (3, 3), (3, 4), (3, 5)),
    ),
    "whisper-base": WhisperArchitecture(
        512, 6, 6, 8,
        ((3, 3), (4, 7), (5, 1), (5, 5), (5, 7)),
        ((3, 1), (4, 2), (4, 3), (4, 7), (5, 1), (5, 2), (5, 4), (5, 6)),
    ),
    "whisper-small": WhisperArchitecture(
        768, 12, 12, 12,
        ((6, 6), (7, 0), (7, 3), (7, 8), (8, 2), (8, 5), (8, 7), (9, 0), (9, 4), (9, 8),
         (9, 10), (10, 0), (10, 1), (10, 2), (10, 3), (10, 6), (10, 11), (11, 2), (11, 4)),
        ((5, 3), (5, 9), (8, 0), (8, 4), (8, 7), (8, 8), (9, 0), (9, 7), (9, 9), (10, 5)),
    ),
}  # fmt: skip
"""The real sizes of OpenAI's tiny, base and small (alignment heads from their checkpoints)."""


def fill_random_weights(
    spec: Any,
    arch: WhisperArchitecture,
    vocabulary_size: int,
    rng: np.random.Generator,
) -> None:
    """Random weights in every variable of ``spec`` (the layout of CTranslate2's converter)."""
    d = arch.d_model

    def normal(*shape: int) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = rng.standard_normal(shape, dtype=np.float32)
        values *= _WEIGHT_STD
        return values

    def linear(layer: Any, out_dim: int, in_dim: int) -> None:
        layer.weight = normal(out_dim, in_dim)
        layer.bias = np.zeros(out_dim, dtype=np.float32)

    def norm(layer: Any) -> None:
        layer.gamma = np.ones(d, dtype=np.float32)
        layer.beta = np.zeros(d, dtype=np.float32)

    def attention(layer: Any, *, self_attention: bool) -> None:
        norm(layer.layer_norm)
        if self_attention:
            linear(layer.linear[0], 3 * d, d)  # fused q, k, v
        else:
            linear(layer.linear[0], d, d)  # q
            linear(layer.linear[1], 2 * d, d)  # fused k, v (of the encoder output)
        linear(layer.linear[-1], d, d)

    def feed_forward(layer: Any) -> None:
        norm(layer.layer_norm)
        linear(layer.linear_0, 4 * d, d)
        linear(layer.linear_1, d, 4 * d)

    encoder = spec.encoder
    encoder.conv1.weight = normal(d, MEL_BINS, 3)
    encoder.conv1.bias = np.zeros(d, dtype=np.float32)
    encoder.conv2.weight = normal(d, d, 3)
    encoder.conv2.bias = np.zeros(d, dtype=np.float32)
    encoder.position_encodings.encodings = _sinusoids(AUDIO_POSITIONS, d)
    norm(encoder.layer_norm)
    for layer in encoder.layer:
        attention(layer.self_attention, self_attention=True)
        feed_forward(layer.ffn)

    decoder = spec.decoder
    decoder.embeddings.weight = normal(vocabulary_size, d)
    decoder.position_encodings.encodings = normal(TEXT_POSITIONS, d)
    norm(decoder.layer_norm)
    decoder.projection.weight = decoder.embeddings.weight  # tied, as in Whisper
    for layer in decoder.layer:
        attention(layer.self_attention, self_attention=True)
        attention(layer.attention, self_attention=False)
        feed_forward(layer.ffn)


def _sinusoids(length: int, channels: int) -> npt.NDArray[np.float32]:
    """Whisper's encoder position table."""
    increment = np.log(10000.0) / (channels // 2 - 1)
    inv_timescales = np.exp(-increment * np.arange(channels // 2))
    scaled = np.arange(length)[:, None] * inv_timescales[None, :]
    table: npt.NDArray[np.float32] = np.concatenate(
        [np.sin(scaled), np.cos(scaled)], axis=1
    ).astype(np.float32)
    return table
