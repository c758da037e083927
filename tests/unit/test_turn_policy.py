"""Tests of voicebot.vad.turn_policy: the end-of-turn rules, expectations, speculation,
by example (its invariants over any event sequence: test_turn_policy_props.py).

The audio clock advances in 32 ms VAD windows (:class:`_Call` feeds one
:class:`Tick` per window), as the Session will; times are on that clock, never
read from a real one.
"""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from voicebot.dialog.checking import check_scenario
from voicebot.dialog.loader import load_scenario
from voicebot.errors import ConfigError, ScenarioError
from voicebot.vad.endpointer import (
    EndpointConfig,
    SilenceStarted,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)
from voicebot.vad.turn_policy import EndOfTurnPolicy, TurnPhase, turn_event
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

__all__: list[str] = []

TICK_MS = 32
D = TypeVar("D", AskTurnModel, SpeculateReply, DiscardReply, EndOfTurn)
YES_NO = Expectation.for_slot("yes_no")
DIGITS4 = Expectation.for_slot("digits", 4)


class _Call:
    """One policy driven on a 32 ms window clock; every decision kept in order."""

    def __init__(self, expectation: Expectation | None = None, **config: Any) -> None:
        self.policy = EndOfTurnPolicy(TurnPolicyConfig(**config))
        self.now_ms = 0
        self.out: list[TurnDecision] = []
        if expectation is not None:
            self.feed(Expect(expectation=expectation))

    def feed(self, event: TurnEvent) -> list[TurnDecision]:
        decisions = self.policy.feed(event)
        self.out.extend(decisions)
        return decisions

    def wait(self, ms: int) -> list[TurnDecision]:
        """Let ``ms`` of audio go by (one tick per window)."""
        got: list[TurnDecision] = []
        for _ in range(-(-ms // TICK_MS)):
            self.now_ms += TICK_MS
            got.extend(self.feed(Tick(at_ms=self.now_ms)))
        return got

    def speak(self, ms: int) -> list[TurnDecision]:
        return self.feed(Speech(at_ms=self.now_ms)) + self.wait(ms)

    def pause(self, ms: int) -> list[TurnDecision]:
        return self.feed(Silence(at_ms=self.now_ms)) + self.wait(ms)

    def hear(self, text: str) -> list[TurnDecision]:
        """A transcript of everything said so far comes back."""
        return self.feed(Partial(text=text, audio_end_ms=self.now_ms))

    def of(self, kind: type[D]) -> list[D]:
        return [d for d in self.out if isinstance(d, kind)]


def _only_end(decisions: list[TurnDecision]) -> EndOfTurn:
    ends = [d for d in decisions if isinstance(d, EndOfTurn)]
    assert len(ends) == 1, decisions
    return ends[0]


# ------------------------------------------------------------------ the rules


def test_silence_rule_ends_after_min_silence_and_uses_the_speculation() -> None:
    call = _Call(turn_policy=TurnRule.SILENCE)
    call.speak(640)
    assert call.pause(480) and not call.of(EndOfTurn)  # the speculation at 200 ms only
    [speculation] = call.of(SpeculateReply)
    end = _only_end(call.wait(TICK_MS))
    assert end.rule is EndRule.SILENCE and end.score is None
    assert end.speech_end_ms == 640 and 500 <= end.waited_ms < 500 + TICK_MS
    assert end.speculation_id == speculation.speculation_id
    assert not call.of(AskTurnModel)  # the silence rule never asks the model


def test_model_complete_at_the_short_pause_ends_the_turn() -> None:
    call = _Call()
    call.speak(960)
    first = call.pause(200)
    assert [type(d) for d in first] == [SpeculateReply, AskTurnModel]
    speculation, ask = first
    assert isinstance(ask, AskTurnModel) and isinstance(speculation, SpeculateReply)
    assert (ask.turn_start_ms, ask.audio_end_ms, ask.turn) == (0, 960, 1)
    assert speculation.audio_end_ms == 960
    end = _only_end(call.feed(Verdict(request_id=ask.request_id, complete_probability=0.83)))
    assert (end.rule, end.score, end.turn) == (EndRule.MODEL, 0.83, 1)
    assert end.waited_ms == end.decided_at_ms - 960 and 200 <= end.waited_ms < 200 + TICK_MS
    assert end.speculation_id == speculation.speculation_id
    assert call.policy.phase is TurnPhase.IDLE


def test_incomplete_keeps_listening_and_asks_again_at_the_next_pause() -> None:
    call = _Call()
    call.speak(640)
    call.pause(200)
    [ask] = call.of(AskTurnModel)
    assert call.feed(Verdict(request_id=ask.request_id, complete_probability=0.2)) == []
    assert call.wait(1000) == []  # never twice in one pause
    [speculation] = call.of(SpeculateReply)
    resumed = call.speak(480)
    assert resumed == [DiscardReply(speculation_id=speculation.speculation_id, turn=1)]
    call.pause(200)
    asks = call.of(AskTurnModel)
    assert len(asks) == 2 and asks[1].request_id != ask.request_id
    end = _only_end(call.feed(Verdict(request_id=asks[1].request_id, complete_probability=0.5)))
    assert end.rule is EndRule.MODEL and end.turn == 1
    assert end.speech_end_ms == 640 + 224 + 1024 + 480


def test_late_verdict_after_speech_resumed_is_ignored() -> None:
    call = _Call()
    call.speak(640)
    call.pause(224)
    [ask] = call.of(AskTurnModel)
    call.speak(320)
    assert call.feed(Verdict(request_id=ask.request_id, complete_probability=0.99)) == []
    assert call.policy.phase is TurnPhase.SPEAKING
    call.pause(100)  # before the short pause: no new request yet, the old one stays dead
    assert call.feed(Verdict(request_id=ask.request_id, complete_probability=0.99)) == []
    assert len(call.of(AskTurnModel)) == 1 and not call.of(EndOfTurn)


@pytest.mark.parametrize("verdicts", [(), (0.1,)])
def test_max_silence_always_ends_the_turn(verdicts: tuple[float, ...]) -> None:
    call = _Call()
    call.speak(640)
    call.pause(200)
    [ask] = call.of(AskTurnModel)
    for probability in verdicts:
        call.feed(Verdict(request_id=ask.request_id, complete_probability=probability))
    assert call.wait(1472 - 224) == []  # 224 ms of the pause had gone by
    end = _only_end(call.wait(TICK_MS))
    assert end.rule is EndRule.MAX_SILENCE and 1500 <= end.waited_ms < 1500 + TICK_MS
    assert end.score == (verdicts[0] if verdicts else None)


def test_a_pause_too_short_to_ask_costs_nothing() -> None:
    call = _Call()
    call.speak(640)
    call.pause(160)
    call.speak(320)
    assert call.out == [] and call.policy.phase is TurnPhase.SPEAKING


# ------------------------------------------------------------------ expectations


@pytest.mark.parametrize("answer", ["yes", "Yeah.", "no thanks", "go ahead", "Nope."])
def test_a_yes_no_answer_ends_the_turn_at_once(answer: str) -> None:
    call = _Call(YES_NO)
    call.speak(480)
    call.feed(Silence(at_ms=call.now_ms))
    end = _only_end(call.hear(answer))
    assert end.rule is EndRule.EXPECTATION and end.waited_ms == 0 and end.speculation_id is None
    assert call.out == [end]


@pytest.mark.parametrize("text", ["I'm not sure", "yes no", "well", ""])
def test_no_yes_no_answer_leaves_it_to_the_model(text: str) -> None:
    call = _Call(YES_NO)
    call.speak(480)
    call.pause(200)
    assert call.hear(text) == [] and len(call.of(AskTurnModel)) == 1


def test_a_partial_that_misses_the_latest_speech_does_not_end_the_turn() -> None:
    call = _Call(YES_NO)
    call.speak(320)
    said_yes_at = call.now_ms
    call.pause(96)
    call.speak(640)  # "yes ... but wait"
    call.pause(64)
    assert call.feed(Partial(text="yes", audio_end_ms=said_yes_at)) == []
    assert call.policy.phase is TurnPhase.PAUSED


@pytest.mark.parametrize("whole", ["four two one seven", "four two oh seven",
                                   "double seven one two", "4 2 1 7."])
def test_a_digits_turn_waits_through_the_pause_between_groups(whole: str) -> None:
    call = _Call(DIGITS4)
    call.speak(800)  # "four two"
    assert call.pause(250) == [call.of(SpeculateReply)[0]]  # speculate, never ask
    assert call.hear("four two") == []
    assert call.wait(450) == []  # the whole 700 ms pause
    call.speak(800)  # "one seven"
    call.pause(300)
    end = _only_end(call.hear(whole))
    assert end.rule is EndRule.EXPECTATION and end.speech_end_ms == 800 + 256 + 480 + 800
    assert end.speculation_id == call.of(SpeculateReply)[-1].speculation_id
    assert not call.of(AskTurnModel)
    assert [type(d) for d in call.out] == [SpeculateReply, DiscardReply, SpeculateReply, EndOfTurn]


def test_digits_below_the_length_wait_up_to_their_own_maximum() -> None:
    call = _Call(DIGITS4)
    call.speak(640)
    call.pause(1600)  # longer than max_silence_ms: not cut
    call.hear("four two one")
    assert not call.of(EndOfTurn)
    end = _only_end(call.wait(2500 - 1600 + TICK_MS))
    assert end.rule is EndRule.MAX_SILENCE and 2500 <= end.waited_ms < 2500 + TICK_MS


def test_digits_of_unknown_length_are_left_to_the_model() -> None:
    call = _Call(Expectation.for_slot("digits"))
    call.speak(640)
    call.pause(200)
    assert call.hear("four two one seven one two three four") == []
    [ask] = call.of(AskTurnModel)
    assert _only_end(call.feed(Verdict(request_id=ask.request_id, complete_probability=0.9)))


def test_silence_rule_keeps_the_digits_pause_and_the_early_end() -> None:
    call = _Call(DIGITS4, turn_policy=TurnRule.SILENCE)
    call.speak(640)
    assert not call.pause(768)[1:]  # a speculation only: digits_min_silence_ms is 800
    assert _only_end(call.wait(TICK_MS)).rule is EndRule.SILENCE
    call.speak(640)
    call.pause(100)
    assert _only_end(call.hear("double seven one two")).rule is EndRule.EXPECTATION


def test_expectations_off_leave_every_turn_to_the_turn_rule() -> None:
    call = _Call(YES_NO, expectations=False, speculate=False)
    call.speak(480)
    call.pause(200)
    assert call.hear("yes") == [] and [type(d) for d in call.out] == [AskTurnModel]


def test_expect_applies_to_the_open_turn() -> None:
    call = _Call()
    call.speak(480)
    call.pause(64)
    call.hear("yes")
    assert _only_end(call.feed(Expect(expectation=YES_NO))).rule is EndRule.EXPECTATION


def test_close_turn_discards_the_speculation_and_ends_nothing() -> None:
    call = _Call()
    call.speak(480)
    call.pause(200)
    [speculation] = call.of(SpeculateReply)
    assert call.policy.close_turn() == [
        DiscardReply(speculation_id=speculation.speculation_id, turn=1)]
    assert call.policy.close_turn() == [] and call.policy.phase is TurnPhase.IDLE
    call.speak(320)
    assert call.policy.turn == 2


# ------------------------------------------------------------------ records and settings


def test_settings_are_laid_over_the_defaults() -> None:
    endpointing: dict[str, float | str] = {
        "min_silence_ms": 450.0, "speech_pad_ms": 300.0, "turn_policy": "silence",
        "short_pause_ms": 150.0, "turn_threshold": 0.7, "max_utterance_s": 15.0,
    }
    config = TurnPolicyConfig().updated(endpointing)
    assert (config.turn_policy, config.min_silence_ms, config.short_pause_ms) == (
        TurnRule.SILENCE, 450, 150)
    assert config.turn_threshold == 0.7 and config.max_silence_ms == 1500


SCENARIO = """\
name: mini
settings:
  endpointing:
    min_silence_ms: 450
    turn_policy: model
    short_pause_ms: 150
    max_silence_ms: 1200
    digits_max_silence_ms: 3000
    turn_threshold: 0.6
start: hello
intents:
  bye:
    examples: [goodbye]
states:
  hello:
    actions:
      - say: Hi.
    on:
      bye: done
  done:
    actions:
      - hangup: finished
"""


def test_a_scenario_tunes_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(SCENARIO)
    settings = load_scenario(path).settings
    assert settings.endpointing == {"min_silence_ms": 450.0}  # the endpointer's keys only
    assert EndpointConfig().updated(settings.endpointing).min_silence_ms == 450
    config = TurnPolicyConfig().updated({**settings.endpointing, **settings.turn_taking})
    assert config == TurnPolicyConfig(
        turn_policy=TurnRule.MODEL, short_pause_ms=150, max_silence_ms=1200,
        digits_max_silence_ms=3000, turn_threshold=0.6, min_silence_ms=450)


@pytest.mark.parametrize(("line", "bad", "problem"), [
    (5, "    turn_policy: smart", "'turn_policy' must be silence or model"),
    (6, "    short_pause_ms: 0", "'short_pause_ms' must be a positive number"),
    (6, "    short_pause_ms: 1300", "'short_pause_ms' must be shorter than 'max_silence_ms'"),
    (9, "    turn_threshold: 1.5", "'turn_threshold' must be a number in (0, 1]"),
    (9, "    turn_threshold: yes", "'turn_threshold' must be a number in (0, 1]"),
    (9, "    turn_treshold: 0.5", "unknown key 'turn_treshold' in endpointing"),
])
def test_bad_policy_settings_are_refused_at_their_line(
    tmp_path: Path, line: int, bad: str, problem: str
) -> None:
    lines = SCENARIO.splitlines()
    lines[line - 1] = bad  # the line of the same key (a typo of it, last)
    path = tmp_path / "mini.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=rf":{line}: {re.escape(problem)}"):
        load_scenario(path)
    errors = [p for p in check_scenario(path).problems if p.severity == "error"]
    assert [(p.line, p.message) for p in errors] == [(line, problem)]


@pytest.mark.parametrize("bad", [{"short_pause_ms": 1500}, {"max_silence_ms": 0},
                                 {"turn_threshold": 0.0}, {"turn_threshold": float("nan")},
                                 {"digits_min_silence_ms": -1}])
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TurnPolicyConfig().updated(bad)


def test_records_are_frozen_and_keep_transcripts_out_of_logs() -> None:
    partial = Partial(text="four two one seven", audio_end_ms=10)
    assert "four" not in repr(partial) and "18 chars" in repr(partial)
    with pytest.raises(FrozenInstanceError):
        partial.text = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Verdict(request_id=1, complete_probability=1.5)
    with pytest.raises(ValueError):
        Expectation(kind=ExpectKind.YES_NO, length=4)
    assert Expectation.for_slot("text") == Expectation.for_slot(None) == Expectation()


def test_endpointer_events_map_to_speech_and_silence() -> None:
    audio = np.zeros(0, dtype=np.int16)
    assert turn_event(SpeechStarted(onset_sample=3200, audio=audio),
                      sample_rate_hz=16_000) == Speech(at_ms=200)
    assert turn_event(SpeechResumed(8000), sample_rate_hz=8_000) == Speech(at_ms=1000)
    assert turn_event(SilenceStarted(16_000), sample_rate_hz=16_000) == Silence(at_ms=1000)
    assert turn_event(SpeechEnded(16_000, "silence"), sample_rate_hz=16_000) is None
