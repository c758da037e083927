"""Silero VAD on onnxruntime, streaming, for either of its two ONNX graphs.

Two exports of Silero VAD v6 are in use, with different graphs:

* ``sequence`` -- the file faster-whisper ships
  (``faster_whisper/assets/silero_vad_v6.onnx``), the default when no model is
  named: ``input`` is ``[n_windows, 576]`` and the model runs its LSTM over the
  rows in order, carrying ``h`` and ``c`` (each ``[1, 1, 128]``) from row to row
  and returning them as ``hn`` / ``cn``, one probability per row;
* ``stateful`` -- Silero's own release (``silero_vad.onnx`` of the silero-vad
  package, manifest model ``silero-vad``): inputs ``input`` ``[batch, 576]``,
  ``state`` ``[2, batch, 128]`` and ``sr``; the rows of a batch are separate
  streams, so one call's windows are run one at a time.  On 8 kHz phone speech it
  hears short words that the sequence export scores below 0.5 (isolated "a", "is",
  "f", "s": docs/benchmarks/accuracy.md).

Either way audio is float32 in [-1, 1) at 16 kHz, cut into 512-sample windows,
each prefixed with the last 64 samples of the previous window (zeros before the
first).  A :class:`SileroStream` keeps the recurrent state and the 64-sample
context between calls, so any split of the audio into calls gives the same
probabilities.  The ORT session is loaded once per :class:`SileroSpeechDetector`
and shared by all its streams (``InferenceSession.run`` is thread-safe); a stream
belongs to one call and is not thread-safe.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.errors import ConfigError, EngineError, EngineUnavailableError
from voicebot.ort_session import open_session
from voicebot.types import Pcm

__all__ = ["SileroGraph", "SileroSpeechDetector", "SileroStream", "default_model_path"]

logger = logging.getLogger(__name__)

_SAMPLE_RATE_HZ = 16_000
_WINDOW_SAMPLES = 512
_CONTEXT_SAMPLES = 64
_MODEL_FILE = "silero_vad_v6.onnx"


class SileroGraph(enum.Enum):
    """Which ONNX export a model file is: how its inputs and state look."""

    SEQUENCE = ("h", "c")  # faster-whisper's: rows are one stream's windows in order
    STATEFUL = ("state", "sr")  # Silero's release: rows are separate streams

    @classmethod
    def of(cls, input_names: set[str], path: Path) -> SileroGraph:
        for graph in cls:
            if {"input", *graph.value} <= input_names:
                return graph
        raise EngineUnavailableError(
            f"{path} is not a Silero VAD model this engine knows (inputs {sorted(input_names)})")

    def fresh_state(self) -> npt.NDArray[np.float32]:
        shape = (2, 1, 128) if self is SileroGraph.STATEFUL else (1, 1, 128)
        return np.zeros(shape, dtype=np.float32)


def default_model_path() -> Path:
    """The Silero v6 ONNX file inside the installed faster-whisper package.

    Located without importing faster-whisper (which would pull in ctranslate2).
    """
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError(
            "faster-whisper is not installed: it ships the Silero VAD model; "
            "install it or pass model_path"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "assets" / _MODEL_FILE
        if path.is_file():
            return path
    raise EngineUnavailableError(f"faster-whisper does not ship assets/{_MODEL_FILE}")


class SileroStream:
    """Per-call Silero state: the recurrent state and the last 64 samples."""

    __slots__ = ("_c", "_context", "_graph", "_h", "_session")

    _RATE = np.array(_SAMPLE_RATE_HZ, dtype=np.int64)

    def __init__(self, session: Any, graph: SileroGraph = SileroGraph.SEQUENCE) -> None:
        self._session = session
        self._graph = graph
        self._h = graph.fresh_state()
        self._c = graph.fresh_state()  # the sequence graph's second state; unused otherwise
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)

    def probabilities(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        """Speech probability of each 512-sample window of ``pcm`` (16 kHz).

        Continues the stream: the state left by the previous call is used.
        """
        samples = np.asarray(pcm)
        if samples.ndim != 1 or samples.size % _WINDOW_SAMPLES:
            raise ValueError(
                f"pcm must be 1-D with a multiple of {_WINDOW_SAMPLES} samples, "
                f"got shape {samples.shape}"
            )
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        windows = (samples.astype(np.float32) / 32768.0).reshape(-1, _WINDOW_SAMPLES)
        contexts = np.empty((windows.shape[0], _CONTEXT_SAMPLES), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = windows[:-1, -_CONTEXT_SAMPLES:]
        batch = np.concatenate((contexts, windows), axis=1)
        try:
            if self._graph is SileroGraph.SEQUENCE:
                probs, self._h, self._c = self._session.run(
                    None, {"input": batch, "h": self._h, "c": self._c})
            else:
                probs = np.empty(len(batch), dtype=np.float32)
                for row in range(len(batch)):
                    out, self._h = self._session.run(
                        None, {"input": batch[row:row + 1], "state": self._h, "sr": self._RATE})
                    probs[row] = out[0, 0]
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise EngineError(f"Silero VAD inference failed: {exc}") from exc
        self._context = windows[-1, -_CONTEXT_SAMPLES:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    def reset(self) -> None:
        """Forget the state (start of a new call)."""
        self._h = self._graph.fresh_state()
        self._c = self._graph.fresh_state()
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)


class SileroSpeechDetector:
    """:class:`voicebot.engines.base.SpeechDetector` on Silero VAD v6 (16 kHz, 512 samples).

    ``model_path``: an ONNX file of either graph (:class:`SileroGraph`), or a folder
    holding one (a pulled manifest model); None is faster-whisper's bundled copy.
    """

    def __init__(self, *, model_path: Path | str | None = None, threads: int = 1) -> None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        path = Path(model_path) if model_path is not None else default_model_path()
        if path.is_dir():
            found = sorted(path.glob("*.onnx"))
            if len(found) != 1:
                raise EngineUnavailableError(
                    f"expected one Silero VAD .onnx file in {path}, found {len(found)}")
            path = found[0]
        if not path.is_file():
            raise EngineUnavailableError(f"Silero VAD model not found: {path}")
        self._session = open_session(path, threads=threads, what="Silero VAD model")
        self._graph = SileroGraph.of({i.name for i in self._session.get_inputs()}, path)
        self._model_path = path
        self._threads = threads
        logger.info("loaded Silero VAD from %s (%s graph, threads=%d)",
                    path, self._graph.name.lower(), threads)

    @property
    def sample_rate_hz(self) -> int:
        return _SAMPLE_RATE_HZ

    @property
    def window_samples(self) -> int:
        return _WINDOW_SAMPLES

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def graph(self) -> SileroGraph:
        return self._graph

    @property
    def threads(self) -> int:
        return self._threads

    def open_stream(self) -> SileroStream:
        """A fresh stream (zero state) for one call."""
        return SileroStream(self._session, self._graph)
