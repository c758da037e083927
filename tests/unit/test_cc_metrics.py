"""Contact-center metrics from the dialog to /metrics, without a server.

The dialog engine says when it asks again (:class:`Retried`); the Session carries it in
``ReplyStarted.kind`` / ``retry_state``; :class:`server.metrics.CallCounters` counts
replies and call ends under bounded labels; the admission gauges read the admission
state at each scrape; the cell pool reports a restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.admission import Admission, AdmissionConfig
from server.call_log import CallLog, CallLogSinks
from server.cells import CellPool
from server.metrics import CALL_OUTCOMES, NO_INTENT, Metrics, listening_states
from tests.unit.test_health import SPEC, sleepy_cell
from voicebot import protocol as p
from voicebot.commands import CallEnded, CallOutcome, ReplyKind, ReplyStarted
from voicebot.dialog.engine import (
    DialogEngine,
    EndCall,
    Prompt,
    Retried,
    UserInput,
    WebhookRequest,
    sort_outputs,
)
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Scenario
from voicebot.testing import SessionDriver, tone

__all__: list[str] = []

Make = Callable[..., SessionDriver]
START = p.Start(call_id="cc1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card")
READY = p.Ready(call_id="CA1", scenario="bank_card", encoding="pcm16", sample_rate_hz=16000)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _speak(d: SessionDriver) -> None:
    """The caller says a turn, then waits until the bot's reply has played out."""
    ends = len(d.of_type(p.BotSpeechEnd))
    d.audio_in(tone(800))
    d.silence(700)
    for _ in range(150):
        if len(d.of_type(p.BotSpeechEnd)) > ends or d.close is not None:
            return
        d.silence(100)


def _reply(**fields: object) -> ReplyStarted:
    base: dict[str, object] = dict(reply=2, turn=1, transcript="", intent=None,
                                   confidence=0.0, state="greeting", text="Hello.")
    return ReplyStarted(**{**base, **fields})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- dialog engine


