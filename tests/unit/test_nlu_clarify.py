"""The dialog's clarifying question between two close intents (settings.clarify_margin)."""

from __future__ import annotations

from pathlib import Path

from voicebot.dialog.engine import DialogEngine, Prompt, UserInput
from voicebot.dialog.loader import load_scenario

__all__: list[str] = []

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "bank_card.yaml"


def _dialog() -> DialogEngine:
    d = DialogEngine(load_scenario(SCENARIO))
    d.start()
    return d


def _close() -> UserInput:
    return UserInput("my card balance is gone", "lost_card", 0.45,
                     alternatives=(("check_balance", 0.35), ("operator", 0.1)))


def test_close_intents_are_asked_about_then_the_answer_decides() -> None:
    d = _dialog()
    out = d.handle(_close())
    assert out == [Prompt("Sorry, did you want to report a lost or stolen card, "
                          "or to check your balance?")]
    assert d.retries == 0 and d.listening
    d.handle(UserInput("my balance", "check_balance", 0.4,
                       alternatives=(("lost_card", 0.3),)))
    assert d.state.name != "start" and d.expected_slot is not None
    assert d.expected_slot.name == "card_last4"


def test_not_asked_twice_about_the_same_pair() -> None:
    d = _dialog()
    d.handle(_close())
    out = d.handle(UserInput("hmm", "lost_card", 0.3, alternatives=(("check_balance", 0.3),)))
    assert d.retries == 1 and not any("did you want" in o.text for o in out
                                       if isinstance(o, Prompt))


def test_clear_answers_and_no_alternatives_are_not_asked_about() -> None:
    d = _dialog()
    out = d.handle(UserInput("I lost my card", "lost_card", 0.9,
                             alternatives=(("check_balance", 0.05),)))
    assert not any(isinstance(o, Prompt) and "did you want" in o.text for o in out)
    d = _dialog()
    out = d.handle(UserInput("my card balance is gone", "lost_card", 0.45))
    assert d.retries == 1  # without the runner-up (Session not passing it): a reprompt
