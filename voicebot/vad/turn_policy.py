"""End of turn: a pure state machine that decides when the caller has finished.

Beside the :mod:`endpointer <voicebot.vad.endpointer>` (which only says speech /
silence), :class:`EndOfTurnPolicy` is fed the VAD's speech and silence, the audio
clock, partial transcripts, the turn model's verdicts and what the dialog expects
(:mod:`voicebot.vad.turn_records`), and answers with decisions.  No clock and no
I/O: the Session carries the decisions out.

A turn opens at :class:`Speech` (``SPEAKING``) and pauses at :class:`Silence`
(``PAUSED``); in a pause, in this order:

1. **Expectation** (``expectations`` on): a partial transcript covering the whole
   turn so far that holds a complete yes/no answer (YES_NO) or ``length`` digits
   (DIGITS) ends the turn at once (``EndRule.EXPECTATION``).  The answers are read
   by the NLU's own extractor (:func:`voicebot.nlu.entities.extract_entities`:
   "four two one seven", "oh", "double seven", "yeah", "go ahead").
2. **The longest pause**: ``max_silence_ms`` (``digits_max_silence_ms`` while
   digits are expected) under the MODEL rule (``EndRule.MAX_SILENCE``);
   ``min_silence_ms`` (``digits_min_silence_ms``) under the SILENCE rule
   (``EndRule.SILENCE``).
3. **The short pause** (``short_pause_ms``): a reply is speculated
   (:class:`SpeculateReply`) and, under the MODEL rule, the turn model is asked once
   about the audio up to the pause (:class:`AskTurnModel`) — except for a DIGITS
   expectation of known length, which waits for its digits through pauses between
   groups.  A :class:`Verdict` of the open request at or above ``turn_threshold``
   ends the turn (``EndRule.MODEL``); below it the policy keeps listening.

Speech resuming cancels the pause's request (its late verdict is ignored, by id)
and discards its speculation (:class:`DiscardReply`).  The :class:`EndOfTurn`
names the speculation to use, if one of this pause is out: every speculation is
either used by exactly one end of turn or discarded.
"""

from __future__ import annotations

import enum
import logging

from voicebot.nlu.entities import extract_entities
from voicebot.vad.endpointer import EndpointEvent, SilenceStarted, SpeechResumed, SpeechStarted
from voicebot.vad.turn_records import (
    AskTurnModel,
    DiscardReply,
    EndOfTurn,
    EndRule,
    Expect,
    Expectation,
    ExpectKind,
    Partial,
    Silence,
    SpeculateReply,
    Speech,
    Tick,
    TurnDecision,
    TurnEvent,
    TurnPolicyConfig,
    TurnRule,
    Verdict,
)

__all__ = ["EndOfTurnPolicy", "TurnPhase", "turn_event"]

logger = logging.getLogger(__name__)

_FREE = Expectation()


class TurnPhase(enum.Enum):
    IDLE = enum.auto()  # no turn open
    SPEAKING = enum.auto()  # a turn is open and voiced
    PAUSED = enum.auto()  # a turn is open, in a pause that may end it


