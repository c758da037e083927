"""The engine Protocols: the only surface the rest of voicebot sees of a model.

Conventions shared by every engine:

* Audio is mono PCM16 as a 1-D ``numpy.int16`` array (:data:`Pcm`), at the
  engine's own ``sample_rate_hz``.
* Engines never create thread pools.  Their constructors take ``threads``
  (intra-op threads, 1 by default) from the caller; the scheduler decides.
* Calls are blocking and complete: they return finished results (no lazy
  generators), so the caller can run them on a worker thread it owns.
* Third-party errors are translated to :class:`voicebot.errors.EngineError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from voicebot.types import EntityValue, IntentResult, Pcm, Transcript

__all__ = [
    "EntityValue",
    "IntentClassifier",
    "IntentResult",
    "Pcm",
    "SpeculativeStream",
    "SpeechDetector",
    "SpeechDetectorStream",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "TranscriptionStream",
]

class SpeechDetectorStream(Protocol):
    """Per-call voice activity detector state (e.g. Silero's RNN state)."""

    def probabilities(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        """Speech probability of each window in ``pcm``.

        ``len(pcm)`` must be a multiple of the detector's ``window_samples``;
        returns one probability per window.
        """
        ...

    def reset(self) -> None:
        """Forget the state (start of a new call)."""
        ...


class SpeechDetector(Protocol):
    """Voice activity detection model, shared by many calls."""

    @property
    def sample_rate_hz(self) -> int: ...

    @property
    def window_samples(self) -> int: ...

    def open_stream(self) -> SpeechDetectorStream: ...


class TranscriptionStream(Protocol):
    """One utterance being transcribed; fed incrementally while the caller speaks."""

    def feed(self, pcm: Pcm) -> None: ...

    def finish(self) -> Transcript:
        """End of the utterance: return the complete transcript."""
        ...

    def cancel(self) -> None:
        """Abandon the utterance and free its resources."""
        ...


@runtime_checkable
class SpeculativeStream(Protocol):
    """A stream that can transcribe what it was fed so far without ending.

    Used for speculative decoding: the final transcription starts when the
    caller falls silent, before the endpoint; it is kept if the caller stays
    silent and discarded if speech resumes.  Streams whose ``finish`` is cheap
    anyway (incremental decoders) need not implement it.
    """

    def transcribe_so_far(self) -> Transcript: ...


class Transcriber(Protocol):
    """Speech recognition model, shared by many calls."""

    @property
    def sample_rate_hz(self) -> int: ...

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        """Bias recognition towards ``phrases`` (a scenario's example phrases).

        Called once per scenario at load; ``open_stream(domain=name)`` uses it.
        """
        ...

    def open_stream(self, *, domain: str | None = None) -> TranscriptionStream: ...


class IntentClassifier(Protocol):
    """Few-shot intent classifier, trained from a scenario's examples."""

    def train(self, *, domain: str, examples: Mapping[str, Sequence[str]],
              out_of_scope: Sequence[str] = ()) -> None:
        """Learn ``domain``'s intents from ``examples``; ``out_of_scope``: phrases the
        scenario does not handle (an adapter may use them to reject such turns)."""
        ...

    def classify(self, text: str, *, domain: str) -> IntentResult: ...


class Synthesizer(Protocol):
    """Text to speech: one sentence in, its complete audio out."""

    @property
    def sample_rate_hz(self) -> int: ...

    @property
    def voice_id(self) -> str:
        """Identifies the voice and every setting that changes its audio (cache keys)."""
        ...

    def synthesize(self, text: str) -> Pcm: ...
