"""The turn-taking benchmark's offline harness: replay caller turns, judge a policy.

Each clip (:mod:`bench.turns_data`) is cut into 20 ms frames on the audio clock and
regrouped into the VAD's 512-sample windows by the Session's own
:class:`voicebot.audio.framer.Framer`; the real Silero VAD (manifest model
``silero-vad``, as the default stack) scores each window once per clip.  A policy
then hears the windows one by one, as :class:`HeardWindow` records, and may end the
turn; the first :class:`TurnDecision` is when the bot would answer.  Time is the
audio clock: a window is heard at the end of the frame that completed it; a
decision's ``compute_ms`` (a model's inference, say) is added to it, or it names its
own ``at_ms`` (an answer that came back between windows).

A policy is anything with ``hear(window) -> TurnDecision | None`` (:class:`TurnPolicy`),
made fresh for each clip by a :class:`PolicySpec`'s factory from its
:class:`TurnContext` (what the dialog expects).  Built in:

* ``silence-<ms>``: the real :class:`~voicebot.vad.endpointer.Endpointer` with that
  ``min_silence_ms`` and nothing else (the baseline curve);
* ``session-today``: the Session's own turn taking (:class:`voicebot.session_turns.
  TurnTaking` on the bank_card endpointing: 500 ms, 800 ms while digits are expected)
  with the default stack's speculative ASR at 200 ms, which ends a digits turn of
  known length as soon as the transcript holds that many digits: here the transcript
  is the labels' (an ASR that makes no mistakes and takes no time).

Judging (:class:`TurnOutcome`): a CUT-OFF is a decision more than :data:`TAIL_MS`
before the labelled end of the turn's speech (the caller had more to say: in a
pause, or still talking); it is put down to the last labelled pause begun before
it (none: a gap between words).  Otherwise the latency is the decision's time minus
the labelled end of speech.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebot.audio.framer import Framer
from voicebot.commands import FinishTranscription, SpeculateTranscription
from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.nlu.entities import extract_entities
from voicebot.session_turns import TurnTaking
from voicebot.vad.endpointer import EndpointConfig, Endpointer, SpeechEnded

from .turns_data import TurnClip
from .turns_voices import RATE_HZ

__all__ = [
    "FRAME_MS",
    "TAIL_MS",
    "HeardWindow",
    "PolicySpec",
    "SessionTodayPolicy",
    "SilencePolicy",
    "TurnContext",
    "TurnDecision",
    "TurnOutcome",
    "TurnPolicy",
    "VadTrack",
    "judge",
    "replay",
    "run_policies",
    "session_today",
    "silence_rule",
    "vad_track",
]

log = logging.getLogger(__name__)

FRAME_MS = 20
TAIL_MS = 100  # a decision this close to the end of speech is not a cut-off (a fading tail)
_SPECULATE_MS = 200  # the default stack's speculative_asr_ms (server/stacks.py)


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnContext:
    """What a policy knows before the caller speaks: the dialog's expectation."""

    clip_id: str
    expect: str  # free, yes_no, digits
    digits_length: int | None
    sample_rate_hz: int
    window_samples: int


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class HeardWindow:
    """One VAD window, as the Session gets it."""

    index: int
    end_sample: int  # samples of the clip up to the window's end
    at_ms: float  # audio clock when it is heard: the end of the frame that completed it
    pcm: Pcm
    probability: float
    transcript: str  # the labelled words whose speech ended by the window's end


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnDecision:
    """The policy ends the turn: by which rule, the model's score if any, and what the
    decision costs beyond the audio clock.  ``at_ms``: when it was made, if not when
    the window was heard (an answer that came back between two windows: the decision
    is dated then, and ``compute_ms`` is not added)."""

    rule: str
    score: float | None = None
    compute_ms: float = 0.0
    at_ms: float | None = None


class TurnPolicy(Protocol):
    def hear(self, window: HeardWindow) -> TurnDecision | None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicySpec:
    """A named policy; ``family`` groups points of one curve in the plot."""

    name: str
    family: str
    make: Callable[[TurnContext], TurnPolicy]


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class VadTrack:
    """A clip's VAD windows: audio, probabilities, when each was heard."""

    pcm: Pcm
    probabilities: npt.NDArray[np.float32]
    heard_at_ms: tuple[float, ...]
    window_samples: int


