"""Turn taking in one call: the caller's utterances, their transcription, barge-in.

A pure part of :class:`voicebot.session.Session`, in the manner of
:mod:`voicebot.vad.endpointer`: an explicit state, events in, commands out, time
counted in samples.  It turns the endpointer's events into transcription
commands:

* ``LISTENING`` → ``SPEAKING`` at :class:`SpeechStarted`: a new utterance, its
  transcription started with the padded audio;
* ``SPEAKING`` ⇄ ``PAUSING`` at :class:`SilenceStarted` / :class:`SpeechResumed`;
  after ``speculate_samples`` of a pause the transcript so far is asked for
  (speculation), discarded if the caller goes on;
* → ``LISTENING`` at :class:`SpeechEnded`: the transcription is finished, or
  cancelled when the utterance was too short to interrupt a speaking bot (a cough,
  "mhm").

While the bot speaks, an utterance that has been voiced for ``barge_in_samples``
interrupts it: the step says ``barge_in`` and the session stops the reply.

Who ends an utterance: the endpointer's silence rule (``turn_policy: silence``; a
digit string of the slot's length in a speculative transcript ends it at once), or,
given a :class:`~voicebot.session_turn_end.TurnEnding` (``turn_policy: model``), the
end-of-turn policy, fed from here; the endpointer then only cuts an utterance at its
longest length.  Each finished utterance leaves an :class:`UtteranceEnd` saying which
rule ended it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicebot.commands import (
    CancelTranscription,
    Command,
    DiscardSpeculation,
    FeedTranscription,
    FinishTranscription,
    SpeculateTranscription,
    StartTranscription,
)
from voicebot.nlu.entities import extract_entities
from voicebot.session_turn_end import EndingStep, TurnEnding
from voicebot.types import Pcm, Transcript
from voicebot.vad.endpointer import (
    Endpointer,
    EndpointEvent,
    SilenceStarted,
    SpeechAudio,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)
from voicebot.vad.turn_records import Expectation

__all__ = ["TurnState", "TurnStep", "TurnTaking", "UtteranceEnd"]


class TurnState(enum.Enum):
    LISTENING = enum.auto()  # no utterance open
    SPEAKING = enum.auto()  # an utterance is open and voiced
    PAUSING = enum.auto()  # an utterance is open, in a pause that may end it


@dataclass(frozen=True, slots=True)
class TurnStep:
    """What one endpointer event asks of the session."""

    commands: tuple[Command, ...] = ()
    barge_in: bool = False  # interrupt the bot's reply
    speech_started: bool = False  # the caller started an utterance (not silent any more)
    resumed: bool = False  # the caller went on after a speculated pause: it is stale


_NOTHING = TurnStep()


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """What ended an utterance: ``model``, ``expectation``, ``max_silence`` (the
    end-of-turn policy's rules), ``silence`` (the endpointer's pause) or ``max_length``;
    ``score``: the turn model's verdict in the last pause (None: none came)."""

    rule: str
    score: float | None = None


