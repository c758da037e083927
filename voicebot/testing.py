"""Deterministic fake engines for tests and demos without models.

Each fake implements its Protocol from :mod:`voicebot.engines.base` exactly and
behaves the same on every run.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.commands import (
    BargedIn,
    CallWebhook,
    CancelReply,
    CancelTranscription,
    CloseConnection,
    Command,
    DetectSpeech,
    DiscardSpeculation,
    FeedTranscription,
    FinishTranscription,
    Mark,
    ReplyStarted,
    SendAudio,
    SendEvent,
    SpeculateTranscription,
    StartTranscription,
    Synthesize,
    Understand,
)
from voicebot.engines.base import IntentResult, Pcm, Transcript
from voicebot.errors import EngineError
from voicebot.jobs import CallJobs, EngineSet
from voicebot.session import Session

T = TypeVar("T")

__all__ = [
    "FakeIntentClassifier",
    "FakeSpeechDetector",
    "FakeSynthesizer",
    "FakeTranscriber",
    "SessionDriver",
    "fake_engines",
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
        self._samples += len(pcm)

    def finish(self) -> Transcript:
        return self.transcribe_so_far()

    def transcribe_so_far(self) -> Transcript:
        """Speculation takes this stream's scripted text; finish returns the same."""
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

    def train(self, *, domain: str, examples: Mapping[str, Sequence[str]]) -> None:
        self._domains[domain] = {
            intent: [set(_WORD.findall(e.lower())) for e in phrases]
            for intent, phrases in examples.items()
        }

    def classify(self, text: str, *, domain: str) -> IntentResult:
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
        return tone(len(text) * self._ms_per_char, frequency_hz=300.0)


class SessionDriver:
    """Runs a :class:`~voicebot.session.Session`'s commands synchronously, no I/O.

    Engine jobs run at once on ``jobs``; sent events, audio and the close are
    recorded.  Webhook requests are recorded for the test to answer.
    """

    def __init__(self, session: Session, jobs: CallJobs) -> None:
        self.session = session
        self.jobs = jobs
        self.events: list[p.ServerEvent] = []
        self.audio: list[bytes] = []
        self.cancelled_replies: list[int] = []
        self.webhooks: list[CallWebhook] = []
        self.replies: list[ReplyStarted] = []
        self.speculations: list[int] = []
        self.barge_ins: list[int] = []
        self.barged: list[BargedIn] = []
        self.marks: list[Mark] = []
        self.close: CloseConnection | None = None

    def text(self, message: str | p.ClientMessage) -> None:
        if not isinstance(message, str):
            message = p.encode_client_message(message)
        self.run(self.session.receive_text(message))

    def audio_in(self, pcm: Pcm, *, encoding: str = "pcm16", frame_ms: int = 20,
                 sample_rate_hz: int = 16_000) -> None:
        """Stream ``pcm`` as the caller, in ``frame_ms`` frames."""
        step = sample_rate_hz * frame_ms // 1000
        enc = AudioEncoding(encoding)
        for i in range(0, len(pcm), step):
            self.run(self.session.receive_bytes(encode(pcm[i : i + step], enc)))

    def silence(self, duration_ms: int, **kwargs: Any) -> None:
        rate = kwargs.get("sample_rate_hz", 16_000)
        self.audio_in(np.zeros(duration_ms * rate // 1000, dtype=np.int16), **kwargs)

    def of_type(self, cls: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, cls)]

    def run(self, commands: list[Command]) -> None:
        queue = deque(commands)
        while queue:
            queue.extend(self._one(queue.popleft()))

    def _one(self, c: Command) -> list[Command]:
        s, jobs = self.session, self.jobs
        if isinstance(c, SendEvent):
            # Round-trip through the native codec: what a native client would read.
            self.events.append(p.decode_server_event(p.encode_server_event(c.event)))
        elif isinstance(c, Mark):
            self.marks.append(c)
        elif isinstance(c, SendAudio):
            if c.reply not in self.cancelled_replies:
                self.audio.append(c.data)
        elif isinstance(c, CloseConnection):
            self.close = c
        elif isinstance(c, DetectSpeech):
            return s.speech_probabilities(c.pcm, jobs.detect(c.pcm))
        elif isinstance(c, StartTranscription):
            jobs.start_transcription(c.utterance, c.domain, c.pcm)
        elif isinstance(c, FeedTranscription):
            jobs.feed_transcription(c.utterance, c.pcm)
        elif isinstance(c, CancelTranscription):
            jobs.cancel_transcription(c.utterance)
        elif isinstance(c, SpeculateTranscription):
            self.speculations.append(c.utterance)
            return s.speculated(c.utterance, jobs.speculate_transcription(c.utterance))
        elif isinstance(c, DiscardSpeculation):
            jobs.discard_speculation(c.utterance)
        elif isinstance(c, FinishTranscription):
            return s.transcribed(c.utterance, jobs.finish_transcription(c.utterance))
        elif isinstance(c, Understand):
            result = jobs.understand(c.text, c.domain)
            return s.understood(c.turn, result.intent, result.entities)
        elif isinstance(c, Synthesize):
            return s.synthesized(c.reply, c.index, jobs.synthesize(c.text, c.sample_rate_hz))
        elif isinstance(c, CancelReply):
            self.cancelled_replies.append(c.reply)
        elif isinstance(c, CallWebhook):
            self.webhooks.append(c)
        elif isinstance(c, ReplyStarted):
            self.replies.append(c)
        elif isinstance(c, BargedIn):
            self.barge_ins.append(c.reply)
            self.barged.append(c)
        return []


def fake_engines(*transcripts: str) -> tuple[EngineSet, FakeTranscriber]:
    """Fake engines; the transcriber answers ``transcripts`` in order."""
    asr = FakeTranscriber(transcripts)
    engines = EngineSet(FakeSpeechDetector(), asr, FakeIntentClassifier(), FakeSynthesizer())
    return engines, asr
