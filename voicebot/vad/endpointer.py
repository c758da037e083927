"""Endpointing: a pure hysteresis state machine over per-window speech probabilities.

No clock: time is counted in samples at the detector's rate.  The
:class:`Endpointer` is fed detector windows with their speech probabilities and
answers with :data:`EndpointEvent` values:

* :class:`SpeechStarted` once speech has lasted ``min_speech_ms``, carrying up
  to ``speech_pad_ms`` of audio before the onset plus everything since;
* :class:`SpeechAudio` for every later window while the utterance is open;
* :class:`SilenceStarted` / :class:`SpeechResumed` as the caller pauses and goes on;
* :class:`SpeechEnded` after ``min_silence_ms`` of silence, or when the
  utterance reaches ``max_utterance_s``.

While :attr:`Endpointer.expect_digits` is set (the dialog waits for a spoken digit
string), the silence that ends an utterance is ``digits_min_silence_ms`` (800 ms):
the 500 ms endpoint cut 5 of 16 four-digit strings of recorded human digits (150-350 ms
apart) into turns of their own in some alignments of the VAD windows, each too short
for the slot; 600 ms cut none (docs/benchmarks/accuracy.md), and callers pause longer
between groups of a card number than within them.

Hysteresis: speech starts at ``threshold`` and only ends below
``neg_threshold``; silence, once started, only ends at ``threshold`` again.
The audio of one utterance (``SpeechStarted.audio`` followed by every
``SpeechAudio``) is contiguous, without gaps or duplicates, and never repeats
audio that a previous utterance already carried.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from voicebot.errors import ConfigError
from voicebot.types import Pcm

__all__ = [
    "EndpointConfig",
    "EndpointEvent",
    "Endpointer",
    "SilenceStarted",
    "SpeechAudio",
    "SpeechEnded",
    "SpeechResumed",
    "SpeechStarted",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Endpointing thresholds and durations."""

    threshold: float = 0.5  # speech starts (or resumes) at this probability
    neg_threshold: float = 0.35  # speech stops below this; must be < threshold
    min_speech_ms: int = 200  # speech must last this long to count (ignores clicks)
    min_silence_ms: int = 500  # silence that ends an utterance
    digits_min_silence_ms: int = 800  # ... while a digit string is expected (expect_digits)
    speech_pad_ms: int = 300  # audio kept from before the onset, included in the utterance
    max_utterance_s: float = 15.0  # an utterance is cut at this length

    def __post_init__(self) -> None:
        problems = [
            (0.0 < self.threshold <= 1.0, f"threshold must be in (0, 1], got {self.threshold}"),
            (
                0.0 <= self.neg_threshold < self.threshold,
                f"neg_threshold must be in [0, threshold={self.threshold}), "
                f"got {self.neg_threshold}",
            ),
            (self.min_speech_ms >= 0, f"min_speech_ms must be >= 0, got {self.min_speech_ms}"),
            (self.min_silence_ms > 0, f"min_silence_ms must be > 0, got {self.min_silence_ms}"),
            (
                self.digits_min_silence_ms > 0,
                f"digits_min_silence_ms must be > 0, got {self.digits_min_silence_ms}",
            ),
            (self.speech_pad_ms >= 0, f"speech_pad_ms must be >= 0, got {self.speech_pad_ms}"),
            (
                math.isfinite(self.max_utterance_s)
                and self.max_utterance_s * 1000 > self.min_speech_ms,
                f"max_utterance_s must be finite and longer than min_speech_ms, "
                f"got {self.max_utterance_s}",
            ),
        ]
        for ok, message in problems:
            if not ok:
                raise ConfigError(message)

    def updated(self, values: Mapping[str, float]) -> EndpointConfig:
        """This configuration with ``values`` (a scenario's ``settings.endpointing``,
        numbers as YAML gives them) laid over it; the ``_ms`` durations made whole."""
        typed: dict[str, Any] = {
            key: int(value) if key.endswith("_ms") else float(value)
            for key, value in values.items()
        }
        return replace(self, **typed)