def turn_event(event: EndpointEvent, *, sample_rate_hz: int) -> Speech | Silence | None:
    """The policy's event for an endpointer event (None: it has none; the clock comes
    from :class:`Tick`, one per window)."""
    if isinstance(event, SpeechStarted):
        return Speech(at_ms=event.onset_sample * 1000 // sample_rate_hz)
    if isinstance(event, SpeechResumed):
        return Speech(at_ms=event.at_sample * 1000 // sample_rate_hz)
    if isinstance(event, SilenceStarted):
        return Silence(at_ms=event.at_sample * 1000 // sample_rate_hz)
    return None


class EndOfTurnPolicy:
    """Decides when each of a call's turns ends (one per call, turn after turn)."""

    def __init__(self, config: TurnPolicyConfig) -> None:
        self._config = config
        self._phase = TurnPhase.IDLE
        self._turn = 0  # the number of the open (or last) turn
        self._now_ms = 0
        self._next_id = 0
        self._expectation = _FREE
        self._turn_start_ms = 0
        self._pause_start_ms = 0
        self._partial: Partial | None = None  # the latest of the open turn
        self._asked = False  # the turn model was asked in this pause
        self._ask_id: int | None = None  # ... and its verdict is awaited
        self._score: float | None = None  # ... and answered this
        self._speculation_id: int | None = None  # the speculation of this pause

    @property
    def config(self) -> TurnPolicyConfig:
        return self._config

    @property
    def phase(self) -> TurnPhase:
        return self._phase

    @property
    def turn(self) -> int:
        return self._turn

    @property
    def now_ms(self) -> int:
        """The latest time on the audio clock the policy was told of."""
        return self._now_ms

    @property
    def expectation(self) -> Expectation:
        return self._expectation

    def feed(self, event: TurnEvent) -> list[TurnDecision]:
        """One event in; the decisions it leads to, in order."""
        if isinstance(event, Speech | Silence | Tick):
            self._now_ms = max(self._now_ms, event.at_ms)
        if isinstance(event, Speech):
            return self._speech(event)
        if isinstance(event, Silence):
            if self._phase is not TurnPhase.SPEAKING:
                return []
            self._phase = TurnPhase.PAUSED
            self._pause_start_ms = max(event.at_ms, self._turn_start_ms)
            return self._check()
        if isinstance(event, Tick):
            return self._check()
        if isinstance(event, Partial):
            if self._phase is not TurnPhase.IDLE and (
                self._partial is None or event.audio_end_ms >= self._partial.audio_end_ms
            ):
                self._partial = event
            return self._check()
        if isinstance(event, Verdict):
            return self._verdict(event)
        assert isinstance(event, Expect)
        self._expectation = event.expectation
        return self._check()

    def close_turn(self) -> list[TurnDecision]:
        """The open turn ends some other way (the utterance reached its longest length,
        the call ended): drop it without an :class:`EndOfTurn`, discarding its
        speculation."""
        if self._phase is TurnPhase.IDLE:
            return []
        out = self._resume()
        self._phase = TurnPhase.IDLE
        self._partial = None
        return out

    # ------------------------------------------------------------------ events

    def _speech(self, event: Speech) -> list[TurnDecision]:
        if self._phase is TurnPhase.IDLE:
            self._turn += 1
            self._phase = TurnPhase.SPEAKING
            self._turn_start_ms = event.at_ms
            self._partial = None
            return []
        if self._phase is TurnPhase.SPEAKING:
            return []
        self._phase = TurnPhase.SPEAKING
        return self._resume()

    def _resume(self) -> list[TurnDecision]:
        """Leave the pause: its request is cancelled, its speculation discarded."""
        self._asked, self._ask_id, self._score = False, None, None
        if self._speculation_id is None:
            return []
        discard = DiscardReply(speculation_id=self._speculation_id, turn=self._turn)
        self._speculation_id = None
        return [discard]

    def _verdict(self, event: Verdict) -> list[TurnDecision]:
        if self._phase is not TurnPhase.PAUSED or event.request_id != self._ask_id:
            logger.debug("turn %d: verdict %d ignored (stale)", self._turn, event.request_id)
            return []
        self._ask_id = None
        self._score = event.complete_probability
        if self._uses_model() and self._score >= self._config.turn_threshold:
            return [self._end(EndRule.MODEL)]
        return self._check()

    # ------------------------------------------------------------------ rules

    def _check(self) -> list[TurnDecision]:
        """Apply the rules to the open pause as of now."""
        if self._phase is not TurnPhase.PAUSED:
            return []
        if self._expectation_met():
            return [self._end(EndRule.EXPECTATION)]
        silent_ms = self._now_ms - self._pause_start_ms
        if silent_ms >= self._longest_pause_ms():
            model = self._config.turn_policy is TurnRule.MODEL
            return [self._end(EndRule.MAX_SILENCE if model else EndRule.SILENCE)]
        if silent_ms < self._config.short_pause_ms:
            return []
        out: list[TurnDecision] = []
        if self._config.speculate and self._speculation_id is None:
            self._speculation_id = self._new_id()
            out.append(SpeculateReply(speculation_id=self._speculation_id, turn=self._turn,
                                      audio_end_ms=self._pause_start_ms))
        if self._uses_model() and not self._asked:
            self._asked, self._ask_id = True, self._new_id()
            out.append(AskTurnModel(request_id=self._ask_id, turn=self._turn,
                                    turn_start_ms=self._turn_start_ms,
                                    audio_end_ms=self._pause_start_ms))
        return out

    def _effective(self) -> Expectation:
        return self._expectation if self._config.expectations else _FREE

    def _uses_model(self) -> bool:
        expectation = self._effective()
        return self._config.turn_policy is TurnRule.MODEL and not (
            expectation.kind is ExpectKind.DIGITS and expectation.length is not None
        )

    def _longest_pause_ms(self) -> int:
        config = self._config
        digits = self._effective().kind is ExpectKind.DIGITS
        if config.turn_policy is TurnRule.MODEL:
            return config.digits_max_silence_ms if digits else config.max_silence_ms
        return config.digits_min_silence_ms if digits else config.min_silence_ms

    def _expectation_met(self) -> bool:
        """A partial transcript of the whole turn so far holds the expected answer."""
        expectation, partial = self._effective(), self._partial
        if (expectation.kind is ExpectKind.FREE or partial is None
                or partial.audio_end_ms < self._pause_start_ms):
            return False
        entities = extract_entities(partial.text)
        if expectation.kind is ExpectKind.YES_NO:
            return "yes_no" in entities
        digits = entities.get("digits")
        return (expectation.length is not None and isinstance(digits, str)
                and len(digits) >= expectation.length)

    def _end(self, rule: EndRule) -> EndOfTurn:
        waited_ms = self._now_ms - self._pause_start_ms
        end = EndOfTurn(turn=self._turn, rule=rule, score=self._score,
                        speech_end_ms=self._pause_start_ms, decided_at_ms=self._now_ms,
                        waited_ms=waited_ms, speculation_id=self._speculation_id)
        logger.debug("turn %d ended: rule=%s score=%s waited_ms=%d speculation=%s",
                     self._turn, rule.value, self._score, waited_ms, self._speculation_id)
        self._phase = TurnPhase.IDLE
        self._partial = None
        self._asked, self._ask_id, self._score = False, None, None
        self._speculation_id = None
        return end

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id
