"""How a server's calls end the caller's turn: the Sessions' end-of-turn settings, checked.

``turn_policy`` (a stack's setting, the config file's key) is the default of every
scenario whose ``settings.endpointing`` does not choose one: ``silence`` (the
endpointer's fixed pause) or ``model`` (the end-of-turn policy of
:mod:`voicebot.vad.turn_policy`, which asks the end-of-turn model, ``engines: turn``,
at each short pause).  :func:`session_config` builds the Sessions' configuration and
refuses, at start, a scenario that would end its turns with a model the server has
not loaded, or whose policy settings do not fit together with the server's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from voicebot.dialog.scenario import Scenario
from voicebot.engines.base import SpeechDetector
from voicebot.errors import ConfigError
from voicebot.session_setup import SILENCE_POLICY, SessionConfig, turn_config
from voicebot.turn.features import SAMPLE_RATE_HZ
from voicebot.vad.turn_records import TurnRule

from .config import ServerConfig

__all__ = ["check_turn_taking", "session_config"]

log = logging.getLogger(__name__)


def session_config(config: ServerConfig, detector: SpeechDetector,
                   scenarios: Iterable[Scenario]) -> SessionConfig:
    """The configuration of every call's Session; ConfigError when a scenario's turn
    taking cannot run on this server (:func:`check_turn_taking`)."""
    session = SessionConfig(
        default_scenario=config.default_scenario,
        asr_rate_hz=detector.sample_rate_hz,
        vad_window_samples=detector.window_samples,
        speculative_asr_ms=config.speculative_asr_ms,
        speculative_replies=config.speculative_replies,
        turn=replace(SILENCE_POLICY.updated(config.turn_taking),
                     turn_policy=TurnRule(config.turn_policy)),
    )
    check_turn_taking(session, scenarios, turn_engine=config.engines.turn)
    return session


def check_turn_taking(session: SessionConfig, scenarios: Iterable[Scenario], *,
                      turn_engine: str | None) -> dict[str, TurnRule]:
    """Each scenario's end-of-turn rule (logged); ConfigError naming the scenario when its
    settings and the server's do not fit (``short_pause_ms`` not below
    ``max_silence_ms``), or when it ends turns with the model and ``turn_engine`` is None."""
    rules: dict[str, TurnRule] = {}
    for scenario in scenarios:
        try:
            turn = turn_config(session, scenario)
        except ConfigError as exc:
            raise ConfigError(f"scenario {scenario.name!r} ({scenario.path}): {exc}") from None
        rules[scenario.name] = turn.turn_policy
        if turn.turn_policy is not TurnRule.MODEL:
            continue
        if turn_engine is None:
            chosen = ("its settings.endpointing" if "turn_policy" in scenario.settings.turn_taking
                      else "the server's turn_policy, from its stack or config file")
            raise ConfigError(
                f"scenario {scenario.name!r} ({scenario.path}) ends turns with turn_policy: "
                f"model ({chosen}), but this server loads no end-of-turn model: set 'engines: "
                "turn: smart-turn' in the config file, or turn_policy: silence")
        if session.asr_rate_hz != SAMPLE_RATE_HZ:
            raise ConfigError(f"turn_policy: model needs the VAD at {SAMPLE_RATE_HZ} Hz "
                              f"(the turn model's rate), not {session.asr_rate_hz} Hz")
    model = sorted(name for name, rule in rules.items() if rule is TurnRule.MODEL)
    log.info("end of turn: %s%s", f"turn model {turn_engine} for " + ", ".join(model)
             if model else "the silence rule for every scenario",
             "; silence rule for " + ", ".join(sorted(set(rules) - set(model)))
             if model and len(model) < len(rules) else "")
    return rules
