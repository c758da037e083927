"""Sensitive slots: what leaves the dialog is masked, the recording pauses, calls end
with an outcome (voicebot.redact, voicebot.session_privacy, the Session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot import protocol as p
from voicebot.commands import CallOutcome, RecordingPause
from voicebot.dialog.loader import load_scenario
from voicebot.errors import ScenarioError
from voicebot.redact import MASK, Redactor, mask_numbers
from voicebot.testing import SessionDriver, tone

__all__: list[str] = []

Make = Callable[..., SessionDriver]
START = p.Start(call_id="t1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# ---------------------------------------------------------------------- masks


@given(st.text("0123456789", min_size=4, max_size=16), st.sampled_from(["", " ", "-", ", "]))
def test_a_known_value_is_masked_however_it_is_written(digits: str, sep: str) -> None:
    redactor = Redactor()
    redactor.add(digits)
    for written in (digits, sep.join(digits), " ".join(WORDS[int(d)] for d in digits)):
        masked = redactor.text(f"card ending in {written}, thanks")
        assert masked == f"card ending in {MASK}, thanks"
        assert digits not in masked.replace(" ", "").replace("-", "")


def test_other_numbers_stay_and_nothing_known_masks_nothing() -> None:
    redactor = Redactor()
    assert redactor.text("card 4217") == "card 4217" and not redactor.active
    redactor.add("4217")
    assert redactor.text("The balance on 4217 is 1,250.40 dollars") == (
        f"The balance on {MASK} is 1,250.40 dollars")
    assert redactor.text("call 42171") == "call 42171"  # a longer number is another one
    assert redactor.slots({"card_last4": "4217", "name": "Ann 4217"}, ["card_last4"]) == {
        "card_last4": MASK, "name": f"Ann {MASK}"}


@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.booleans())
def test_mask_numbers_leaves_no_digit_or_digit_word(digits: list[int], words: bool) -> None:
    spoken = " ".join(WORDS[d] if words else str(d) for d in digits)
    masked = mask_numbers(f"it's {spoken} okay")
    assert not any(ch.isdigit() for ch in masked)
    assert not any(w in masked.split() for w in WORDS if len(w) > 2)
    assert masked.startswith("it's ") and masked.endswith(" okay")


def test_sensitive_is_parsed_and_checked(tmp_path: Path) -> None:
    text = ("name: s\nintents: {a: {examples: [x]}}\nslots:\n"
            "  pin: {type: digits, length: 4, prompt: P, sensitive: %s}\n"
            "start: s0\nstates:\n  s0: {actions: [{ask: pin}, {hangup: done}]}\n")
    path = tmp_path / "s.yaml"
    for written, value in (("true", True), ("false", False)):
        path.write_text(text % written)
        assert load_scenario(path).slots["pin"].sensitive is value
    path.write_text(text % "'yes'")
    with pytest.raises(ScenarioError, match="'sensitive' must be true or false"):
        load_scenario(path)


# ---------------------------------------------------------------------- the Session


def _greeted(d: SessionDriver) -> None:
    d.text(START)
    d.silence(6000)


def _speak(d: SessionDriver) -> None:
    d.audio_in(tone(800))
    d.silence(900)


def _wait(d: SessionDriver) -> None:
    ends = len(d.of_type(p.BotSpeechEnd))
    for _ in range(150):
        if len(d.of_type(p.BotSpeechEnd)) > ends or d.close is not None:
            return
        d.silence(100)


def _texts(d: SessionDriver) -> str:
    return " | ".join(f"{r.transcript} {r.text} {dict(r.slots)}" for r in d.replies) + " ".join(
        b.unheard for b in d.barged)


def test_a_spoken_card_number_is_masked_and_paused(make_driver: Make) -> None:
    d = make_driver("what is my balance", "five three one four", "goodbye")
    _greeted(d)
    _speak(d)
    assert d.pauses == [RecordingPause(paused=True, reason="sensitive slot card_last4")]
    _wait(d)
    _speak(d)
    # the bot read the value back ("card ending in ..."): still paused while that plays
    assert d.of_type(p.BotSpeechStart)[-1].text == (
        "I could not find a card ending in 5314. Is there anything else I can help you with?")
    assert d.pauses[-1].paused
    _wait(d)
    assert d.pauses[-1] == RecordingPause(paused=False, reason="")
    answer = d.replies[2]
    assert (answer.source, answer.transcript, answer.sensitive) == ("speech", MASK, True)
    assert answer.text == f"I could not find a card ending in {MASK}. Is there anything else " \
                          "I can help you with?"
    _speak(d)
    _wait(d)
    assert "5314" not in _texts(d) and "five three" not in _texts(d)
    assert [(e.outcome, e.reason) for e in d.ended] == [(CallOutcome.COMPLETED, "completed")]


def test_keyed_digits_are_masked_and_known_cards_too(make_driver: Make) -> None:
    d = make_driver("what is my balance")
    _greeted(d)
    _speak(d)
    _wait(d)
    d.text(p.Dtmf("4217"))
    answer = d.replies[-1]
    assert (answer.source, answer.transcript) == ("dtmf", MASK)
    assert answer.text.startswith(f"The current balance on your card ending in {MASK} is "
                                  "1,250.40 dollars")
    assert answer.slots == {"card_last4": MASK}
    assert "4217" not in _texts(d)


def test_an_interrupted_read_back_is_masked(make_driver: Make) -> None:
    d = make_driver("what is my balance", "I lost my card")
    _greeted(d)
    _speak(d)
    _wait(d)
    d.text(p.Dtmf("4217"))
    d.silence(300)
    _speak(d)  # barges in on "... ending in 4217 ..."
    assert d.barged and "4217" not in d.barged[-1].unheard
    assert not d.pauses[-1].paused  # the sensitive reply stopped: recording resumes


def test_calls_end_with_an_outcome(make_driver: Make) -> None:
    d = make_driver("I want to speak to an agent")
    _greeted(d)
    _speak(d)
    _wait(d)
    assert [e.outcome for e in d.ended] == [CallOutcome.TRANSFERRED]
    d = make_driver()
    _greeted(d)
    d.text(p.Stop())
    assert [(e.outcome, e.reason) for e in d.ended] == [
        (CallOutcome.CALLER_HUNG_UP, "caller_hangup")]
    d = make_driver()
    _greeted(d)
    d.run(d.session.connection_lost())
    assert [e.outcome for e in d.ended] == [CallOutcome.CALLER_HUNG_UP]
    d.run(d.session.connection_lost())  # once only
    assert len(d.ended) == 1
    d = make_driver()
    _greeted(d)
    d.text('{"type": "start", "call_id": "x", "encoding": "pcm16", "sample_rate_hz": 16000}')
    assert [e.outcome for e in d.ended] == [CallOutcome.FAILED]
    assert d.ended[0].reason.startswith("protocol error: second 'start'")
