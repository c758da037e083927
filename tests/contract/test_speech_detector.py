"""The SpeechDetector / SpeechDetectorStream contract, on the fake and on Silero.

What the rest of voicebot relies on: 16 kHz and the window size it frames audio
in (``Framer``, ``Endpointer``, the server's ``SessionConfig``); one float32
probability in [0, 1] per window; a stream's state carries across calls, so
any split of the same audio into whole windows gives the same probabilities;
``reset`` and separate streams start from the same fresh state; silence is not
speech and spoken words are.  Input that is not a 1-D run of whole windows is
a ``ValueError`` (the docstring's "must be a multiple"; Silero's type).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tests.contract.support import RATE_HZ, build_real, splits
from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.testing import FakeSpeechDetector

__all__: list[str] = []

ATOL = 1e-5  # Silero's ONNX batches differ in the last float bits


@pytest.fixture(scope="module", params=["fake", "silero"])
def detector(request: pytest.FixtureRequest) -> SpeechDetector:
    if request.param == "fake":
        return FakeSpeechDetector()
    real: SpeechDetector = build_real("vad", request.param)
    return real


def _probabilities(detector: SpeechDetector, pieces: list[Pcm]) -> npt.NDArray[np.float32]:
    stream = detector.open_stream()
    return np.concatenate([stream.probabilities(piece) for piece in pieces])


def test_declared_rate_and_window(detector: SpeechDetector) -> None:
    assert type(detector.sample_rate_hz) is int and detector.sample_rate_hz == RATE_HZ
    assert type(detector.window_samples) is int and detector.window_samples == 512


def test_one_float32_probability_per_window(detector: SpeechDetector, speech: Pcm) -> None:
    windows = len(speech) // detector.window_samples
    probs = detector.open_stream().probabilities(speech)
    assert isinstance(probs, np.ndarray)
    assert probs.dtype == np.float32 and probs.shape == (windows,)
    assert np.all((probs >= 0.0) & (probs <= 1.0))


def test_no_audio_gives_no_probabilities(detector: SpeechDetector) -> None:
    probs = detector.open_stream().probabilities(np.zeros(0, dtype=np.int16))
    assert probs.dtype == np.float32 and probs.shape == (0,)


def test_silence_is_not_speech_and_words_are(detector: SpeechDetector, speech: Pcm) -> None:
    silence = np.zeros(20 * detector.window_samples, dtype=np.int16)
    assert detector.open_stream().probabilities(silence).max() < 0.5
    assert detector.open_stream().probabilities(speech).max() > 0.5


@pytest.mark.parametrize("windows", [[1], [3, 1, 7, 2, 11], [1000]], ids=["1", "mixed", "all"])
def test_any_split_gives_the_same_probabilities(
    detector: SpeechDetector, speech: Pcm, windows: list[int]
) -> None:
    size = detector.window_samples
    whole = detector.open_stream().probabilities(speech)
    pieces = splits(speech, [n * size for n in windows])
    pieces.insert(1, speech[:0])  # an empty call in between changes nothing
    np.testing.assert_allclose(_probabilities(detector, pieces), whole, atol=ATOL)


def test_reset_starts_afresh(detector: SpeechDetector, speech: Pcm) -> None:
    fresh = detector.open_stream().probabilities(speech)
    stream = detector.open_stream()
    stream.probabilities(speech[::-1].copy())
    stream.reset()
    np.testing.assert_allclose(stream.probabilities(speech), fresh, atol=ATOL)


def test_streams_are_independent(detector: SpeechDetector, speech: Pcm) -> None:
    """Two calls' streams interleaved give what each gives alone."""
    size = detector.window_samples
    noise = np.random.default_rng(0).normal(0, 3000, len(speech)).astype(np.int16)
    alone_a = detector.open_stream().probabilities(speech)
    alone_b = detector.open_stream().probabilities(noise)
    a, b = detector.open_stream(), detector.open_stream()
    out_a, out_b = [], []
    for start in range(0, len(speech), 4 * size):
        out_a.append(a.probabilities(speech[start : start + 4 * size]))
        out_b.append(b.probabilities(noise[start : start + 4 * size]))
    np.testing.assert_allclose(np.concatenate(out_a), alone_a, atol=ATOL)
    np.testing.assert_allclose(np.concatenate(out_b), alone_b, atol=ATOL)


@pytest.mark.parametrize("extra", [1, 100, -1], ids=["plus-1", "plus-100", "minus-1"])
def test_partial_window_is_a_value_error(detector: SpeechDetector, extra: int) -> None:
    pcm = np.zeros(2 * detector.window_samples + extra, dtype=np.int16)
    with pytest.raises(ValueError):
        detector.open_stream().probabilities(pcm)


def test_two_dimensional_audio_is_a_value_error(detector: SpeechDetector) -> None:
    pcm = np.zeros((2, detector.window_samples), dtype=np.int16)
    with pytest.raises(ValueError):
        detector.open_stream().probabilities(pcm)