# Events carrying audio use identity equality: comparing numpy arrays with ``==``
# does not give a bool.
@dataclass(frozen=True, slots=True, eq=False)
class SpeechStarted:
    """Speech has lasted ``min_speech_ms``: an utterance is open.

    ``audio`` is up to ``speech_pad_ms`` of audio before ``onset_sample`` followed
    by all the audio from the onset to the end of the current window.
    """

    onset_sample: int
    audio: Pcm


@dataclass(frozen=True, slots=True, eq=False)
class SpeechAudio:
    """More audio of the open utterance (speech, or silence before the endpoint)."""

    audio: Pcm


@dataclass(frozen=True, slots=True)
class SilenceStarted:
    """The first window below ``neg_threshold`` after speech."""

    at_sample: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back before the silence ended the utterance."""

    at_sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The utterance is over.

    ``end_sample`` is where the trailing silence began (``reason="silence"``) or
    the current sample (``reason="max_length"``).
    """

    end_sample: int
    reason: Literal["silence", "max_length"]


EndpointEvent: TypeAlias = (
    SpeechStarted | SpeechAudio | SilenceStarted | SpeechResumed | SpeechEnded
)


class _State(enum.Enum):
    IDLE = enum.auto()
    PENDING = enum.auto()  # above threshold, not yet for min_speech_ms
    SPEECH = enum.auto()  # utterance open


_EMPTY: Pcm = np.zeros(0, dtype=np.int16)


def _join(parts: Sequence[Pcm]) -> Pcm:
    audio = np.concatenate(parts) if parts else _EMPTY.copy()
    audio.flags.writeable = False
    return audio


def _flush_run(run: list[Pcm], events: list[EndpointEvent]) -> None:
    """Send the pending utterance windows as one :class:`SpeechAudio`."""
    if run:
        events.append(SpeechAudio(_join(run)))
        run.clear()