class TurnTaking:
    """The caller's side of the conversation, one utterance at a time."""

    def __init__(self, endpointer: Endpointer, *, asr_rate_hz: int, barge_in_samples: int,
                 speculate_samples: int, domain_for: Callable[[str | None], str],
                 ending: TurnEnding | None = None) -> None:
        """``domain_for(slot_type)``: the ASR domain while that slot type is expected;
        ``ending``: the end-of-turn policy that ends utterances (None: the endpointer)."""
        self.endpointer = endpointer
        self.state = TurnState.LISTENING
        self.utterance = 0  # the number of the current (or last) utterance
        self._asr_rate_hz = asr_rate_hz
        self._barge_in_samples = barge_in_samples
        self._speculate_samples = speculate_samples
        self._domain_for = domain_for
        self._barged = False  # the open utterance has interrupted the bot
        self._silence_start = 0
        self._speculated = False  # a speculation of this pause is out
        self._speculations_out = 0  # speculations asked for whose result has not come back
        self._speculated_at = 0  # the sample the pause's speculation was asked at
        self.ending = ending
        self._expecting = Expectation()  # what the dialog waits for, as of the last event
        self._ends: dict[int, UtteranceEnd] = {}  # finished utterances, until transcribed
        self._handlers: dict[type[Any], Callable[[Any, bool, str | None], TurnStep]] = {
            SpeechStarted: self._started, SpeechAudio: self._audio, SpeechEnded: self._ended,
            SilenceStarted: self._silence, SpeechResumed: self._resumed,
        }

    @property
    def open(self) -> bool:
        """An utterance is open."""
        return self.state is not TurnState.LISTENING

    def hear(self, pcm: Pcm, probabilities: Any) -> list[EndpointEvent]:
        """The endpointer's events for VAD windows ``pcm`` and their probabilities."""
        return self.endpointer.process(pcm, list(probabilities))

    def on_event(self, event: EndpointEvent, *, bot_speaking: bool, slot_type: str | None,
                 slot_length: int | None = None) -> TurnStep:
        """One endpointer event; ``bot_speaking`` as of now, ``slot_type`` (and
        ``slot_length``) of the slot the dialog asks for (None: none)."""
        self._expecting = Expectation.for_slot(slot_type, slot_length)
        return self._handlers[type(event)](event, bot_speaking, slot_type)

    def tick(self, *, bot_speaking: bool) -> list[Command]:
        """After the events of a batch: the end-of-turn policy hears the clock (it may
        ask the turn model, or end the turn), then the speculation is asked for if due."""
        out: list[Command] = []
        if self.ending is not None:
            step = self.ending.expect(self._expecting)
            tick = self.ending.tick(self.endpointer.samples_seen)
            out += self._carry(step, bot_speaking) + self._carry(tick, bot_speaking)
        return out + self.speculate()

    def speculate(self) -> list[Command]:
        """After the events of a batch: ask for the transcript so far if the caller
        has paused long enough."""
        if (
            not self._speculate_samples
            or self.state is not TurnState.PAUSING
            or self._speculated
            or self.endpointer.samples_seen - self._silence_start < self._speculate_samples
        ):
            return []
        self._speculated = True
        self._speculations_out += 1
        self._speculated_at = self.endpointer.samples_seen
        return [SpeculateTranscription(self.utterance)]

    def pausing_in(self, utterance: int) -> bool:
        """Utterance ``utterance`` is open, in a pause."""
        return self.utterance == utterance and self.state is TurnState.PAUSING

    def speculation_back(self, utterance: int) -> bool:
        """A speculation's result came back: whether it still describes the open
        utterance, in the pause it was asked in, with no later one on its way."""
        self._speculations_out = max(0, self._speculations_out - 1)
        return (utterance == self.utterance and self.state is TurnState.PAUSING
                and not self._speculations_out)

    def speculated(self, utterance: int, transcript: Transcript | None, *, bot_speaking: bool,
                   expecting: tuple[str | None, int | None]) -> TurnStep:
        """A speculation's transcript came back (None: the ASR cannot speculate);
        ``expecting``: the type and length of the slot asked for.  The end-of-turn
        policy hears it; without one, while a digits slot of a known length is asked
        for, a transcript holding that many digits ends the turn now: the caller need
        not wait out ``digits_min_silence_ms``."""
        if not self.speculation_back(utterance) or transcript is None:
            return _NOTHING
        text = transcript.text
        if self.ending is not None:
            return TurnStep(tuple(self._carry(self.ending.partial(text, self._speculated_at),
                                              bot_speaking)))
        slot_type, slot_length = expecting
        if slot_type != "digits" or slot_length is None:
            return _NOTHING
        digits = extract_entities(text).get("digits")
        if not isinstance(digits, str) or len(digits) < slot_length:
            return _NOTHING
        return self.end_now(bot_speaking=bot_speaking)

    def verdict(self, request_id: int, complete_prob: float, *,
                bot_speaking: bool) -> list[Command]:
        """The turn model's answer to ``DetectTurnEnd`` ``request_id``."""
        if self.ending is None:
            return []
        return self._carry(self.ending.verdict(request_id, complete_prob), bot_speaking)

    def end_now(self, *, bot_speaking: bool, end: UtteranceEnd | None = None) -> TurnStep:
        """End the open utterance here (its transcript is already complete; ``end``
        says which rule knew it, by default the dialog's expectation)."""
        event = self.endpointer.end_now()
        if event is None:
            return _NOTHING
        return self._ended(event, bot_speaking, None, end or UtteranceEnd("expectation"))

    def end_of(self, utterance: int) -> UtteranceEnd | None:
        """How finished utterance ``utterance`` ended (asked once, when it is transcribed)."""
        return self._ends.pop(utterance, None)

    def release(self) -> list[Command]:
        """The call ends: cancel the open utterance's transcription."""
        if not self.open:
            return []
        self.state = TurnState.LISTENING
        if self.ending is not None:
            self.ending.close()
        return [CancelTranscription(self.utterance)]

    def _carry(self, step: EndingStep, bot_speaking: bool) -> list[Command]:
        """The commands of an end-of-turn step: its turn-model jobs, then the end."""
        out: list[Command] = list(step.jobs)
        if step.end is not None:
            end = UtteranceEnd(step.end.rule.value, step.end.score)
            out += self.end_now(bot_speaking=bot_speaking, end=end).commands
        return out

    # ------------------------------------------------------------------ events

    def _started(self, event: SpeechStarted, bot_speaking: bool,
                 slot_type: str | None) -> TurnStep:
        self.utterance += 1
        self.state = TurnState.SPEAKING
        self._barged = self._speculated = False
        self.endpointer.expect_digits = slot_type == "digits"  # callers pause between groups
        if self.ending is not None:  # a new turn: nothing to decide yet
            self.ending.expect(self._expecting)
            self.ending.started(self.utterance, event)
        start = StartTranscription(self.utterance, self._domain_for(slot_type), event.audio)
        return self._maybe_barge_in((start,), bot_speaking, started=True)

    def _audio(self, event: SpeechAudio, bot_speaking: bool, _slot: str | None) -> TurnStep:
        if not self.open:
            return _NOTHING
        if self.ending is not None:
            self.ending.heard(event.audio)
        return self._maybe_barge_in((FeedTranscription(self.utterance, event.audio),),
                                    bot_speaking)

    def _ended(self, event: SpeechEnded, bot_speaking: bool, _slot: str | None,
               end: UtteranceEnd | None = None) -> TurnStep:
        if not self.open:
            return _NOTHING
        self.state = TurnState.LISTENING
        if self.ending is not None:
            self.ending.close()  # ended by the endpointer (its longest length), or done
        if bot_speaking and not self._barged:
            return TurnStep((CancelTranscription(self.utterance),))  # not a turn
        self._ends[self.utterance] = end or UtteranceEnd(
            "max_length" if event.reason == "max_length" else "silence")
        delay_ms = (self.endpointer.samples_seen - event.end_sample) * 1000 // self._asr_rate_hz
        return TurnStep((FinishTranscription(self.utterance, delay_ms),))

    def _silence(self, event: SilenceStarted, _bot: bool, _slot: str | None) -> TurnStep:
        # Only voiced time counts towards barge-in, not the trailing pause.
        if self.open:
            self.state, self._silence_start = TurnState.PAUSING, event.at_sample
            if self.ending is not None:
                self.ending.paused(event)  # decides nothing at the pause's first sample
        return _NOTHING

    def _resumed(self, event: SpeechResumed, _bot: bool, _slot: str | None) -> TurnStep:
        if self.open:
            self.state = TurnState.SPEAKING
            if self.ending is not None:
                self.ending.resumed(event)  # the pause's request and speculation are void
        if not self._speculated:
            return _NOTHING
        self._speculated = False
        return TurnStep((DiscardSpeculation(self.utterance),), resumed=True)

    def _maybe_barge_in(self, commands: tuple[Command, ...], bot_speaking: bool, *,
                        started: bool = False) -> TurnStep:
        barge = (
            bot_speaking
            and not self._barged
            and self.state is TurnState.SPEAKING
            and self.endpointer.speech_samples >= self._barge_in_samples
        )
        self._barged = self._barged or barge
        return TurnStep(commands, barge_in=barge, speech_started=started)
