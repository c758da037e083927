"""The value types that travel between voicebot's parts: audio, transcripts, intents.

This module imports nothing of voicebot, so any part (audio, VAD, dialog, NLU,
engines, the session) can use these types without depending on another part;
:mod:`voicebot.engines.base` re-exports them beside the engine Protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["EntityValue", "IntentResult", "Pcm", "Transcript", "Understanding"]

Pcm: TypeAlias = npt.NDArray[np.int16]
"""Mono 16-bit PCM samples."""

EntityValue: TypeAlias = str | int | bool


@dataclass(frozen=True, slots=True)
class Transcript:
    """A finished transcription of one utterance."""

    text: str
    confidence: float | None = None
    audio_ms: int = 0


@dataclass(frozen=True, slots=True)
class IntentResult:
    """The best intent for a text, with its confidence in [0, 1].

    ``scores`` holds every intent's score, best first.
    """

    intent: str
    confidence: float
    scores: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Understanding:
    """What the NLU made of a caller's turn: the result of an ``Understand`` job."""

    intent: IntentResult | None
    entities: Mapping[str, EntityValue]
