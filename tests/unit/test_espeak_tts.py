"""Tests of the libespeak-ng synthesizer (real library, no mocks)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voicebot.engines.base import Pcm, Synthesizer
from voicebot.engines.espeak_tts import EspeakSynthesizer
from voicebot.errors import EngineError

__all__: list[str] = []

SENTENCE = "Hello, thank you for calling Example Bank card services. How can I help you today?"


def _rms(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def tts() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def test_implements_protocol(tts: EspeakSynthesizer) -> None:
    synth: Synthesizer = tts
    assert synth.sample_rate_hz == 22050


def test_speech_has_plausible_duration_and_energy(tts: EspeakSynthesizer) -> None:
    pcm = tts.synthesize(SENTENCE)
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    duration_s = len(pcm) / tts.sample_rate_hz
    words = len(SENTENCE.split())
    expected_s = words / 165 * 60
    assert 0.6 * expected_s < duration_s < 1.6 * expected_s
    assert _rms(pcm) > 500


def test_empty_text_gives_empty_audio(tts: EspeakSynthesizer) -> None:
    assert len(tts.synthesize("")) == 0
    assert len(tts.synthesize("   ")) == 0


def test_rate_changes_length() -> None:
    slow = EspeakSynthesizer(rate_wpm=120).synthesize(SENTENCE)
    fast = EspeakSynthesizer(rate_wpm=280).synthesize(SENTENCE)
    assert len(fast) < 0.7 * len(slow)


def _similar(a: Pcm, b: Pcm) -> bool:
    """Same rendering up to libespeak-ng's carried-over oscillator phase.

    The library keeps wave-generator state (pitch flutter, phase) between calls,
    so equal text is not bit-identical twice; length and energy are stable.
    """
    return abs(len(a) - len(b)) <= 0.02 * len(b) and abs(_rms(a) - _rms(b)) <= 0.1 * _rms(b)


def test_instances_keep_their_own_settings() -> None:
    slow = EspeakSynthesizer(rate_wpm=120)
    fast = EspeakSynthesizer(rate_wpm=280)
    first = slow.synthesize(SENTENCE)
    fast_audio = fast.synthesize(SENTENCE)
    again = slow.synthesize(SENTENCE)
    assert _similar(again, first)
    assert not _similar(fast_audio, first)


def test_repeated_synthesis_is_stable(tts: EspeakSynthesizer) -> None:
    first = tts.synthesize("four two one seven")
    for _ in range(3):
        assert _similar(tts.synthesize("four two one seven"), first)


def test_unknown_voice_raises() -> None:
    with pytest.raises(EngineError):
        EspeakSynthesizer(voice="xx-no-such-voice")


def test_bad_rate_raises() -> None:
    with pytest.raises(EngineError):
        EspeakSynthesizer(rate_wpm=5)


def test_threads_give_same_audio_as_sequential() -> None:
    slow = EspeakSynthesizer(rate_wpm=130)
    fast = EspeakSynthesizer(rate_wpm=250, pitch=70)
    texts = ["I lost my card", "what is my balance", "four two one seven", "goodbye"]
    expected = {
        (name, text): synth.synthesize(text)
        for name, synth in (("slow", slow), ("fast", fast))
        for text in texts
    }
    results: dict[tuple[str, str], list[Pcm]] = {key: [] for key in expected}
    errors: list[BaseException] = []

    def worker(name: str, synth: EspeakSynthesizer) -> None:
        try:
            for _ in range(5):
                for text in texts:
                    results[(name, text)].append(synth.synthesize(text))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("slow", slow)),
        threading.Thread(target=worker, args=("fast", fast)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for key, outputs in results.items():
        assert len(outputs) == 5
        for pcm in outputs:
            assert _similar(pcm, expected[key])
