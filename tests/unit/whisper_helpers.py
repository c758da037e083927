"""Shared helper of the synthetic-whisper transcriber tests: random audio.

Used by test_whisper_transcriber.py and test_whisper_guard.py.
"""

from __future__ import annotations

import numpy as np

from voicebot.engines.base import Pcm

__all__ = ["white_noise"]


def white_noise(seconds: float, seed: int = 0) -> Pcm:
    """``seconds`` of 16 kHz int16 Gaussian noise (std 3000), the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    pcm: Pcm = np.clip(rng.normal(0.0, 3000.0, int(16000 * seconds)), -32768, 32767).astype(
        np.int16
    )
    return pcm