def vad_track(clip: TurnClip, detector: SpeechDetector) -> VadTrack:
    """Feed ``clip`` in 20 ms frames through the Framer and a fresh VAD stream."""
    window = detector.window_samples
    framer, stream = Framer(window), detector.open_stream()
    frame = RATE_HZ * FRAME_MS // 1000
    probabilities: list[float] = []
    heard: list[float] = []
    for start in range(0, len(clip.pcm) - frame + 1, frame):
        windows = framer.push(clip.pcm[start:start + frame])
        if len(windows):
            probabilities += [float(p) for p in stream.probabilities(windows)]
            heard += [(start + frame) * 1000 / RATE_HZ] * (len(windows) // window)
    used = len(probabilities) * window
    return VadTrack(pcm=clip.pcm[:used], probabilities=np.asarray(probabilities, np.float32),
                    heard_at_ms=tuple(heard), window_samples=window)


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnOutcome:
    """What one policy did with one clip."""

    policy: str
    clip_id: str
    kind: str
    category: str
    voice: str
    source: str
    decided_ms: float | None  # None: the policy never ended the turn
    rule: str | None
    score: float | None
    cut_off: bool
    cut_pause_ms: int | None  # the planned length of the pause it cut into (None: none)
    latency_ms: float | None  # decision - end of speech, when not a cut-off


def judge(clip: TurnClip, policy: str, decided_ms: float | None,
          decision: TurnDecision | None) -> TurnOutcome:
    """Score one decision against the clip's labels."""
    spec = clip.spec
    cut = decided_ms is not None and decided_ms < clip.speech_end_ms - TAIL_MS
    cut_pause = None
    if cut and decided_ms is not None:  # the last pause begun before the decision
        for pause, planned in zip(clip.pauses, spec.pauses_ms, strict=True):
            if pause.start_ms <= decided_ms:
                cut_pause = planned
    latency = None if cut or decided_ms is None else decided_ms - clip.speech_end_ms
    return TurnOutcome(
        policy=policy, clip_id=clip.id, kind=spec.kind.value, category=spec.category,
        voice=spec.voice, source=clip.source.value, decided_ms=decided_ms,
        rule=decision.rule if decision else None, score=decision.score if decision else None,
        cut_off=cut, cut_pause_ms=cut_pause, latency_ms=latency)


def replay(clip: TurnClip, track: VadTrack, spec: PolicySpec) -> TurnOutcome:
    """Let one policy hear the clip's windows until it ends the turn."""
    window = track.window_samples
    policy = spec.make(TurnContext(
        clip_id=clip.id, expect=clip.spec.expect, digits_length=clip.spec.digits_length,
        sample_rate_hz=RATE_HZ, window_samples=window))
    for index, (probability, at_ms) in enumerate(
            zip(track.probabilities, track.heard_at_ms, strict=True)):
        end = (index + 1) * window
        heard = HeardWindow(index=index, end_sample=end, at_ms=at_ms,
                            pcm=track.pcm[end - window:end], probability=float(probability),
                            transcript=clip.transcript_at(end * 1000 / RATE_HZ))
        decision = policy.hear(heard)
        if decision is not None:
            decided = at_ms + decision.compute_ms if decision.at_ms is None else decision.at_ms
            return judge(clip, spec.name, decided, decision)
    return judge(clip, spec.name, None, None)


# ---------------------------------------------------------------------- built-in policies


class SilencePolicy:
    """A fixed silence ends the turn: the real Endpointer, nothing else."""

    def __init__(self, context: TurnContext, *, min_silence_ms: int) -> None:
        self._endpointer = Endpointer(
            EndpointConfig(min_silence_ms=min_silence_ms),
            sample_rate_hz=context.sample_rate_hz, window_samples=context.window_samples)

    def hear(self, window: HeardWindow) -> TurnDecision | None:
        for event in self._endpointer.process(window.pcm, [window.probability]):
            if isinstance(event, SpeechEnded):
                return TurnDecision(rule="silence" if event.reason == "silence" else "max_length")
        return None


def silence_rule(min_silence_ms: int) -> PolicySpec:
    return PolicySpec(name=f"silence-{min_silence_ms}", family="silence",
                      make=lambda c: SilencePolicy(c, min_silence_ms=min_silence_ms))


class SessionTodayPolicy:
    """The Session's turn taking as it is: :class:`TurnTaking` over the scenario's
    endpointing, speculating at 200 ms of pause; a digits slot of known length ends at
    a speculation whose transcript (here: the labels') holds that many digits."""

    def __init__(self, context: TurnContext, *, config: EndpointConfig) -> None:
        rate = context.sample_rate_hz
        endpointer = Endpointer(config, sample_rate_hz=rate,
                                window_samples=context.window_samples)
        self._turns = TurnTaking(endpointer, asr_rate_hz=rate, barge_in_samples=rate,
                                 speculate_samples=rate * _SPECULATE_MS // 1000,
                                 domain_for=lambda _slot: "general")
        self._slot = "digits" if context.expect == "digits" else None
        self._length = context.digits_length

    def hear(self, window: HeardWindow) -> TurnDecision | None:
        turns = self._turns
        for event in turns.hear(window.pcm, [window.probability]):
            step = turns.on_event(event, bot_speaking=False, slot_type=self._slot)
            if any(isinstance(c, FinishTranscription) for c in step.commands):
                return TurnDecision(rule="silence")
        for command in turns.speculate():  # its transcript comes back at once here
            if not isinstance(command, SpeculateTranscription):
                continue
            if turns.speculation_back(command.utterance) and self._complete(window.transcript):
                step = turns.end_now(bot_speaking=False)
                if any(isinstance(c, FinishTranscription) for c in step.commands):
                    return TurnDecision(rule="expectation")
        return None

    def _complete(self, transcript: str) -> bool:
        if self._slot != "digits" or self._length is None:
            return False
        digits = extract_entities(transcript).get("digits")
        return isinstance(digits, str) and len(digits) >= self._length


def session_today(config: EndpointConfig | None = None) -> PolicySpec:
    """``session-today`` on ``config`` (default: bank_card's 500 ms / 800 ms digits)."""
    chosen = config or EndpointConfig(min_silence_ms=500, digits_min_silence_ms=800)
    return PolicySpec(name="session-today", family="session today (ASR = labels)",
                      make=lambda c: SessionTodayPolicy(c, config=chosen))


def run_policies(clips: Sequence[TurnClip], detector: SpeechDetector,
                 policies: Sequence[PolicySpec]) -> list[TurnOutcome]:
    """Every policy on every clip (the VAD runs once per clip)."""
    outcomes: list[TurnOutcome] = []
    for number, clip in enumerate(clips, start=1):
        track = vad_track(clip, detector)
        outcomes += [replay(clip, track, spec) for spec in policies]
        if number % 50 == 0:
            log.info("replayed %d/%d clips", number, len(clips))
    return outcomes
