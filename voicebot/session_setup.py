"""Setting up one call from its ``start`` message: the parts a Session routes between.

:func:`open_call` checks the scenario asked for and builds, at the call's
encoding and rate, the audio front (resampler), the turn taking (endpointer with
the scenario's endpointing, and under ``turn_policy: model`` the end-of-turn
policy), the replies and the dialog.  Pure: nothing here runs a model or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, frame_bytes
from voicebot.audio.resample import StreamResampler
from voicebot.dialog.engine import DialogEngine
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ProtocolError
from voicebot.session_ahead import RepliesAhead
from voicebot.session_replies import Replies
from voicebot.session_turn_end import TurnEnding
from voicebot.session_turns import TurnTaking
from voicebot.vad.endpointer import EndpointConfig, Endpointer
from voicebot.vad.turn_policy import EndOfTurnPolicy
from voicebot.vad.turn_records import TurnPolicyConfig, TurnRule

__all__ = ["SILENCE_POLICY", "CallParts", "SessionConfig", "open_call", "turn_config"]

SILENCE_POLICY = TurnPolicyConfig(turn_policy=TurnRule.SILENCE, speculate=False)
"""The endpointer's fixed silence ends turns (the default when nothing says otherwise)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Defaults for every call; a scenario's ``settings`` override per call."""

    default_scenario: str = "bank_card"
    asr_rate_hz: int = 16_000
    vad_window_samples: int = 512
    frame_ms: int = 20
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    speculative_asr_ms: int = 0
    """Start the final ASR after this much silence, before the endpoint (0: off)."""
    speculative_replies: bool = False
    """Carry each speculative transcript on through NLU, the dialog and the first
    sentence's synthesis, held until the turn ends on it (:mod:`voicebot.session_ahead`;
    needs ``speculative_asr_ms``)."""
    turn: TurnPolicyConfig = SILENCE_POLICY
    """The end-of-turn policy of scenarios whose ``endpointing`` does not choose one
    (``turn_policy: model`` needs an end-of-turn model among the engines)."""


def turn_config(config: SessionConfig, scenario: Scenario) -> TurnPolicyConfig:
    """The end-of-turn policy of ``scenario``'s calls: the server's, with the scenario's
    ``settings.endpointing`` keys laid over it (replies are not speculated)."""
    return config.turn.updated({**scenario.settings.turn_taking, "speculate": False})


@dataclass(frozen=True, slots=True)
class CallParts:
    """What a call is made of once it has started."""

    scenario: Scenario
    dialog: DialogEngine
    encoding: AudioEncoding
    rate_hz: int
    resampler: StreamResampler
    listening: TurnTaking
    replies: Replies
    ahead: RepliesAhead | None
    """Speculative replies (None: off)."""


def open_call(message: p.Start, *, scenarios: Mapping[str, Scenario], config: SessionConfig,
              marks: bool) -> CallParts:
    """The parts of the call ``message`` starts; a ProtocolError for an unknown scenario."""
    name = message.scenario or config.default_scenario
    scenario = scenarios.get(name)
    if scenario is None:
        raise ProtocolError(
            f"unknown scenario {name!r}; this server has {', '.join(sorted(scenarios))}",
            close_code=p.CloseCode.UNKNOWN_SCENARIO,
        )
    encoding, rate_hz = AudioEncoding(message.encoding), message.sample_rate_hz
    settings = scenario.settings
    endpoint = config.endpoint.updated(settings.endpointing)
    turn = turn_config(config, scenario)
    ending: TurnEnding | None = None
    if turn.turn_policy is TurnRule.MODEL:
        ending = TurnEnding(EndOfTurnPolicy(turn), sample_rate_hz=config.asr_rate_hz)
        # The policy ends turns: the endpointer's own silence rule must never come first.
        beyond_ms = ending.longest_pause_ms + 1000
        endpoint = endpoint.updated({
            "min_silence_ms": max(endpoint.min_silence_ms, beyond_ms),
            "digits_min_silence_ms": max(endpoint.digits_min_silence_ms, beyond_ms)})
    endpointer = Endpointer(endpoint, sample_rate_hz=config.asr_rate_hz,
                            window_samples=config.vad_window_samples)
    listening = TurnTaking(
        endpointer, asr_rate_hz=config.asr_rate_hz,
        barge_in_samples=settings.barge_in_min_ms * config.asr_rate_hz // 1000,
        speculate_samples=config.speculative_asr_ms * config.asr_rate_hz // 1000,
        domain_for=scenario.asr_domain, ending=ending,
    )  # fmt: skip
    replies = Replies(encoding=encoding, rate_hz=rate_hz, marks=marks,
                      frame_bytes=frame_bytes(encoding, rate_hz, config.frame_ms))
    return CallParts(
        scenario=scenario, dialog=DialogEngine(scenario), encoding=encoding, rate_hz=rate_hz,
        resampler=StreamResampler(in_rate_hz=rate_hz, out_rate_hz=config.asr_rate_hz),
        listening=listening, replies=replies,
        ahead=RepliesAhead(replies, rate_hz=rate_hz)
        if config.speculative_replies and config.speculative_asr_ms else None,
    )  # fmt: skip
