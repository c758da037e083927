"""The Synthesizer contract, on the tone fake, espeak-ng and Piper (en_US-joe-medium).

What the rest of voicebot relies on (``CallJobs.synthesize``, the prompt cache,
reply pacing): ``sample_rate_hz`` is a positive int and the audio is at that
rate; ``voice_id`` is a non-empty str, stable for the engine (a cache key);
``synthesize`` returns a complete 1-D int16 array: audible for a word, longer
for a sentence than for a word, and empty (not an error) for a text with
nothing to say ("", blanks, punctuation only) -- what both real adapters do.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.contract.support import build_real
from voicebot.engines.base import Pcm, Synthesizer
from voicebot.testing import FakeSynthesizer

__all__: list[str] = []

WORD = "yes"
SENTENCE = "Your card ending four two one seven is now blocked. Is there anything else?"


@pytest.fixture(scope="module", params=["fake", "espeak", "piper"])
def synthesizer(request: pytest.FixtureRequest) -> Synthesizer:
    if request.param == "fake":
        return FakeSynthesizer()
    real: Synthesizer = build_real("tts", request.param)
    return real


def _check_pcm(pcm: Pcm) -> None:
    assert isinstance(pcm, np.ndarray)
    assert pcm.dtype == np.int16 and pcm.ndim == 1


def test_declared_rate_and_voice(synthesizer: Synthesizer) -> None:
    assert type(synthesizer.sample_rate_hz) is int and synthesizer.sample_rate_hz >= 8000
    assert isinstance(synthesizer.voice_id, str) and synthesizer.voice_id.strip()


def test_a_word_is_audible(synthesizer: Synthesizer) -> None:
    voice = synthesizer.voice_id
    pcm = synthesizer.synthesize(WORD)
    assert synthesizer.voice_id == voice  # a cache key does not change with use
    _check_pcm(pcm)
    duration_s = len(pcm) / synthesizer.sample_rate_hz
    assert 0.05 < duration_s < 2.0
    assert int(np.max(np.abs(pcm.astype(np.int32)))) > 1000


def test_a_sentence_is_longer_than_a_word(synthesizer: Synthesizer) -> None:
    sentence = synthesizer.synthesize(SENTENCE)
    _check_pcm(sentence)
    assert len(sentence) > 3 * len(synthesizer.synthesize(WORD))
    assert len(sentence) / synthesizer.sample_rate_hz < 15.0


@pytest.mark.parametrize("text", ["", "   ", "\n", "...", "?", " - "])
def test_nothing_to_say_gives_empty_audio(synthesizer: Synthesizer, text: str) -> None:
    pcm = synthesizer.synthesize(text)
    _check_pcm(pcm)
    assert len(pcm) == 0
