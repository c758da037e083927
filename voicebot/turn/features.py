"""The input of Smart Turn v3: Whisper-style log-mel features of the turn's last 8 s.

Smart Turn v3 (pipecat-ai/smart-turn, a Whisper Tiny encoder with a classifier
head) was trained on features made by ``transformers.WhisperFeatureExtractor``
with an 8 s chunk and ``do_normalize=True``; pipecat's published inference does,
in order:

1. 16 kHz mono float audio; keep the **last** 8 s (128 000 samples) when the turn
   is longer, or put zeros **before** it when shorter, so the end of the turn is
   always at the end of the window;
2. normalise the whole padded window to zero mean and unit variance
   (``(x - mean) / sqrt(var + 1e-7)``; the padding is included);
3. a centred STFT (reflect padding of ``n_fft / 2``), a 400-point periodic Hann
   window, hop 160 (10 ms): 801 frames, the last one dropped;
4. the power spectrum through 80 Slaney-normalised mel filters (0-8 kHz),
   ``log10`` (floor 1e-10), clamped to 8 decades below the window's maximum,
   then ``(x + 4) / 4``.

The result is ``[80, 800]`` float32; the ONNX graph takes ``input_features``
``[batch, 80, 800]``.  faster-whisper's ``FeatureExtractor`` computes steps 3-4 the
same way (``tests/unit/test_smart_turn.py`` compares the two) but importing it
loads CTranslate2 and PyAV, so the few lines are here, numpy only.  The mel
filters are built on first use and cached.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from voicebot.types import Pcm

__all__ = [
    "FRAMES",
    "HOP_SAMPLES",
    "MEL_BINS",
    "SAMPLE_RATE_HZ",
    "WINDOW_MS",
    "WINDOW_SAMPLES",
    "last_window",
    "log_mel_features",
    "mel_filters",
    "turn_features",
]

SAMPLE_RATE_HZ = 16_000
WINDOW_MS = 8_000
"""How much of the end of a turn the model hears."""
WINDOW_SAMPLES = SAMPLE_RATE_HZ * WINDOW_MS // 1000
MEL_BINS = 80
HOP_SAMPLES = 160
FRAMES = WINDOW_SAMPLES // HOP_SAMPLES
"""Feature frames per window (800: 10 ms each)."""

_FFT_SAMPLES = 400
_NORM_EPS = 1e-7
_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE_DECADES = 8.0

Float32Array = npt.NDArray[np.float32]


def last_window(pcm: Pcm) -> Float32Array:
    """The last :data:`WINDOW_SAMPLES` of 16 kHz int16 ``pcm`` as float32 in [-1, 1),
    zeros before it when the turn is shorter (the end of the turn stays at the end)."""
    samples = np.asarray(pcm)
    if samples.ndim != 1 or samples.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 PCM, got {samples.dtype} with shape "
                         f"{samples.shape}")
    tail = samples[-WINDOW_SAMPLES:]
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    if len(tail):
        window[-len(tail):] = tail.astype(np.float32) / 32768.0
    return window


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = 3.0 * hz / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz < 1000.0, linear, log_part)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = 200.0 * mel / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel < 15.0, linear, log_part)


@functools.cache
def mel_filters() -> Float32Array:
    """``[80, 201]``: triangular Slaney-normalised mel filters over the 0-8 kHz FFT bins."""
    bins_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, _FFT_SAMPLES // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(SAMPLE_RATE_HZ / 2))),
                                      MEL_BINS + 2))
    low, centre, high = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz[None, :] - low) / (centre - low)
    falling = (high - bins_hz[None, :]) / (high - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (high - low))
    filters: Float32Array = weights.astype(np.float32)
    filters.flags.writeable = False
    return filters


@functools.cache
def _hann() -> Float32Array:
    periodic: Float32Array = np.hanning(_FFT_SAMPLES + 1)[:-1].astype(np.float32)
    return periodic


def log_mel_features(window: Float32Array) -> Float32Array:
    """``[80, 800]`` features of one :func:`last_window` (steps 2-4 of the module doc)."""
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {window.shape}")
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
    pad = _FFT_SAMPLES // 2
    padded = np.pad(x, (pad, pad), mode="reflect")
    frames = sliding_window_view(padded, _FFT_SAMPLES)[::HOP_SAMPLES][:FRAMES]
    spectrum = np.fft.rfft(frames * _hann(), axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    log_spec = np.log10(np.maximum(mel_filters() @ power.T, _LOG_FLOOR))
    log_spec = np.maximum(log_spec, log_spec.max() - _DYNAMIC_RANGE_DECADES)
    features: Float32Array = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features


def turn_features(pcm: Pcm) -> Float32Array:
    """``[1, 80, 800]``: the model's ``input_features`` for a turn's 16 kHz int16 audio."""
    return log_mel_features(last_window(pcm))[None, :, :]