class Endpointer:
    """Turns per-window speech probabilities into utterance events (one per call)."""

    def __init__(self, config: EndpointConfig, *, sample_rate_hz: int, window_samples: int) -> None:
        if sample_rate_hz <= 0:
            raise ConfigError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if window_samples <= 0:
            raise ConfigError(f"window_samples must be positive, got {window_samples}")
        self._config = config
        self._sample_rate_hz = sample_rate_hz
        self._window_samples = window_samples
        self._pad_samples = sample_rate_hz * config.speech_pad_ms // 1000
        self._max_samples = round(config.max_utterance_s * sample_rate_hz)
        self.expect_digits = False
        """Set by the caller's owner while a digit string is expected: the utterance then
        ends after ``digits_min_silence_ms`` of silence instead of ``min_silence_ms``."""
        self.reset()

    @property
    def config(self) -> EndpointConfig:
        return self._config

    @property
    def sample_rate_hz(self) -> int:
        return self._sample_rate_hz

    @property
    def window_samples(self) -> int:
        return self._window_samples

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open (``SpeechStarted`` sent, ``SpeechEnded`` not yet)."""
        return self._state is _State.SPEECH

    @property
    def samples_seen(self) -> int:
        """Samples processed since construction or the last :meth:`reset`."""
        return self._samples_seen

    @property
    def speech_samples(self) -> int:
        """Samples since the onset of the open utterance (0 when none is open)."""
        return self._samples_seen - self._onset if self.in_speech else 0

    def reset(self) -> None:
        """Forget everything (start of a new call)."""
        self._state = _State.IDLE
        self._samples_seen = 0
        self._onset = 0  # first sample of the (pending or open) utterance's speech
        self._silence_start: int | None = None
        self._preroll: Pcm = _EMPTY  # up to speech_pad_ms of audio not yet in an utterance
        self._onset_preroll: Pcm = _EMPTY  # the pre-roll when the pending onset began
        self._onset_audio: list[Pcm] = []  # windows since the pending onset

    def process(
        self, pcm: Pcm, probabilities: Sequence[float] | npt.NDArray[np.floating[Any]]
    ) -> list[EndpointEvent]:
        """Consume ``len(probabilities)`` windows of ``pcm``; return the events, in order."""
        window = self._window_samples
        samples = np.asarray(pcm, dtype=np.int16)
        if samples.ndim != 1 or samples.size != len(probabilities) * window:
            raise ValueError(
                f"pcm must hold exactly {len(probabilities)} windows of {window} samples, "
                f"got shape {samples.shape}"
            )
        events: list[EndpointEvent] = []
        run: list[Pcm] = []  # consecutive utterance windows not yet sent as SpeechAudio
        for index, probability in enumerate(probabilities):
            start = self._samples_seen
            end = start + window
            chunk = samples[index * window : (index + 1) * window]
            self._samples_seen = end
            if self._state is _State.SPEECH:
                self._speech_window(float(probability), chunk, start, end, run, events)
            else:
                self._quiet_window(float(probability), chunk, start, end, events)
        _flush_run(run, events)
        return events

    def _quiet_window(
        self, probability: float, chunk: Pcm, start: int, end: int, events: list[EndpointEvent]
    ) -> None:
        """One window while no utterance is open (IDLE or PENDING)."""
        config = self._config
        if self._state is _State.IDLE:
            if probability < config.threshold:
                self._keep_preroll(self._preroll, chunk)
                return
            self._state = _State.PENDING
            self._onset = start
            self._onset_preroll = self._preroll
            self._onset_audio = []
        elif probability < config.neg_threshold:
            # A blip shorter than min_speech_ms: drop it, keep its audio as pre-roll.
            logger.debug("ignored %d samples of speech (< min_speech_ms)", start - self._onset)
            self._keep_preroll(self._onset_preroll, *self._onset_audio, chunk)
            self._state = _State.IDLE
            self._onset_preroll = _EMPTY
            self._onset_audio = []
            return
        self._onset_audio.append(chunk)
        if (end - self._onset) * 1000 >= config.min_speech_ms * self._sample_rate_hz:
            audio = _join([self._onset_preroll, *self._onset_audio])
            events.append(SpeechStarted(onset_sample=self._onset, audio=audio))
            self._state = _State.SPEECH
            self._silence_start = None
            self._preroll = self._onset_preroll = _EMPTY
            self._onset_audio = []
            if end - self._onset >= self._max_samples:
                self._end(SpeechEnded(end, "max_length"), events)

    def _speech_window(
        self,
        probability: float,
        chunk: Pcm,
        start: int,
        end: int,
        run: list[Pcm],
        events: list[EndpointEvent],
    ) -> None:
        """One window while an utterance is open."""
        config = self._config
        if self._silence_start is None and probability < config.neg_threshold:
            _flush_run(run, events)
            self._silence_start = start
            events.append(SilenceStarted(start))
        elif self._silence_start is not None and probability >= config.threshold:
            _flush_run(run, events)
            self._silence_start = None
            events.append(SpeechResumed(start))
        run.append(chunk)
        silence_start = self._silence_start
        min_silence_ms = (
            config.digits_min_silence_ms if self.expect_digits else config.min_silence_ms
        )
        if (
            silence_start is not None
            and (end - silence_start) * 1000 >= min_silence_ms * self._sample_rate_hz
        ):
            _flush_run(run, events)
            self._end(SpeechEnded(silence_start, "silence"), events)
        elif end - self._onset >= self._max_samples:
            _flush_run(run, events)
            self._end(SpeechEnded(end, "max_length"), events)

    def end_now(self) -> SpeechEnded | None:
        """End the open utterance at the start of its current pause, before the pause
        reaches the endpoint (its owner knows the utterance is complete: a digit string
        of the expected length).  None when no utterance is open or it is not paused."""
        if self._state is not _State.SPEECH or self._silence_start is None:
            return None
        event = SpeechEnded(self._silence_start, "silence")
        self._end(event, [])
        return event

    def _end(self, event: SpeechEnded, events: list[EndpointEvent]) -> None:
        events.append(event)
        logger.debug("utterance ended at sample %d (%s)", event.end_sample, event.reason)
        self._state = _State.IDLE
        self._silence_start = None
        self._preroll = _EMPTY  # the next utterance must not repeat this one's audio

    def _keep_preroll(self, *parts: Pcm) -> None:
        """Keep the last ``speech_pad_ms`` of ``parts`` as the pre-roll."""
        if self._pad_samples == 0:
            self._preroll = _EMPTY
            return
        audio = np.concatenate(parts)
        self._preroll = audio[-self._pad_samples :].copy() if audio.size else _EMPTY