def test_a_turn_not_understood_is_retried_then_falls_back(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    assert not any(isinstance(o, Retried) for o in d.start())
    for _ in range(2):
        out = d.handle(UserInput("purple elephants"))
        assert out[0] == Retried(state="greeting", fallback=False)
        assert isinstance(out[1], Prompt) and out[1].text.startswith("Sorry, I did not catch")
    out = d.handle(UserInput(source="no_input"))
    assert out[0] == Retried(state="greeting", fallback=True)  # where it gave up
    assert d.state.name == "transfer_agent" and out[-1] == EndCall("transfer",
                                                                   "card_services_agents")


def test_an_understood_turn_is_no_retry(bank_card: Scenario) -> None:
    d = DialogEngine(bank_card)
    d.start()
    out = d.handle(UserInput("I lost my card", "lost_card", 0.9))
    assert out and not any(isinstance(o, Retried) for o in out)
    out = d.handle(UserInput("maybe", None, 0.0, {}))  # the yes/no slot is asked again
    assert out[0] == Retried(state="lost_card", fallback=False)


def test_a_fallback_with_nowhere_to_go_hangs_up(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("""\
name: tiny
start: ask
settings: {max_retries: 0}
intents:
  yes_please: {examples: [yes please]}
states:
  ask:
    actions:
      - say: Well?
    on: {yes_please: done}
  done:
    actions:
      - hangup: done
""")
    d = DialogEngine(load_scenario(path))
    d.start()
    assert d.handle(UserInput("what")) == [Retried(state="ask", fallback=True),
                                          EndCall("hangup", "no_match")]


def test_sort_outputs_keeps_each_kind_in_order() -> None:
    hook = WebhookRequest(1, "http://127.0.0.1:9/x", {}, 500)
    step = sort_outputs([Retried(state="a", fallback=False), Prompt("One."), hook,
                         Prompt("Two."), EndCall("hangup", "done")])
    assert step.texts == ("One.", "Two.") and step.webhooks == (hook,)
    assert step.final == EndCall("hangup", "done")
    assert step.retried == Retried(state="a", fallback=False)
    assert sort_outputs([]).final is None and sort_outputs([]).retried is None


# ---------------------------------------------------------------------- the Session


def test_replies_say_answer_reprompt_and_fallback(make_driver: Make) -> None:
    d = make_driver("purple elephants", "banana bread", "quantum physics")
    d.text(START)
    d.silence(6000)  # the greeting plays out
    for _ in range(3):
        _speak(d)
    kinds = [(r.source, r.kind, r.retry_state, r.state) for r in d.replies]
    assert kinds == [
        ("greeting", ReplyKind.ANSWER, "", "greeting"),
        ("speech", ReplyKind.REPROMPT, "greeting", "greeting"),
        ("speech", ReplyKind.REPROMPT, "greeting", "greeting"),
        ("speech", ReplyKind.FALLBACK, "greeting", "transfer_agent"),
    ]
    assert [r.intent for r in d.replies[1:]] == ["fallback"] * 3  # shown, not recognised


def test_a_silent_caller_is_reprompted_as_no_input(make_driver: Make) -> None:
    d = make_driver()
    d.text(START)
    d.silence(6000)
    d.silence(8200)  # past the scenario's no_input_timeout_ms
    last = d.replies[-1]
    assert (last.source, last.kind, last.retry_state) == ("no_input", ReplyKind.REPROMPT,
                                                          "greeting")


def test_a_short_card_number_on_the_keypad_is_a_reprompt_of_the_slot(make_driver: Make) -> None:
    d = make_driver("check my balance")
    d.text(START)
    d.silence(6000)
    _speak(d)  # "Please tell me the last four digits ..."
    d.text(p.Dtmf("12#"))
    last = d.replies[-1]
    assert (last.source, last.kind, last.retry_state, last.state) == (
        "dtmf", ReplyKind.REPROMPT, "balance", "balance")
    assert "12" not in last.transcript  # keys pressed for the card stay masked


# ---------------------------------------------------------------------- the counters


def test_series_of_every_loaded_scenario_start_at_zero(bank_card: Scenario) -> None:
    metrics = Metrics()
    metrics.follow(Admission(AdmissionConfig()), [bank_card])
    for outcome in CALL_OUTCOMES:
        assert _sample(metrics, "voicebot_call_outcomes_total", scenario="bank_card",
                       outcome=outcome) == 0
    for intent in (*bank_card.intents, NO_INTENT):
        assert _sample(metrics, "voicebot_intents_total", scenario="bank_card",
                       intent=intent) == 0
    states = listening_states(bank_card)
    assert set(states) == {"greeting", "balance", "lost_card", "anything_else"}
    for name in ("reprompts", "fallbacks", "no_input_timeouts"):
        for state in states:
            assert _sample(metrics, f"voicebot_{name}_total", scenario="bank_card",
                           state=state) == 0


def test_replies_count_intents_reprompts_fallbacks_and_no_input(bank_card: Scenario) -> None:
    metrics = Metrics()
    metrics.follow(Admission(AdmissionConfig()), [bank_card])
    counters = metrics.call_counters
    counters.reply("bank_card", _reply(source="greeting", turn=0))
    counters.reply("bank_card", _reply(source="speech", intent="lost_card", confidence=0.9,
                                       state="lost_card"))
    counters.reply("bank_card", _reply(source="speech", intent="fallback",
                                       kind=ReplyKind.REPROMPT, retry_state="lost_card",
                                       state="lost_card"))
    counters.reply("bank_card", _reply(source="dtmf", intent="dtmf", kind=ReplyKind.REPROMPT,
                                       retry_state="lost_card", state="lost_card"))
    counters.reply("bank_card", _reply(source="no_input", kind=ReplyKind.FALLBACK,
                                       retry_state="lost_card", state="transfer_agent"))
    counters.reply("bank_card", _reply(source="webhook"))
    counters.reply("elsewhere", _reply(source="speech", intent="lost_card"))  # not loaded

    def value(name: str, **labels: str) -> float | None:
        return _sample(metrics, name, scenario="bank_card", **labels)

    assert value("voicebot_intents_total", intent="lost_card") == 1
    assert value("voicebot_intents_total", intent=NO_INTENT) == 2  # "fallback", keys
    assert value("voicebot_intents_total", intent="fallback") is None
    assert value("voicebot_reprompts_total", state="lost_card") == 2
    assert value("voicebot_fallbacks_total", state="lost_card") == 1
    assert value("voicebot_fallbacks_total", state="transfer_agent") is None
    assert value("voicebot_no_input_timeouts_total", state="lost_card") == 1
    assert _sample(metrics, "voicebot_intents_total", scenario="elsewhere",
                   intent="lost_card") is None


async def test_a_call_log_counts_its_outcome_once_at_close(bank_card: Scenario) -> None:
    metrics = Metrics()
    metrics.follow(Admission(AdmissionConfig()), [bank_card])
    counters = metrics.call_counters
    transferred = CallLog(CallLogSinks(), call_id="c1", provider="native", counters=counters)
    transferred.started(READY, metadata={})
    transferred.reply_started(_reply(source="speech", intent="operator", confidence=0.9,
                                     state="transfer_agent"),
                              at_ms=0, latency_ms=300, parts_ms={})
    transferred.ended(CallEnded(CallOutcome.TRANSFERRED, "card_services_agents"))
    transferred.failed("later")  # the first word stands
    await transferred.close(at_ms=1000)
    hung_up = CallLog(CallLogSinks(), call_id="c2", provider="native", counters=counters)
    hung_up.started(READY, metadata={})
    await hung_up.close(at_ms=500)  # no word from the Session: the caller went away
    never = CallLog(CallLogSinks(), call_id="c3", provider="native", counters=counters)
    await never.close(at_ms=0)  # never started: no scenario, not counted
    counts = {o: _sample(metrics, "voicebot_call_outcomes_total", scenario="bank_card",
                         outcome=o) for o in CALL_OUTCOMES}
    assert counts == {"completed": 0, "transferred": 1, "caller_hung_up": 1, "failed": 0}
    assert _sample(metrics, "voicebot_intents_total", scenario="bank_card",
                   intent="operator") == 1


# ---------------------------------------------------------------------- gauges


def _scrape(metrics: Metrics) -> dict[str, float]:
    """The unlabelled samples of the exposition, as Prometheus parses them."""
    text = metrics.exposition().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if not s.labels}


def test_admission_gauges_follow_what_readyz_would_answer(bank_card: Scenario) -> None:
    admission = Admission(AdmissionConfig(dialogs_per_core=2, cores=2, slo_p95_ms=1200))
    metrics = Metrics()
    metrics.follow(admission, [bank_card])
    scraped = _scrape(metrics)
    assert scraped["voicebot_capacity_dialogs"] == 4
    assert scraped["voicebot_ready"] == 1 and scraped["voicebot_draining"] == 0
    assert scraped["voicebot_slo_p95_seconds"] == 1.2
    cells = [admission.admit() for _ in range(4)]
    assert admission.refusal() == "full" and _scrape(metrics)["voicebot_ready"] == 0
    admission.release(cells[0])
    assert _scrape(metrics)["voicebot_ready"] == 1
    admission.set_cells(["1"])  # cell 0 died: its capacity goes
    scraped = _scrape(metrics)
    assert scraped["voicebot_capacity_dialogs"] == 2 and scraped["voicebot_ready"] == 0
    admission.set_cells(["0", "1"])
    admission.draining = True
    scraped = _scrape(metrics)
    assert scraped["voicebot_draining"] == 1 and scraped["voicebot_ready"] == 0
    assert admission.refusal() == "draining"


def test_slow_turns_make_a_busy_node_unready(bank_card: Scenario) -> None:
    now = [0.0]
    admission = Admission(AdmissionConfig(dialogs_per_core=4, cores=1, slo_p95_ms=500),
                          clock=lambda: now[0])
    metrics = Metrics()
    metrics.follow(admission, [bank_card])
    admission.admit()
    for _ in range(5):
        admission.record_turn(900.0, "0")
    assert admission.refusal() == "slo" and _scrape(metrics)["voicebot_ready"] == 0
    assert _scrape(metrics)["voicebot_capacity_dialogs"] == 4  # capacity is not latency


# ---------------------------------------------------------------------- cell restarts


async def test_the_pool_reports_a_restarted_cell() -> None:
    pool = CellPool([SPEC], worker=sleepy_cell)
    restarted: list[int] = []
    pool.on_restart = restarted.append
    await pool.start()
    try:
        victim = pool.cells[0].pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        await _until(lambda: bool(restarted) and bool(pool.ready_cells()), 30.0)
        assert restarted == [0] and pool.cells[0].pid != victim
    finally:
        pool.stop()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        await asyncio.sleep(0.05)

