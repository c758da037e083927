"""The end of turn in the server, without sockets: the config and stack keys, the start-time
check of each scenario's policy, the turn log line, the metrics and the job measurements."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.call_log import CallLog, CallLogSinks
from server.config import ServerConfig, load_config
from server.metrics import END_RULES, Metrics
from server.stacks import get_stack, required_models
from server.turn_setup import check_turn_taking
from server.turn_timings import TurnTimings
from voicebot import protocol as p
from voicebot.commands import (
    CancelTranscription,
    DetectTurnEnd,
    DiscardSpeculation,
    FinishTranscription,
    ReplyStarted,
    SpeculateTranscription,
)
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ConfigError
from voicebot.session import SessionConfig
from voicebot.types import Transcript
from voicebot.vad.turn_records import TurnPolicyConfig, TurnRule

__all__: list[str] = []

READY = p.Ready(call_id="CA1", scenario="bank_card", encoding="mulaw", sample_rate_hz=8000)
MODEL = SessionConfig(turn=TurnPolicyConfig(turn_policy=TurnRule.MODEL, speculate=False))


def _samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode())
            for s in family.samples if s.name == name}


def test_the_whisper_stacks_load_smart_turn_and_every_stack_ends_turns_with_silence(
        tmp_path: Path) -> None:
    default = load_config(env={})
    assert (default.turn_policy, default.engines.turn) == ("silence", None)  # model: opt-in
    lite = load_config(env={"VOICEBOT_STACK": "lite"})
    assert (lite.turn_policy, lite.engines.turn) == ("silence", None)
    path = tmp_path / "voicebot.yaml"
    path.write_text("stack: lite\nturn_policy: model\nengines:\n  turn: fake\n")
    config = load_config(path, env={})
    assert (config.turn_policy, config.engines.all_names()["turn"]) == ("model", "fake")
    path.write_text("engines:\n  turn: none\n")  # the default stack without its model
    assert load_config(path, env={}).engines.all_names().get("turn") is None  # start refuses
    path.write_text("turn_policy: silence\nengines:\n  turn: none\n")
    assert "turn" not in load_config(path, env={}).engines.all_names()
    path.write_text("turn_policy: sometimes\n")
    with pytest.raises(ConfigError, match="turn_policy must be silence or model"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="unknown turn engine 'psychic'"):
        ServerConfig(engines=get_stack("lite").engines.merged({"turn": "psychic"}))


def test_a_turn_engine_named_without_options_pulls_its_default_model() -> None:
    lite = get_stack("lite").engines
    assert "smart-turn-v3.2" in required_models(lite.merged({"turn": "smart-turn"}))
    own = lite.merged({"turn": "smart-turn", "options": {"turn": {"model": "/m/st.onnx"}}})
    assert "smart-turn-v3.2" not in required_models(own)
    assert required_models(lite.merged({"turn": "fake"})) == required_models(lite)


def test_start_refuses_a_model_policy_without_a_turn_model(bank_card: Scenario) -> None:
    silence = SessionConfig()
    assert check_turn_taking(silence, [bank_card], turn_engine=None) == {
        "bank_card": TurnRule.SILENCE}
    with pytest.raises(ConfigError, match=r"scenario 'bank_card' \(.*bank_card.yaml\) ends "
                       r"turns with turn_policy: model \(the server's turn_policy, from its "
                       r"stack or config file\), but this server loads no end-of-turn model"):
        check_turn_taking(MODEL, [bank_card], turn_engine=None)
    assert check_turn_taking(MODEL, [bank_card], turn_engine="fake") == {
        "bank_card": TurnRule.MODEL}
    chooses = replace(bank_card, settings=replace(bank_card.settings,
                                                  turn_taking={"turn_policy": "model"}))
    with pytest.raises(ConfigError, match=r"\(its settings.endpointing\), but this server"):
        check_turn_taking(silence, [chooses], turn_engine=None)
    # A scenario's short pause must stay below the server's longest silence.
    long_pause = replace(bank_card, settings=replace(bank_card.settings,
                                                     turn_taking={"short_pause_ms": 1600}))
    with pytest.raises(ConfigError, match=r"'bank_card'.*short_pause_ms \(1600\) must be"):
        check_turn_taking(MODEL, [long_pause], turn_engine="fake")


def _turn(reply: int, **fields: object) -> ReplyStarted:
    base: dict[str, object] = dict(reply=reply, turn=reply - 1, transcript="yes",
                                   intent=None, confidence=0.0, state="s", text="Done.",
                                   source="speech")
    return ReplyStarted(**{**base, **fields})  # type: ignore[arg-type]


def test_the_turn_line_and_the_metrics_say_what_ended_each_turn(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    log = CallLog(CallLogSinks(), call_id="c1", provider="native",
                  counters=metrics.call_counters)
    log.started(READY, metadata={})
    caplog.set_level(logging.INFO, logger="voicebot.turns")
    log.reply_started(_turn(1, source="greeting"), at_ms=0, latency_ms=90, parts_ms={})
    log.reply_started(_turn(2, end_rule="model", turn_score=0.87), at_ms=900, latency_ms=310,
                      parts_ms={"endpoint_wait": 236, "turn_model": 12.4})
    log.reply_started(_turn(3, end_rule="max_silence"), at_ms=3000, latency_ms=1600,
                      parts_ms={"endpoint_wait": 1504})
    greeting, model, longest = (r.getMessage() for r in caplog.records)
    assert "end_rule" not in greeting
    assert "endpoint_wait_ms=236 turn_model_ms=12 end_rule=model turn_score=0.87 " \
           "waited_ms=236 transcript='yes'" in model
    assert "end_rule=max_silence turn_score=- waited_ms=1504" in longest
    ends = _samples(metrics, "voicebot_turn_end_total")
    assert ends == {(("rule", rule),): {"model": 1.0, "max_silence": 1.0}.get(rule, 0.0)
                    for rule in END_RULES}


def test_turn_timings_measure_the_turn_model_and_follow_the_speculations() -> None:
    metrics = Metrics()
    log = CallLog(CallLogSinks(), call_id="c1", provider="native",
                  counters=metrics.call_counters)
    timings = TurnTimings(None, log)
    pcm = np.zeros(16, dtype=np.int16)
    timings.done(DetectTurnEnd(1, 1, pcm), 0.2, 14.0)
    timings.done(SpeculateTranscription(1), Transcript("four two"), 90.0)
    timings.done(DiscardSpeculation(1), None, 0.1)  # the caller went on
    timings.done(SpeculateTranscription(1), Transcript("four two one seven"), 95.0)
    timings.done(DetectTurnEnd(1, 2, pcm), 0.9, 20.0)
    timings.endpoint(FinishTranscription(1, 240))
    timings.done(FinishTranscription(1, 240), Transcript("4217", None, 1200), 0.3)
    timings.done(SpeculateTranscription(2), None, 1.0)  # the ASR could not: nothing kept
    timings.done(SpeculateTranscription(3), Transcript("ahem"), 40.0)
    timings.done(CancelTranscription(3), None, 0.1)  # a cough while the bot spoke
    parts = timings.take(queue_wait_ms=3.0)
    assert parts == {"turn_model": 20.0, "endpoint_wait": 240.0, "asr": 0.3, "queue_wait": 3.0}
    assert timings.take(queue_wait_ms=0.0) == {"queue_wait": 0.0}
    speculations = _samples(metrics, "voicebot_speculations_total")
    assert speculations == {(("result", "started"),): 3.0, (("result", "used"),): 1.0,
                            (("result", "discarded"),): 2.0}
    assert _samples(metrics, "voicebot_turn_model_seconds_count") == {(): 2.0}
    assert _samples(metrics, "voicebot_turn_model_seconds_sum") == {(): pytest.approx(0.034)}


def test_server_wide_turn_taking_keys_and_speculative_replies(
        tmp_path: Path, bank_card: Scenario) -> None:
    from server.turn_setup import session_config
    from voicebot.engines.fakes import FakeSpeechDetector

    path = tmp_path / "voicebot.yaml"
    path.write_text("turn_policy: model\nengines: {turn: fake}\nspeculative_asr_ms: 100\n"
                    "speculative_replies: true\nturn_taking: {short_pause_ms: 100, "
                    "turn_threshold: 0.6}\n")
    config = load_config(path, env={})
    session = session_config(config, FakeSpeechDetector(), [bank_card])
    assert session.speculative_replies and session.speculative_asr_ms == 100
    assert (session.turn.turn_policy, session.turn.short_pause_ms,
            session.turn.turn_threshold) == (TurnRule.MODEL, 100, 0.6)
    assert session.turn.max_silence_ms == 1500  # the keys not named keep their defaults
    path.write_text('speculative_replies: "false"\n')
    assert load_config(path, env={}).speculative_replies is False  # not the string "false"
    for bad in ("turn_taking: {min_silence_ms: 300}\n", "turn_taking: {short_pause_ms: x}\n",
                "turn_taking: 100\n"):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="turn_taking"):
            load_config(path, env={})
    path.write_text("turn_taking: {short_pause_ms: 1600}\n")
    with pytest.raises(ConfigError, match=r"short_pause_ms \(1600\) must be shorter"):
        session_config(load_config(path, env={}), FakeSpeechDetector(), [bank_card])
