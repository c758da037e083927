"""Deterministic fake engines for tests and demos without models.

Each fake implements its Protocol from :mod:`voicebot.engines.base` exactly and
behaves the same on every run; ``tests/contract`` runs the same contract tests
against each fake and each real adapter, so the fakes cannot drift.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineError
from voicebot.turn.detector import DEFAULT_THRESHOLD, TurnVerdict
from voicebot.types import IntentResult, Pcm, Transcript

__all__ = [
    "FakeIntentClassifier",
    "FakeSpeechDetector",
    "FakeSynthesizer",
    "FakeTranscriber",
    "FakeTurnDetector",
    "tone",
]


def tone(duration_ms: int, *, sample_rate_hz: int = 16_000, frequency_hz: float = 440.0,
         amplitude: int = 8000) -> Pcm:
    """A sine tone: stands in for speech where a fake detector listens."""
    n = duration_ms * sample_rate_hz // 1000
    t = np.arange(n, dtype=np.float64) / sample_rate_hz
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.int16)


class _EnergyStream:
    def __init__(self, window: int, threshold: float) -> None:
        self._window = window
        self._threshold = threshold

    def probabilities(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        if pcm.ndim != 1 or len(pcm) % self._window:
            raise ValueError(f"pcm must be 1-D with a multiple of {self._window} samples, "
                             f"got shape {pcm.shape}")
        frames = pcm.reshape(-1, self._window).astype(np.float64)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        speech: npt.NDArray[np.float32] = (rms >= self._threshold).astype(np.float32)
        return speech

    def reset(self) -> None:
        pass


class FakeSpeechDetector:
    """Energy detector: a window is speech (1.0) when its RMS reaches ``threshold``."""

    def __init__(self, *, threshold: float = 500.0) -> None:
        self._threshold = threshold

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    @property
    def window_samples(self) -> int:
        return 512

    def open_stream(self) -> _EnergyStream:
        return _EnergyStream(self.window_samples, self._threshold)


class _ScriptedStream:
    def __init__(self, owner: FakeTranscriber) -> None:
        self._owner = owner
        self._samples = 0
        self._text: str | None = None

    def feed(self, pcm: Pcm) -> None:
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise EngineError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        self._samples += len(pcm)

    def finish(self) -> Transcript:
        return self.transcribe_so_far()

    def transcribe_so_far(self) -> Transcript:
        """Speculation takes this stream's scripted text; finish returns the same.

        No audio fed yet: an empty transcript, and the script is not consumed."""
        if self._text is None and self._samples == 0:
            return Transcript("", None, 0)
        if self._text is None:
            self._text = self._owner.next_text()
            self._owner.decodes += 1
        text = self._text
        return Transcript(text, 1.0 if text else None, self._samples * 1000 // 16_000)

    def cancel(self) -> None:
        self._owner.cancelled += 1


class FakeTranscriber:
    """Returns scripted transcripts, one per finished utterance, in order ("" when out)."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._texts: deque[str] = deque(texts)
        self.domains: dict[str, list[str]] = {}
        self.opened: list[str | None] = []
        self.cancelled = 0
        self.decodes = 0

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    def say(self, *texts: str) -> None:
        self._texts.extend(texts)

    def next_text(self) -> str:
        return self._texts.popleft() if self._texts else ""

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        self.domains[name] = list(phrases)

    def open_stream(self, *, domain: str | None = None) -> _ScriptedStream:
        if domain is not None and domain not in self.domains:
            raise EngineError(f"unknown ASR domain {domain!r}")
        self.opened.append(domain)
        return _ScriptedStream(self)


_WORD = re.compile(r"[a-z']+")


class FakeIntentClassifier:
    """Word-overlap classifier: confidence = best Jaccard overlap with an example."""

    def __init__(self) -> None:
        self._domains: dict[str, dict[str, list[set[str]]]] = {}

    def train(self, *, domain: str, examples: Mapping[str, Sequence[str]],
              out_of_scope: Sequence[str] = ()) -> None:
        if not examples or not all(any(e.strip() for e in p) for p in examples.values()):
            raise ValueError(f"domain {domain!r}: no intents, or an intent with no examples")
        self._domains[domain] = {
            intent: [set(_WORD.findall(e.lower())) for e in phrases]
            for intent, phrases in examples.items()
        }

    def classify(self, text: str, *, domain: str) -> IntentResult:
        if domain not in self._domains:
            raise EngineError(f"intent domain {domain!r} was not trained")
        words = set(_WORD.findall(text.lower()))
        scores = []
        for intent, examples in self._domains[domain].items():
            best = max((len(words & ex) / len(words | ex) for ex in examples if words | ex),
                       default=0.0)
            scores.append((intent, best))
        scores.sort(key=lambda item: (-item[1], item[0]))
        return IntentResult(scores[0][0], scores[0][1], tuple(scores))


class FakeSynthesizer:
    """A 16 kHz tone of ``ms_per_char`` milliseconds per character (about speech pace)."""

    def __init__(self, *, ms_per_char: int = 40) -> None:
        self._ms_per_char = ms_per_char
        self.spoken: list[str] = []

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    @property
    def voice_id(self) -> str:
        return f"fake-tone:{self._ms_per_char}ms"

    def synthesize(self, text: str) -> Pcm:
        self.spoken.append(text)
        if not any(c.isalnum() for c in text):  # nothing to say: no audio, as real engines
            return np.zeros(0, dtype=np.int16)
        return tone(len(text) * self._ms_per_char, frequency_hz=300.0)


class FakeTurnDetector:
    """Scripted end-of-turn model: the probabilities given, one per ``predict``, in order;
    ``default_prob`` when they run out (1.0: every pause ends the turn, as silence would).

    ``heard`` records how many samples each call got (the window's worth at most)."""

    def __init__(self, *, probs: Iterable[float] = (), default_prob: float = 1.0,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self._probs: deque[float] = deque(float(p) for p in probs)
        self._default_prob = float(default_prob)
        self._threshold = float(threshold)
        self.heard: list[int] = []

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    @property
    def window_ms(self) -> int:
        return 8_000

    @property
    def threshold(self) -> float:
        return self._threshold

    def script(self, *probs: float) -> None:
        self._probs.extend(float(p) for p in probs)

    def predict(self, pcm: Pcm) -> TurnVerdict:
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        window = self.window_ms * self.sample_rate_hz // 1000
        self.heard.append(min(len(pcm), window))
        prob = self._probs.popleft() if self._probs else self._default_prob
        return TurnVerdict(complete_prob=prob, complete=prob > self._threshold,
                           heard_ms=self.heard[-1] * 1000 // self.sample_rate_hz)
