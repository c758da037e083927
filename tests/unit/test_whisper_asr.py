"""Tests of the Whisper transcriber on a synthetic (random-weight) whisper-tiny."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebot.engines.base import Pcm, Transcriber
from voicebot.engines.whisper_asr import (
    WhisperTranscriber,
    content_words,
    domain_prompt,
)
from voicebot.errors import EngineError, EngineUnavailableError
from voicebot.whisper import build_synthetic_whisper
from voicebot.whisper.decoding import WhisperDecoder

__all__: list[str] = []

CHUNK_SAMPLES = 320  # 20 ms at 16 kHz
PHRASES = [
    "I would like a large pepperoni pizza",
    "a pizza with mushrooms please",
    "deliver the pizza to my address",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic whisper-tiny; built once per session (shared with test_whisper_synthetic)."""
    return build_synthetic_whisper(
        "whisper-tiny", tmp_path_factory.getbasetemp() / "synthetic-whisper" / "whisper-tiny"
    )


@pytest.fixture(scope="module", params=["30s", "utterance"])
def asr(request: pytest.FixtureRequest, tiny_dir: Path) -> WhisperTranscriber:
    transcriber = WhisperTranscriber(model=tiny_dir, encoder_window=request.param)
    transcriber.prepare_domain(name="pizza", phrases=PHRASES)
    return transcriber


def _noise(seconds: float, seed: int = 0) -> Pcm:
    rng = np.random.default_rng(seed)
    pcm: Pcm = np.clip(rng.normal(0.0, 3000.0, int(16000 * seconds)), -32768, 32767).astype(
        np.int16
    )
    return pcm


def _feed(stream: Any, pcm: Pcm) -> None:
    for start in range(0, len(pcm), CHUNK_SAMPLES):
        stream.feed(pcm[start : start + CHUNK_SAMPLES])


def test_is_a_transcriber(asr: WhisperTranscriber) -> None:
    transcriber: Transcriber = asr
    assert transcriber.sample_rate_hz == 16000
    assert asr.synthetic


@pytest.mark.parametrize("domain", [None, "pizza"])
def test_finish_decodes_about_three_tokens_per_second(
    asr: WhisperTranscriber, domain: str | None
) -> None:
    stream = asr.open_stream(domain=domain)
    _feed(stream, _noise(3.0))
    transcript = stream.finish()
    assert transcript.text
    assert transcript.audio_ms == 3000
    assert transcript.confidence is not None and 0.0 < transcript.confidence <= 1.0
    assert stream.last_decoded is not None and stream.last_decoded.tokens == 9


def test_transcribe_so_far_keeps_the_stream_open(
    asr: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    decode = WhisperDecoder.decode

    def counting(self: WhisperDecoder, audio: Any, **kwargs: Any) -> Any:
        calls.append(len(audio))
        return decode(self, audio, **kwargs)

    monkeypatch.setattr(WhisperDecoder, "decode", counting)
    noise = _noise(3.0, seed=2)
    stream = asr.open_stream(domain="pizza")
    _feed(stream, noise[:16000])
    partial = stream.transcribe_so_far()
    assert partial.text and partial.audio_ms == 1000
    assert stream.last_decoded is not None and stream.last_decoded.tokens == 3
    _feed(stream, noise[16000:])
    final = stream.finish()
    assert final.audio_ms == 3000
    assert stream.last_decoded.tokens == 9
    assert calls == [16000, 48000]


def test_finish_reuses_the_speculative_result(
    asr: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = asr.open_stream()
    _feed(stream, _noise(1.0))
    partial = stream.transcribe_so_far()

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(WhisperDecoder, "decode", fail)
    stream.feed(np.zeros(0, dtype=np.int16))
    assert stream.finish() == partial


def test_cancel(asr: WhisperTranscriber) -> None:
    stream = asr.open_stream()
    _feed(stream, _noise(0.5))
    stream.cancel()
    stream.cancel()
    with pytest.raises(EngineError):
        stream.feed(_noise(0.1))
    with pytest.raises(EngineError):
        stream.finish()
    with pytest.raises(EngineError):
        stream.transcribe_so_far()


def test_empty_utterance(asr: WhisperTranscriber) -> None:
    transcript = asr.open_stream().finish()
    assert (transcript.text, transcript.confidence, transcript.audio_ms) == ("", None, 0)


def test_bad_audio(asr: WhisperTranscriber) -> None:
    with pytest.raises(EngineError, match="int16"):
        asr.open_stream().feed(np.zeros(10, dtype=np.float32))


def test_unknown_domain(asr: WhisperTranscriber) -> None:
    with pytest.raises(EngineError, match="not prepared"):
        asr.open_stream(domain="nope")


def test_encoder_window_frames(asr: WhisperTranscriber) -> None:
    stream = asr.open_stream()
    stream.feed(_noise(3.0))
    stream.finish()
    assert stream.last_decoded is not None
    if asr.encoder_window == "30s":
        assert stream.last_decoded.encoder_frames == 3000
    else:  # 3 s + 200 ms of padding, 10 ms frames, an even count
        assert stream.last_decoded.encoder_frames == 320


def test_utterance_window_over_30s_takes_the_30s_path(tiny_dir: Path) -> None:
    # 1.5 s of audio + 29 s of padding is over 3000 frames: decoded in one 30 s window.
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance", utterance_pad_ms=29_000)
    stream = asr.open_stream()
    stream.feed(_noise(1.5))
    assert stream.finish().text
    assert stream.last_decoded is not None
    assert (stream.last_decoded.encoder_frames, stream.last_decoded.tokens) == (3000, 5)


def test_domain_prompt(asr: WhisperTranscriber) -> None:
    prompt = asr.domain_prompt("pizza")
    assert prompt is not None and prompt.split()[0] == "pizza"
    assert "would" not in prompt.split()


def test_domain_prompt_is_capped() -> None:
    phrases = ["alpha beta gamma delta", "gamma delta", "delta"]
    assert content_words(phrases) == ["delta", "gamma", "alpha", "beta"]
    assert domain_prompt(phrases, count_tokens=lambda t: len(t.split()), max_tokens=2) == (
        "delta gamma"
    )
    assert domain_prompt(phrases, count_tokens=len, max_tokens=0) is None
    assert domain_prompt(["yes please", "I would"], count_tokens=len) is None


def test_no_prompt_when_disabled(tiny_dir: Path) -> None:
    transcriber = WhisperTranscriber(model=tiny_dir, domain_prompt_tokens=0)
    transcriber.prepare_domain(name="pizza", phrases=PHRASES)
    assert transcriber.domain_prompt("pizza") is None
    assert transcriber.open_stream(domain="pizza") is not None


def test_threads_are_passed_as_cpu_threads(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faster_whisper

    seen: dict[str, Any] = {}

    class Spy(faster_whisper.WhisperModel):  # type: ignore[misc]
        def __init__(self, path: str, **kwargs: Any) -> None:
            seen.update(kwargs, path=path)
            super().__init__(path, **kwargs)

    monkeypatch.setattr(faster_whisper, "WhisperModel", Spy)
    WhisperTranscriber(model=tiny_dir, threads=2, num_workers=3, compute_type="int8")
    assert seen == {
        "path": str(tiny_dir),
        "device": "cpu",
        "compute_type": "int8",
        "cpu_threads": 2,
        "num_workers": 3,
    }


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError):
        WhisperTranscriber(model=tmp_path / "missing")


def test_english_model_rejects_other_languages(tiny_dir: Path) -> None:
    with pytest.raises(EngineError, match="English-only"):
        WhisperTranscriber(model=tiny_dir, language="fr")
