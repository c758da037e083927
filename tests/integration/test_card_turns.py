"""Recorded card numbers through whole Sessions on the default stack's real engines.

The card "zero six eight nine" (Debian's recorded Asterisk digits, 8 kHz μ-law) is
said after a balance request, at 8 alignments of the VAD's 32 ms windows on the
speech, through the Session with speculative ASR as the server runs it (Silero's
release, Whisper tiny.en with its 200 ms of lead silence, MiniLM).  Without the
lead silence tiny.en dropped the leading "zero" in 3 of the 8 alignments.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy_calls import make_cards, speak
from bench.accuracy_stacks import load_stack
from bench.whisper_digits import sounds_available
from voicebot import protocol as p
from voicebot.engines.engine_set import EngineSet
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import SessionDriver

__all__: list[str] = []

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sounds_available(),
                                 reason="asterisk-core-sounds-en-wav is not installed")]

ENCODING, RATE_HZ = "mulaw", 8000  # the phone line


def _wait_reply_end(d: SessionDriver) -> None:
    ends = len(d.of_type(p.BotSpeechEnd))
    for _ in range(1000):
        if len(d.of_type(p.BotSpeechEnd)) > ends:
            return
        d.silence(20, encoding=ENCODING, sample_rate_hz=RATE_HZ)
    raise AssertionError("the bot's reply did not end")


def test_a_leading_zero_is_heard_wherever_the_vad_windows_fall() -> None:
    from tests.integration.conftest import ensure_stack_models

    ensure_stack_models("default")
    stack = load_stack("default")
    scenario = stack.scenario()
    espeak = build_engine("tts", "espeak", EngineOptions())
    engines = EngineSet(stack.build("vad"), stack.build("asr"), stack.build("nlu"), espeak)
    engines.prepare(scenario)
    request = speak(espeak, "what is my balance")
    [card] = [c for c in make_cards(16, seed=4217) if c.card == "0689"]
    for phase in range(8):
        session = Session(scenarios={scenario.name: scenario},
                          config=SessionConfig(speculative_asr_ms=200))
        d = SessionDriver(session, CallJobs(engines))
        d.text(p.Start(call_id=f"card-{phase}", encoding=ENCODING, sample_rate_hz=RATE_HZ,
                       scenario=scenario.name))
        _wait_reply_end(d)
        # 20 ms steps move the speech through every 4 ms phase of the 32 ms windows
        d.silence(400 + 20 * phase, encoding=ENCODING, sample_rate_hz=RATE_HZ)
        d.audio_in(request, encoding=ENCODING, sample_rate_hz=RATE_HZ)
        _wait_reply_end(d)
        d.silence(400, encoding=ENCODING, sample_rate_hz=RATE_HZ)
        d.audio_in(card.audio.astype(np.int16), encoding=ENCODING, sample_rate_hz=RATE_HZ)
        d.silence(2500, encoding=ENCODING, sample_rate_hz=RATE_HZ)
        heard = [e.text for e in d.of_type(p.TranscriptEvent)]
        said = [e.text for e in d.of_type(p.BotSpeechStart)]
        assert any("card ending in 0689" in text for text in said), (phase, heard)
