"""Turn taking with the end-of-turn policy (``turn_policy: model``), as a pure part:
properties over random speech, pauses and turn-model answers (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from voicebot.commands import (
    CancelTranscription,
    Command,
    DetectTurnEnd,
    FinishTranscription,
    SpeculateTranscription,
    StartTranscription,
)
from voicebot.session_turn_end import TURN_AUDIO_MS, TurnEnding
from voicebot.session_turns import TurnState, TurnTaking
from voicebot.types import Transcript
from voicebot.vad.endpointer import EndpointConfig, Endpointer
from voicebot.vad.turn_policy import EndOfTurnPolicy
from voicebot.vad.turn_records import TurnPolicyConfig, TurnRule

__all__: list[str] = []

SR, W = 16_000, 512
SPEECH, QUIET = 0.9, 0.05
CONFIG = TurnPolicyConfig(turn_policy=TurnRule.MODEL, speculate=False)
RULES = {"model", "expectation", "max_silence", "max_length"}


def _turns(*, max_utterance_s: float = 15.0) -> TurnTaking:
    ending = TurnEnding(EndOfTurnPolicy(CONFIG), sample_rate_hz=SR)
    beyond_ms = ending.longest_pause_ms + 1000
    endpoint = EndpointConfig(min_silence_ms=beyond_ms, digits_min_silence_ms=beyond_ms,
                              max_utterance_s=max_utterance_s)
    return TurnTaking(Endpointer(endpoint, sample_rate_hz=SR, window_samples=W),
                      asr_rate_hz=SR, barge_in_samples=SR, speculate_samples=SR // 5,
                      domain_for=lambda slot: f"domain:{slot}", ending=ending)


class _Call:
    """Feeds windows one at a time, answering the turn model and the speculations as
    the script says (at once, later, or never), like the server's cell would."""

    def __init__(self, turns: TurnTaking, verdicts: list[float | None],
                 slot: tuple[str | None, int | None]) -> None:
        self.turns = turns
        self.slot = slot
        self.out: list[Command] = []
        self._verdicts = verdicts
        self._late: list[tuple[int, float]] = []

    def window(self, probability: float) -> None:
        pcm = np.full(W, 3000 if probability > 0.5 else 0, dtype=np.int16)
        slot_type, slot_length = self.slot
        for event in self.turns.hear(pcm, [probability]):
            step = self.turns.on_event(event, bot_speaking=False, slot_type=slot_type,
                                       slot_length=slot_length)
            self._take(list(step.commands))
        self._take(self.turns.tick(bot_speaking=False))
        if self._late:  # a verdict that took a window to come back
            request_id, prob = self._late.pop(0)
            self._take(self.turns.verdict(request_id, prob, bot_speaking=False))

    def _take(self, commands: list[Command]) -> None:
        for command in commands:
            self.out.append(command)
            if isinstance(command, DetectTurnEnd) and self._verdicts:
                prob = self._verdicts.pop(0)
                if prob is None:
                    continue  # never answered (the job failed)
                if prob > 0.7:
                    self._late.append((command.request_id, prob))
                else:
                    self._take(self.turns.verdict(command.request_id, prob, bot_speaking=False))
            elif isinstance(command, SpeculateTranscription):
                step = self.turns.speculated(command.utterance, Transcript("yes"),
                                             bot_speaking=False, expecting=self.slot)
                self._take(list(step.commands))


_RUNS = st.lists(st.tuples(st.sampled_from([SPEECH, 0.4, QUIET]), st.integers(1, 90)),
                 max_size=10)
_VERDICTS = st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=12)
_SLOTS = st.sampled_from([(None, None), ("yes_no", None), ("digits", 4), ("digits", None)])


@given(_RUNS, _VERDICTS, _SLOTS, st.booleans())
def test_every_utterance_ends_once_and_says_which_rule_ended_it(
        runs: list[tuple[float, int]], verdicts: list[float | None],
        slot: tuple[str | None, int | None], release: bool) -> None:
    call = _Call(_turns(max_utterance_s=4.0), verdicts, slot)
    for probability, count in runs:
        for _ in range(count):
            call.window(probability)
    if release:
        call.out += call.turns.release()
    out = call.out
    started = [c.utterance for c in out if isinstance(c, StartTranscription)]
    ended = [c.utterance for c in out if isinstance(c, FinishTranscription | CancelTranscription)]
    assert started == list(range(1, len(started) + 1))
    assert ended == started[: len(ended)] and len(started) - len(ended) == int(call.turns.open)
    for finish in (c for c in out if isinstance(c, FinishTranscription)):
        end = call.turns.end_of(finish.utterance)
        assert end is not None and end.rule in RULES, end
        assert finish.endpoint_delay_ms >= 0
        if end.rule in ("model", "expectation"):  # decided in a pause, after its short pause
            assert finish.endpoint_delay_ms >= CONFIG.short_pause_ms
        if end.rule == "max_silence":
            assert finish.endpoint_delay_ms >= CONFIG.max_silence_ms
    for ask in (c for c in out if isinstance(c, DetectTurnEnd)):
        assert 0 < len(ask.pcm) <= TURN_AUDIO_MS * SR // 1000
        assert ask.utterance in started
    if slot == ("digits", 4):
        assert not any(isinstance(c, DetectTurnEnd) for c in out)  # its digits decide


def test_a_pause_with_a_complete_verdict_ends_the_turn_there() -> None:
    turns = _turns()
    call = _Call(turns, [1.0 - 0.5], (None, None))  # 0.5: at the threshold, answered at once
    for _ in range(20):
        call.window(SPEECH)
    while turns.state is not TurnState.LISTENING:
        call.window(QUIET)
    [ask] = [c for c in call.out if isinstance(c, DetectTurnEnd)]
    [finish] = [c for c in call.out if isinstance(c, FinishTranscription)]
    # The model heard the whole turn, 20 windows (the pad is silence before the onset),
    # and its pause up to the ask: the 7 quiet windows past the 200 ms short pause.
    assert len(ask.pcm) == 27 * W and np.all(ask.pcm[:20 * W] == 3000)
    assert not ask.pcm[20 * W:].any()
    assert finish.endpoint_delay_ms == 7 * W * 1000 // SR  # the first window past 200 ms
    end = turns.end_of(finish.utterance)
    assert end is not None and (end.rule, end.score) == ("model", 0.5)
