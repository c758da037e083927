"""Helpers of the engine contract suite: real adapters built as the stacks build them, clips.

Real adapters are built with ``build_engine`` and the options of the stack in
:data:`server.stacks.STACKS` that uses the engine, the models from
``models/cache``; one whose model or runtime is missing is skipped with the
reason ``build_engine`` gave (it names ``voicebot models pull NAME``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.stacks import STACKS
from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.errors import EngineUnavailableError

__all__ = ["OTHER_SPOKEN", "RATE_HZ", "SCENARIO", "SPOKEN", "build_real", "clip", "splits",
           "stack_options"]

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models" / "cache"
MANIFEST = REPO / "models" / "manifest.yaml"
SCENARIO = REPO / "scenarios" / "bank_card.yaml"

RATE_HZ = 16_000
"""The rate of every detector and transcriber (the server sets the ASR rate to the VAD's)."""
SPOKEN = "four two one seven"
"""The words of the ``speech`` clip; fake transcribers are scripted to hear them."""
OTHER_SPOKEN = "yes please"
"""The words of the ``other_speech`` clip."""
_WINDOW = 512  # clips are padded to whole VAD windows
_GAP_MS = 250


def stack_options(kind: str, name: str) -> dict[str, Any]:
    """The options a stack gives engine ``name`` of ``kind`` (``{}`` where none do)."""
    for stack in STACKS.values():
        if stack.engines.names()[kind] == name and kind in stack.engines.options:
            return dict(stack.engines.options[kind])
    return {}


def build_real(kind: str, name: str, **overrides: Any) -> Any:
    """Real engine ``name`` of ``kind`` as a stack builds it; skips when a model or runtime
    is missing (``EngineUnavailableError``)."""
    options = {**stack_options(kind, name), **overrides}
    try:
        return build_engine(kind, name, EngineOptions(models_dir=MODELS_DIR, manifest=MANIFEST,
                                                      options=options))
    except EngineUnavailableError as exc:
        pytest.skip(f"real {kind} engine {name!r} unavailable: {exc}")


def clip(text: str) -> Pcm:
    """espeak-ng speaking ``text`` at 16 kHz with silence around, in whole 512-sample windows."""
    tts = build_real("tts", "espeak")
    spoken = resample(tts.synthesize(text), in_rate_hz=tts.sample_rate_hz, out_rate_hz=RATE_HZ)
    gap = np.zeros(RATE_HZ * _GAP_MS // 1000, dtype=np.int16)
    pcm = np.concatenate([gap, spoken, gap])
    padded: Pcm = np.concatenate([pcm, np.zeros(-len(pcm) % _WINDOW, dtype=np.int16)])
    return padded


def splits(pcm: Pcm, sizes: Sequence[int]) -> list[Pcm]:
    """``pcm`` cut into consecutive pieces of ``sizes`` samples (cycled), the rest last."""
    pieces, start, index = [], 0, 0
    while start < len(pcm):
        end = start + sizes[index % len(sizes)]
        pieces.append(pcm[start:end])
        start, index = end, index + 1
    return pieces
