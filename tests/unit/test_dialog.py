"""The dialog interpreter on the demo scenario and on small made-up ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voicebot.dialog.engine import DialogEngine, EndCall, Prompt, UserInput, WebhookRequest
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Scenario

__all__: list[str] = []


def said(outputs: Sequence[object]) -> list[str]:
    return [o.text for o in outputs if isinstance(o, Prompt)]


def test_balance_by_voice_with_digits_in_first_utterance(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    out = d.handle(UserInput("balance for card 9031", "check_balance", 0.9, {"digits": "9031"}))
    assert said(out)[0] == "The current balance on your card ending in 9031 is 87.15 dollars."


def test_slot_reprompt_then_fallback(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    d.handle(UserInput("what is my balance", "check_balance", 0.9))
    assert d.expected_slot is not None and d.expected_slot.name == "card_last4"
    for _ in range(2):
        out = d.handle(UserInput("one two", None, 0.0, {"digits": "12"}))
        assert said(out) == ["Sorry, I need exactly four digits, for example four two one seven."]
    out = d.handle(UserInput("hmm"))
    assert out[-1] == EndCall("transfer", "card_services_agents")
    assert d.finished and d.handle(UserInput("hello")) == []


def test_global_intent_while_asking_slot(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    d.handle(UserInput("I lost my card", "lost_card", 0.9))
    out = d.handle(UserInput("let me talk to a person", "operator", 0.8))
    assert out[-1] == EndCall("transfer", "card_services_agents")


def test_a_slot_like_or_unsure_answer_never_leaves_the_slot(bank_card: Scenario) -> None:
    """'zero eight five nine' half-heard as 'zero eight bye nine' matched goodbye: the
    caller is asked again, not hung up on."""
    d = DialogEngine(bank_card)
    d.start()
    d.handle(UserInput("what is my balance", "check_balance", 0.9))
    out = d.handle(UserInput("zero eight bye nine", "goodbye", 0.95, {"digits": "089"}))
    assert said(out) == ["Sorry, I need exactly four digits, for example four two one seven."]
    out = d.handle(UserInput("bye", "goodbye", 0.6))  # not confident enough to leave
    assert said(out) == ["Sorry, I need exactly four digits, for example four two one seven."]
    assert not d.finished and d.expected_slot is not None
    out = d.handle(UserInput("four two bye", "goodbye", 0.99, {"digits": "42"}))
    assert out[-1] == EndCall("transfer", "card_services_agents")  # retries spent: an agent


def test_a_confident_global_intent_still_leaves_a_slot(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    d.handle(UserInput("what is my balance", "check_balance", 0.9))
    out = d.handle(UserInput("goodbye", "goodbye", 0.95))
    assert isinstance(out[-1], EndCall) and out[-1].kind == "hangup"


def test_low_confidence_is_not_trusted(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    out = d.handle(UserInput("goodbye maybe", "goodbye", 0.3))
    assert said(out)[0].startswith("Sorry, I did not catch that.")
    assert not d.finished


def test_decline_blocking(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    d.handle(UserInput("I lost my card", "lost_card", 0.9))
    out = d.handle(UserInput("no", None, 0.0, {"yes_no": False}))
    assert said(out) == ["All right, I have not blocked your card.",
                         "Is there anything else I can help you with?"]


def test_webhook_and_set_clear(tmp_path: Path) -> None:
    path = tmp_path / "hook.yaml"
    path.write_text("""\
name: hook
start: a
intents:
  x: {examples: [x]}
slots:
  code: {type: digits, prompt: Code please.}
states:
  a:
    actions:
      - set: {code: "12"}
      - webhook: {url: "http://127.0.0.1:9/x", as: account, timeout_ms: 500, on_error: oops}
      - say: Hello {account.name}, code {code}.
      - clear: code
      - ask: code
      - say: Thanks {code}.
      - hangup: done
  oops:
    actions:
      - say: The system is down.
      - transfer: humans
""")
    scenario = load_scenario(path)
    d = DialogEngine(scenario)
    out = d.start()
    assert isinstance(out[0], WebhookRequest) and out[0].payload["slots"] == {"code": "12"}
    assert d.webhook_result(99, {"name": "stale"}, None) == []  # unknown request id
    out = d.webhook_result(out[0].request_id, {"name": "Ana"}, None)
    assert said(out) == ["Hello Ana, code 12.", "Code please."]
    out = d.handle(UserInput("", None, 0.0, {"digits": "77"}, "dtmf"))
    assert said(out) == ["Thanks 77."] and out[-1] == EndCall("hangup", "done")
    d2 = DialogEngine(scenario)
    req = d2.start()[0]
    assert isinstance(req, WebhookRequest)
    out = d2.webhook_result(req.request_id, None, "timed out")
    assert said(out) == ["The system is down."] and out[-1] == EndCall("transfer", "humans")
