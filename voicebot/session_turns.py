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
from voicebot.types import Pcm
from voicebot.vad.endpointer import (
    Endpointer,
    EndpointEvent,
    SilenceStarted,
    SpeechAudio,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)

__all__ = ["TurnState", "TurnStep", "TurnTaking"]


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


_NOTHING = TurnStep()


class TurnTaking:
    """The caller's side of the conversation, one utterance at a time."""

    def __init__(self, endpointer: Endpointer, *, asr_rate_hz: int, barge_in_samples: int,
                 speculate_samples: int, domain_for: Callable[[str | None], str]) -> None:
        """``domain_for(slot_type)``: the ASR domain while that slot type is expected."""
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

    def on_event(self, event: EndpointEvent, *, bot_speaking: bool,
                 slot_type: str | None) -> TurnStep:
        """One endpointer event; ``bot_speaking`` as of now, ``slot_type`` of the slot
        the dialog asks for (None: none)."""
        return self._handlers[type(event)](event, bot_speaking, slot_type)

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
        return [SpeculateTranscription(self.utterance)]

    def speculation_back(self, utterance: int) -> bool:
        """A speculation's result came back: whether it still describes the open
        utterance, in the pause it was asked in, with no later one on its way."""
        self._speculations_out = max(0, self._speculations_out - 1)
        return (utterance == self.utterance and self.state is TurnState.PAUSING
                and not self._speculations_out)

    def end_now(self, *, bot_speaking: bool) -> TurnStep:
        """End the open utterance here (its transcript is already complete)."""
        event = self.endpointer.end_now()
        return self._ended(event, bot_speaking, None) if event is not None else _NOTHING

    def release(self) -> list[Command]:
        """The call ends: cancel the open utterance's transcription."""
        if not self.open:
            return []
        self.state = TurnState.LISTENING
        return [CancelTranscription(self.utterance)]

    # ------------------------------------------------------------------ events

    def _started(self, event: SpeechStarted, bot_speaking: bool,
                 slot_type: str | None) -> TurnStep:
        self.utterance += 1
        self.state = TurnState.SPEAKING
        self._barged = self._speculated = False
        self.endpointer.expect_digits = slot_type == "digits"  # callers pause between groups
        start = StartTranscription(self.utterance, self._domain_for(slot_type), event.audio)
        return self._maybe_barge_in((start,), bot_speaking, started=True)

    def _audio(self, event: SpeechAudio, bot_speaking: bool, _slot: str | None) -> TurnStep:
        if not self.open:
            return _NOTHING
        return self._maybe_barge_in((FeedTranscription(self.utterance, event.audio),),
                                    bot_speaking)

    def _ended(self, event: SpeechEnded, bot_speaking: bool, _slot: str | None) -> TurnStep:
        if not self.open:
            return _NOTHING
        self.state = TurnState.LISTENING
        if bot_speaking and not self._barged:
            return TurnStep((CancelTranscription(self.utterance),))  # not a turn
        delay_ms = (self.endpointer.samples_seen - event.end_sample) * 1000 // self._asr_rate_hz
        return TurnStep((FinishTranscription(self.utterance, delay_ms),))

    def _silence(self, event: SilenceStarted, _bot: bool, _slot: str | None) -> TurnStep:
        # Only voiced time counts towards barge-in, not the trailing pause.
        if self.open:
            self.state, self._silence_start = TurnState.PAUSING, event.at_sample
        return _NOTHING

    def _resumed(self, _event: SpeechResumed, _bot: bool, _slot: str | None) -> TurnStep:
        if self.open:
            self.state = TurnState.SPEAKING
        if not self._speculated:
            return _NOTHING
        self._speculated = False
        return TurnStep((DiscardSpeculation(self.utterance),))

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
