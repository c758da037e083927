"""Smart Turn v3 on ONNX Runtime: :class:`SmartTurnDetector`, a :class:`TurnDetector`.

Smart Turn v3.2 (pipecat-ai, BSD-2-Clause; a Whisper Tiny encoder, MIT, with a
classifier head; int8, 8.7 MB; manifest model ``smart-turn-v3.2``) takes
``input_features`` ``[batch, 80, 800]`` (:mod:`voicebot.turn.features`: log-mel
features of the turn's last 8 s at 16 kHz) and returns ``logits`` ``[batch, 1]``,
which despite the name is already the sigmoid probability that the turn is
complete.  One call's audio is one batch row.

The session is opened by :func:`voicebot.ort_session.open_session` (``threads``
intra-op threads from the scheduler, one inter-op thread, no spinning) once per
detector and shared by every call (``InferenceSession.run`` is thread-safe; the
detector keeps no per-call state).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.errors import ConfigError, EngineError, EngineUnavailableError
from voicebot.ort_session import open_session
from voicebot.turn.detector import DEFAULT_THRESHOLD, TurnVerdict
from voicebot.turn.features import (
    FRAMES,
    MEL_BINS,
    SAMPLE_RATE_HZ,
    WINDOW_MS,
    WINDOW_SAMPLES,
    turn_features,
)
from voicebot.types import Pcm

__all__ = ["INPUT_NAME", "MODEL_NAME", "OUTPUT_NAME", "SmartTurnDetector"]

logger = logging.getLogger(__name__)

MODEL_NAME = "smart-turn-v3.2"
"""The manifest model the registry loads by default."""
INPUT_NAME = "input_features"
OUTPUT_NAME = "logits"


def _onnx_file(path: Path) -> Path:
    """``path`` itself, or the one ``.onnx`` file in the folder ``path`` (a pulled model)."""
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise EngineUnavailableError(
                f"expected one Smart Turn .onnx file in {path}, found {len(found)}")
        return found[0]
    if not path.is_file():
        raise EngineUnavailableError(f"Smart Turn model not found: {path}")
    return path


def _check_graph(session: Any, path: Path) -> None:
    """The graph must take ``input_features`` ``[?, 80, 800]`` and give ``logits`` ``[?, 1]``."""
    inputs = {i.name: list(i.shape) for i in session.get_inputs()}
    outputs = {o.name: list(o.shape) for o in session.get_outputs()}
    shape = inputs.get(INPUT_NAME)
    if (len(inputs) != 1 or shape is None or shape[1:] != [MEL_BINS, FRAMES]
            or OUTPUT_NAME not in outputs or outputs[OUTPUT_NAME][1:] != [1]):
        raise EngineUnavailableError(
            f"{path} is not a Smart Turn v3 model (inputs {inputs}, outputs {outputs})")


class SmartTurnDetector:
    """:class:`voicebot.turn.detector.TurnDetector` on a Smart Turn v3 ONNX graph.

    ``model_path``: the ``.onnx`` file or the folder of a pulled model.
    ``threshold``: the turn is complete when the probability exceeds it (0.5, as
    Smart Turn's own inference).
    """

    def __init__(self, *, model_path: Path | str, threads: int = 1,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"Smart Turn threshold must be in (0, 1), got {threshold}")
        path = _onnx_file(Path(model_path))
        self._session = open_session(path, threads=threads, what="Smart Turn model")
        _check_graph(self._session, path)
        self._model_path = path
        self._threads = threads
        self._threshold = float(threshold)
        logger.info("loaded Smart Turn from %s (threads=%d, threshold=%.2f)",
                    path, threads, threshold)

    @property
    def sample_rate_hz(self) -> int:
        return SAMPLE_RATE_HZ

    @property
    def window_ms(self) -> int:
        return WINDOW_MS

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def threads(self) -> int:
        return self._threads

    def complete_probability(self, features: np.ndarray[Any, Any]) -> float:
        """The model's raw call on ready ``[1, 80, 800]`` features (benchmarks time it)."""
        try:
            (probs,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: features})
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise EngineError(f"Smart Turn inference failed: {exc}") from exc
        prob = float(np.asarray(probs).reshape(-1)[0])
        if not np.isfinite(prob):
            raise EngineError(f"Smart Turn returned a non-finite probability {prob}")
        return min(1.0, max(0.0, prob))

    def predict(self, pcm: Pcm) -> TurnVerdict:
        """The verdict on a turn's audio so far (16 kHz int16, the end of the turn last)."""
        prob = self.complete_probability(turn_features(pcm))
        heard_ms = min(len(pcm), WINDOW_SAMPLES) * 1000 // SAMPLE_RATE_HZ
        return TurnVerdict(complete_prob=prob, complete=prob > self._threshold,
                           heard_ms=heard_ms)
