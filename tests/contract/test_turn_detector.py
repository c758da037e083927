"""The TurnDetector contract, on the scripted fake and on the real Smart Turn v3.2.

What the end-of-turn policy relies on: 16 kHz input and an 8 s window; one
:class:`TurnVerdict` per call with a probability in [0, 1], ``complete`` exactly when
it is above the detector's threshold and ``heard_ms`` the audio it looked at (the
turn's length, at most the window); a verdict depends on the audio only (the
same audio gives the same verdict, from any detector built the same way and in
any order), and only on the window's worth at the end of the turn; any length is
accepted, none included; audio that is not 1-D int16 is a ``ValueError``.  The
real model is skipped when not pulled (``voicebot models pull smart-turn-v3.2``).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.contract.support import MANIFEST, MODELS_DIR, RATE_HZ
from voicebot.engines.base import Pcm
from voicebot.engines.fakes import FakeTurnDetector
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.errors import EngineUnavailableError
from voicebot.turn.detector import TurnDetector, TurnVerdict

__all__: list[str] = []


def _build(name: str) -> TurnDetector:
    if name == "fake":
        return FakeTurnDetector()
    try:
        built: TurnDetector = build_engine(
            "turn", name, EngineOptions(models_dir=MODELS_DIR, manifest=MANIFEST))
    except EngineUnavailableError as exc:
        pytest.skip(f"real turn engine {name!r} unavailable: {exc}")
    return built


@pytest.fixture(scope="module", params=["fake", "smart-turn"])
def detector_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def detector(detector_name: str) -> TurnDetector:
    return _build(detector_name)


def test_declared_rate_window_and_threshold(detector: TurnDetector) -> None:
    assert type(detector.sample_rate_hz) is int and detector.sample_rate_hz == RATE_HZ
    assert type(detector.window_ms) is int and detector.window_ms == 8000
    assert 0.0 < detector.threshold < 1.0


def test_one_verdict_per_call(detector: TurnDetector, speech: Pcm) -> None:
    verdict = detector.predict(speech)
    assert isinstance(verdict, TurnVerdict)
    assert type(verdict.complete_prob) is float and 0.0 <= verdict.complete_prob <= 1.0
    assert verdict.complete == (verdict.complete_prob > detector.threshold)
    assert verdict.heard_ms == len(speech) * 1000 // RATE_HZ


def test_heard_is_capped_at_the_window(detector: TurnDetector, speech: Pcm) -> None:
    long_turn = np.tile(speech, 8 * RATE_HZ // len(speech) + 2)
    assert detector.predict(long_turn).heard_ms == detector.window_ms


def test_same_audio_same_verdict(detector: TurnDetector, detector_name: str, speech: Pcm,
                                 other_speech: Pcm) -> None:
    first, second = detector, _build(detector_name)
    a = first.predict(speech)
    first.predict(other_speech)
    assert second.predict(speech) == a == first.predict(speech)


def test_only_the_end_of_the_turn_counts(detector: TurnDetector, speech: Pcm,
                                         other_speech: Pcm) -> None:
    window = detector.window_ms * RATE_HZ // 1000
    turn = np.tile(speech, window // len(speech) + 1)[-window:]
    earlier = np.concatenate([other_speech, other_speech, turn])
    assert detector.predict(earlier) == detector.predict(turn)


def test_any_length_is_accepted(detector: TurnDetector) -> None:
    for samples in (0, 1, 511, RATE_HZ // 10):
        verdict = detector.predict(np.zeros(samples, dtype=np.int16))
        assert 0.0 <= verdict.complete_prob <= 1.0
        assert verdict.heard_ms == samples * 1000 // RATE_HZ


@pytest.mark.parametrize("bad", [np.zeros(RATE_HZ, dtype=np.float32),
                                 np.zeros((2, RATE_HZ), dtype=np.int16)])
def test_bad_audio_is_a_value_error(detector: TurnDetector, bad: Pcm) -> None:
    with pytest.raises(ValueError):
        detector.predict(bad)
