"""Whisper support code: synthetic (random-weight) CTranslate2 models and the token layout.

Nothing here imports ctranslate2 or faster-whisper at import time; the ASR
engine itself is :mod:`voicebot.engines.whisper_asr`.
"""

from __future__ import annotations

from voicebot.whisper.synthetic import (
    ARCHITECTURES,
    WhisperArchitecture,
    build_synthetic_whisper,
    is_synthetic,
)

__all__ = ["ARCHITECTURES", "WhisperArchitecture", "build_synthetic_whisper", "is_synthetic"]
