"""The end-of-turn policy in the turn-taking benchmark: the REAL policy, the REAL model.

:class:`EndOfTurnAdapter` drives :class:`voicebot.vad.turn_policy.EndOfTurnPolicy` (not
a re-implementation) from the harness's windows, as the Session would: each window
goes through an :class:`~voicebot.vad.endpointer.Endpointer` (which never ends an
utterance itself: the policy does) into :class:`Speech` / :class:`Silence` events, then
a :class:`Tick` on the audio clock; the dialog's expectation is fed once, before the
caller speaks.  The policy's requests are answered like this:

* :class:`AskTurnModel`: the turn model (:class:`TurnModelAnswers`, the REAL Smart
  Turn v3.2 in the benchmark) runs at once on the turn's audio from
  ``speech_pad_ms`` (300 ms, the endpointer's) before its start up to the pause (the
  request's ``audio_end_ms``; ``with_silence``: up to the ask, the pause so far
  included, as pipecat feeds Smart Turn); its :class:`Verdict` comes back
  :data:`SMART_TURN_MS` later (or the measured inference time);
* :class:`SpeculateReply` while the dialog expects yes/no or digits: a
  :class:`Partial` transcript of the turn up to the pause comes back after the
  transcriber's decode (:class:`LabelTranscripts`: the labelled words, an ASR that
  makes no mistakes, after a fixed :data:`ASR_DECODE_MS`).

An answer that comes back between two windows is fed before the later window's audio
and a decision it leads to is dated when it came back (``TurnDecision.at_ms``);
answers to a pause the caller has left are ignored by the policy (stale ids), as in a
call.  :func:`eot_policy` names one configuration; :func:`eot_policies` is the
benchmark's built-in list.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from voicebot.engines.base import Pcm
from voicebot.turn.detector import TurnDetector
from voicebot.vad.endpointer import EndpointConfig, Endpointer
from voicebot.vad.turn_policy import EndOfTurnPolicy, TurnPhase, turn_event
from voicebot.vad.turn_records import (
    AskTurnModel,
    EndOfTurn,
    Expect,
    Expectation,
    ExpectKind,
    Partial,
    SpeculateReply,
    Speech,
    Tick,
    TurnEvent,
    TurnPolicyConfig,
    TurnRule,
    Verdict,
)

from .turns import HeardWindow, PolicySpec, TurnContext, TurnDecision

__all__ = [
    "ASR_DECODE_MS",
    "SMART_TURN_MS",
    "EndOfTurnAdapter",
    "LabelTranscripts",
    "PartialSource",
    "TurnModelAnswers",
    "eot_policies",
    "eot_policy",
]

log = logging.getLogger(__name__)

SMART_TURN_MS = 60.0
"""When Smart Turn's verdict comes back after the request, in the benchmark's figures:
v3.2 int8 on one thread of this AMD EPYC, features included, took p50 57 ms, p95 75 ms
over the 1495 calls of the 2026-12-02 run (each report gives its own run's)."""
ASR_DECODE_MS = 150.0
"""When a speculative transcript of the labels comes back after the short pause: the
default stack's Whisper tiny.en (int8, utterance window, one thread) decodes a
recorded four-digit string in 142 ms mean, 164 ms p95 (docs/benchmarks/whisper-digits.md,
bank_card digits prompt)."""
_PAD_MS = EndpointConfig().speech_pad_ms  # audio the Session keeps before a turn's onset
_NEVER_MS = 600_000  # the endpointer's own silence rule: never (the policy ends turns)


class PartialSource(Protocol):
    """Speculative ASR: the transcript of a turn's audio up to a pause and how long the
    transcriber took (ms)."""

    def transcribe(self, context: TurnContext, pcm: Pcm, labels: str) -> tuple[str, float]: ...


class LabelTranscripts:
    """The labelled words spoken so far, back :data:`ASR_DECODE_MS` later: a perfect
    recogniser (an optimistic bound on what a real ASR gives the expectations)."""

    def __init__(self, decode_ms: float = ASR_DECODE_MS) -> None:
        self.decode_ms = decode_ms

    def transcribe(self, context: TurnContext, pcm: Pcm, labels: str) -> tuple[str, float]:
        return labels, self.decode_ms


class TurnModelAnswers:
    """The turn model's probability for a turn's audio and when its verdict comes back.

    ``cost_ms``: the verdict comes back this fixed time after the request (the figures
    then do not depend on the machine's load); None: after the measured inference
    (features + ONNX, timed per call).  Every inference is timed either way
    (``times_ms``).  Answers are remembered by the audio's digest: policies that differ
    only after the model's answer (thresholds) ask about the same audio and pay the
    first measurement."""

    def __init__(self, detector: TurnDetector, *, cost_ms: float | None = None) -> None:
        self._detector = detector
        self._cost_ms = cost_ms
        self._answers: dict[tuple[int, bytes], tuple[float, float]] = {}
        self.times_ms: list[float] = []

    @property
    def cost_ms(self) -> float | None:
        return self._cost_ms

    def ask(self, pcm: Pcm) -> tuple[float, float]:
        """The probability that the turn is complete, and the ms until it is back."""
        key = (len(pcm), hashlib.blake2b(pcm.tobytes(), digest_size=16).digest())
        found = self._answers.get(key)
        if found is None:
            started = time.perf_counter()
            verdict = self._detector.predict(pcm)
            spent_ms = (time.perf_counter() - started) * 1000
            found = self._answers[key] = (verdict.complete_prob, spent_ms)
            self.times_ms.append(spent_ms)
        prob, spent_ms = found
        return prob, spent_ms if self._cost_ms is None else self._cost_ms

    @property
    def calls(self) -> int:
        return len(self.times_ms)

    def quantile_ms(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q)) if self.times_ms else float("nan")


