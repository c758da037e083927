"""The turn-taking benchmark's telephone line: the clips as a μ-law caller's reach us.

Callers arrive at 8 kHz G.711 μ-law; the server decodes and resamples them to 16 kHz
before the VAD and the turn model.  :func:`on_phone` puts a clip through that line
(same id, same labels) and :func:`line_specs` names the policies replayed on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm

from .turns import PolicySpec
from .turns_data import TurnClip
from .turns_voices import RATE_HZ

__all__ = ["LINE_SUFFIX", "line_specs", "on_phone", "phone_pcm"]

LINE_SUFFIX = "@phone"


def phone_pcm(pcm: Pcm, *, rate_hz: int) -> Pcm:
    """``pcm`` as a telephone caller's reaches the VAD and the turn model: down to 8 kHz
    (the project's soxr resampler), G.711 μ-law in 20 ms frames and the server's stream
    resampler back up (:func:`bench.whisper_digits.phone_line`), cut or padded to the
    same length so that the labels still hold."""
    from .whisper_digits import LINE_RATE_HZ, phone_line

    narrow = resample(pcm, in_rate_hz=rate_hz, out_rate_hz=LINE_RATE_HZ)
    wide = phone_line(narrow)[:len(pcm)]
    return np.concatenate([wide, np.zeros(len(pcm) - len(wide), np.int16)])


def on_phone(clip: TurnClip) -> TurnClip:
    """The clip through a telephone line (same id, same labels)."""
    return dataclasses.replace(clip, pcm=phone_pcm(clip.pcm, rate_hz=RATE_HZ))


def line_specs(specs: Sequence[PolicySpec], line: str) -> list[PolicySpec]:
    """``specs`` renamed for ``line`` (``wide``: as they are; ``phone``: suffixed
    :data:`LINE_SUFFIX`, their families ``…, phone line``)."""
    if line == "wide":
        return list(specs)
    return [dataclasses.replace(s, name=f"{s.name}{LINE_SUFFIX}",
                                family=f"{s.family}, {line} line") for s in specs]
