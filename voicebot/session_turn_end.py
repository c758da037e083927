"""The end of the caller's turn, as a part of the Session: :class:`TurnEnding`.

Under ``turn_policy: model`` a turn ends when the end-of-turn policy
(:class:`~voicebot.vad.turn_policy.EndOfTurnPolicy`) says so, not after the
endpointer's fixed silence.  :class:`~voicebot.session_turns.TurnTaking` hands this
part what the policy is fed: the endpointer's speech and silence
(:func:`~voicebot.vad.turn_policy.turn_event`), the audio clock (a :class:`Tick` after
each batch of VAD windows), what the dialog expects (the slot it asks for), the
speculative transcripts of the turn (:class:`Partial`) and the turn model's verdicts.

It keeps the open turn's audio (the last :data:`TURN_AUDIO_MS` before the pause are
what the turn model hears), so that each :class:`AskTurnModel` becomes a
:class:`~voicebot.commands.DetectTurnEnd` job, and it hands back the policy's
:class:`EndOfTurn`, which TurnTaking carries out by ending the utterance at once.

Pure, like the other parts: time from sample counts, no clock, no model, no I/O.
Replies are not speculated here (the policy's ``speculate`` is off): the speculative
ASR of :class:`~voicebot.session_turns.TurnTaking` gives the partial transcripts.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from voicebot.commands import DetectTurnEnd
from voicebot.types import Pcm
from voicebot.vad.endpointer import SilenceStarted, SpeechResumed, SpeechStarted
from voicebot.vad.turn_policy import EndOfTurnPolicy, turn_event
from voicebot.vad.turn_records import (
    AskTurnModel,
    EndOfTurn,
    Expect,
    Expectation,
    Partial,
    Tick,
    TurnDecision,
    TurnEvent,
    Verdict,
)

__all__ = ["TURN_AUDIO_MS", "EndingStep", "TurnEnding"]

log = logging.getLogger(__name__)

TURN_AUDIO_MS = 8000
"""How much of the turn, up to its pause, the turn model hears (Smart Turn's window)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EndingStep:
    """What one input asks of the turn taking: turn-model jobs, and the end of the turn."""

    jobs: tuple[DetectTurnEnd, ...] = ()
    end: EndOfTurn | None = None


_NOTHING = EndingStep()


class TurnEnding:
    """The end-of-turn policy of one call, fed from the turn taking."""

    def __init__(self, policy: EndOfTurnPolicy, *, sample_rate_hz: int,
                 audio_ms: int = TURN_AUDIO_MS) -> None:
        self.policy = policy
        self._rate_hz = sample_rate_hz
        self._window = audio_ms * sample_rate_hz // 1000
        # Audio after the pause keeps coming while the policy waits: keep enough of it.
        self._keep = self._window + (self.longest_pause_ms + 1000) * sample_rate_hz // 1000
        self._audio: deque[Pcm] = deque()
        self._appended = 0  # samples of the open turn appended so far
        self._dropped = 0  # ... of which dropped from the front (older than needed)
        self._pause_at = 0  # the pause began after this many samples of the turn
        self._utterance = 0
        self._expected = Expectation()

    @property
    def longest_pause_ms(self) -> int:
        """The longest pause the policy waits out before it ends a turn."""
        config = self.policy.config
        return max(config.max_silence_ms, config.digits_max_silence_ms)

    def expect(self, expectation: Expectation) -> EndingStep:
        """The dialog waits for ``expectation`` (fed to the policy when it changes)."""
        if expectation == self._expected:
            return _NOTHING
        self._expected = expectation
        return self._feed(Expect(expectation=expectation))

    def started(self, utterance: int, event: SpeechStarted) -> EndingStep:
        """Utterance ``utterance`` opened: a new turn, its audio from ``event``."""
        self._utterance = utterance
        self._audio.clear()
        self._appended = self._dropped = self._pause_at = 0
        self.heard(event.audio)
        return self._endpoint(event)

    def heard(self, audio: Pcm) -> None:
        """More audio of the open turn (contiguous with what came before)."""
        if not len(audio):
            return
        self._audio.append(audio)
        self._appended += len(audio)
        while self._audio and self._appended - self._dropped - len(self._audio[0]) >= self._keep:
            self._dropped += len(self._audio.popleft())

    def paused(self, event: SilenceStarted) -> EndingStep:
        """The caller fell silent: the audio heard so far ends exactly there (the
        endpointer sends an utterance's audio before its ``SilenceStarted``)."""
        self._pause_at = self._appended
        return self._endpoint(event)

    def resumed(self, event: SpeechResumed) -> EndingStep:
        return self._endpoint(event)

    def tick(self, samples_seen: int) -> EndingStep:
        """The audio clock after a batch of VAD windows."""
        return self._feed(Tick(at_ms=samples_seen * 1000 // self._rate_hz))

    def partial(self, text: str, audio_end_sample: int) -> EndingStep:
        """A transcript of the open turn's audio up to ``audio_end_sample``."""
        return self._feed(Partial(text=text, audio_end_ms=audio_end_sample * 1000 // self._rate_hz))

    def verdict(self, request_id: int, complete_prob: float) -> EndingStep:
        """The turn model's answer to the :class:`DetectTurnEnd` ``request_id``."""
        prob = complete_prob if math.isfinite(complete_prob) else 0.0
        return self._feed(Verdict(request_id=request_id,
                                  complete_probability=min(1.0, max(0.0, prob))))

    def close(self) -> None:
        """The utterance ended another way (its longest length, the call's end)."""
        self.policy.close_turn()
        self._audio.clear()

    # ------------------------------------------------------------------ decisions

    def _endpoint(self, event: SpeechStarted | SilenceStarted | SpeechResumed) -> EndingStep:
        mapped = turn_event(event, sample_rate_hz=self._rate_hz)
        return _NOTHING if mapped is None else self._feed(mapped)

    def _feed(self, event: TurnEvent) -> EndingStep:
        return self._step(self.policy.feed(event))

    def _step(self, decisions: list[TurnDecision]) -> EndingStep:
        jobs: list[DetectTurnEnd] = []
        end: EndOfTurn | None = None
        for decision in decisions:
            if isinstance(decision, AskTurnModel):
                jobs.append(DetectTurnEnd(self._utterance, decision.request_id,
                                          self._audio_to_now()))
            elif isinstance(decision, EndOfTurn):
                end = decision
                self._audio.clear()
            else:  # SpeculateReply, DiscardReply: replies are not speculated (speculate off)
                log.debug("turn %d: %s not carried out", decision.turn, type(decision).__name__)
        return EndingStep(jobs=tuple(jobs), end=end) if jobs or end else _NOTHING

    def _audio_to_now(self) -> Pcm:
        """The last :data:`TURN_AUDIO_MS` of the open turn, its pause so far included: the
        model hears the silence it is asked about, as Smart Turn is meant to be fed
        (docs/benchmarks/turn-taking.md: with the dialog's expectations this took the
        complete turns' p95 from 1573 to 493 ms at the same cut-off rate)."""
        end = self._appended - self._dropped
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.int16)
        return audio[max(0, end - self._window):end]