class EndOfTurnAdapter:
    """One clip's :class:`EndOfTurnPolicy`, fed from the harness's windows (a
    :class:`bench.turns.TurnPolicy`); ``model`` answers its :class:`AskTurnModel`
    (on the audio up to the pause, or with ``with_silence`` up to the ask) and
    ``transcripts`` its :class:`SpeculateReply` while yes/no or digits are expected."""

    def __init__(self, context: TurnContext, *, config: TurnPolicyConfig,
                 model: TurnModelAnswers | None, transcripts: PartialSource,
                 with_silence: bool = False) -> None:
        if config.turn_policy is TurnRule.MODEL and model is None:
            raise ValueError("the MODEL rule needs a turn model")
        self._context = context
        self._rate = context.sample_rate_hz
        self._endpointer = Endpointer(
            EndpointConfig(min_silence_ms=_NEVER_MS, digits_min_silence_ms=_NEVER_MS,
                           max_utterance_s=_NEVER_MS / 1000),
            sample_rate_hz=self._rate, window_samples=context.window_samples)
        self._policy = EndOfTurnPolicy(config)
        self._model = model
        self._transcripts = transcripts
        self._with_silence = with_silence
        self._windows: list[Pcm] = []
        self._pending: list[tuple[float, int, TurnEvent]] = []  # (back at ms, order, answer)
        self._order = 0
        self._turn_start_ms = 0
        self._policy.feed(Expect(expectation=Expectation.for_slot(
            context.expect, context.digits_length if context.expect == "digits" else None)))

    def _audio(self, start_ms: int, end_ms: int) -> Pcm:
        audio = np.concatenate(self._windows) if self._windows else np.zeros(0, np.int16)
        start = max(0, (start_ms - _PAD_MS) * self._rate // 1000)
        return audio[start:end_ms * self._rate // 1000]

    def _answer(self, decision: object, now_ms: float, labels: str) -> None:
        """Start the work a decision asks for; its answer is pending until it is back."""
        if isinstance(decision, AskTurnModel):
            assert self._model is not None
            end_ms = (self._policy.now_ms if self._with_silence else decision.audio_end_ms)
            prob, spent_ms = self._model.ask(self._audio(decision.turn_start_ms, end_ms))
            self._later(now_ms + spent_ms, Verdict(request_id=decision.request_id,
                                                   complete_probability=prob))
        elif isinstance(decision, SpeculateReply) and (
                self._policy.config.expectations
                and self._policy.expectation.kind is not ExpectKind.FREE):
            pcm = self._audio(self._turn_start_ms, decision.audio_end_ms)
            text, spent_ms = self._transcripts.transcribe(self._context, pcm, labels)
            self._later(now_ms + spent_ms, Partial(text=text, audio_end_ms=decision.audio_end_ms))

    def _later(self, back_ms: float, event: TurnEvent) -> None:
        self._order += 1
        bisect.insort(self._pending, (back_ms, self._order, event), key=lambda p: p[:2])

    def _feed(self, event: TurnEvent, now_ms: float, labels: str) -> EndOfTurn | None:
        for decision in self._policy.feed(event):
            if isinstance(decision, EndOfTurn):
                return decision
            self._answer(decision, now_ms, labels)
        return None

    def hear(self, window: HeardWindow) -> TurnDecision | None:
        while self._pending and self._pending[0][0] <= window.at_ms:
            back_ms, _, event = self._pending.pop(0)
            end = self._feed(event, back_ms, window.transcript)
            if end is not None:
                return self._decision(end, back_ms)
        self._windows.append(window.pcm)
        for endpoint_event in self._endpointer.process(window.pcm, [window.probability]):
            heard = turn_event(endpoint_event, sample_rate_hz=self._rate)
            if heard is None:
                continue
            if isinstance(heard, Speech) and self._policy.phase is TurnPhase.IDLE:
                self._turn_start_ms = heard.at_ms
            end = self._feed(heard, window.at_ms, window.transcript)
            if end is not None:
                return self._decision(end, window.at_ms)
        end = self._feed(Tick(at_ms=window.end_sample * 1000 // self._rate), window.at_ms,
                         window.transcript)
        return None if end is None else self._decision(end, window.at_ms)

    @staticmethod
    def _decision(end: EndOfTurn, at_ms: float) -> TurnDecision:
        return TurnDecision(rule=end.rule.value, score=end.score, at_ms=at_ms)


def eot_policy(name: str, family: str, config: TurnPolicyConfig, *,
               model: TurnModelAnswers | None, transcripts: PartialSource,
               with_silence: bool = False) -> PolicySpec:
    """A :class:`PolicySpec` of the end-of-turn policy on ``config``."""
    return PolicySpec(name=name, family=family, make=lambda c: EndOfTurnAdapter(
        c, config=config, model=model, transcripts=transcripts, with_silence=with_silence))


_VARIANTS = (("", 200, False), ("-p300", 300, False), ("-a", 200, True))
"""(name suffix, short pause ms, the model hears the pause's silence too)."""


def eot_policies(model: TurnModelAnswers, *, transcripts: PartialSource | None = None,
                 thresholds: Sequence[float] = (0.5, 0.7, 0.85)) -> list[PolicySpec]:
    """The built-in list: Smart Turn alone (every turn FREE) and with the dialog's
    expectations, per variant and threshold, and the silence rule with expectations.

    Names: ``smart-turn`` / ``smart-turn+expect`` (200 ms short pause, threshold 0.5,
    the model hears the turn up to the pause), suffixed ``-p300`` (a 300 ms short
    pause), ``-a`` (the model hears the audio up to the ask, the pause's first 200 ms
    included, as pipecat feeds it) and ``-t<threshold>``; ``silence-500+expect``."""
    source = transcripts or LabelTranscripts()
    specs: list[PolicySpec] = []
    for expect in (False, True):
        for suffix, short_ms, with_silence in _VARIANTS:
            family = f"smart turn{' + expect' if expect else ''}" + (
                ", model hears the pause" if with_silence else f", pause {short_ms} ms")
            for threshold in thresholds:
                name = "smart-turn" + ("+expect" if expect else "") + suffix
                name += "" if threshold == 0.5 else f"-t{threshold:g}"
                config = TurnPolicyConfig(short_pause_ms=short_ms, turn_threshold=threshold,
                                          expectations=expect)
                specs.append(eot_policy(name, family, config, model=model, transcripts=source,
                                        with_silence=with_silence))
    silence = TurnPolicyConfig(turn_policy=TurnRule.SILENCE, min_silence_ms=500)
    specs.append(eot_policy("silence-500+expect", "silence + expect", silence, model=None,
                            transcripts=source))
    return specs
