"""Tests of the Whisper transcriber on a synthetic (random-weight) whisper-tiny:
streaming, encoder windows, options, domain prompts and slot prompts.

The degenerate-decoding guard and the fallbacks it triggers: test_whisper_guard.py.
Real weights: tests/unit/test_whisper_real.py (slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.whisper_helpers import white_noise
from voicebot.engines.base import Pcm, Transcriber
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.engines.whisper_asr import (
    DEFAULT_WINDOW,
    SLOT_PROMPTS,
    WhisperTranscriber,
    content_words,
    domain_prompt,
)
from voicebot.errors import ConfigError, EngineError, EngineUnavailableError
from voicebot.whisper import build_synthetic_whisper
from voicebot.whisper.decoding import WhisperDecoder
from voicebot.whisper.prompts import slot_type

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
    _feed(stream, white_noise(3.0))
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
    noise = white_noise(3.0, seed=2)
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
    _feed(stream, white_noise(1.0))
    partial = stream.transcribe_so_far()

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(WhisperDecoder, "decode", fail)
    stream.feed(np.zeros(0, dtype=np.int16))
    assert stream.finish() == partial


def test_cancel(asr: WhisperTranscriber) -> None:
    stream = asr.open_stream()
    _feed(stream, white_noise(0.5))
    stream.cancel()
    stream.cancel()
    with pytest.raises(EngineError):
        stream.feed(white_noise(0.1))
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
    stream.feed(white_noise(3.0))
    stream.finish()
    assert stream.last_decoded is not None
    assert stream.last_decoded.window == asr.encoder_window
    assert stream.last_decoded.fallback is None and stream.last_decoded.degenerate is None
    if asr.encoder_window == "30s":
        assert stream.last_decoded.encoder_frames == 3000
    else:  # 3 s + 200 ms of padding is under the 15 s minimum window
        assert stream.last_decoded.encoder_frames == 1500


@pytest.mark.parametrize(("seconds", "frames"), [(3.0, 320), (12.0, 1220), (0.05, 26)])
def test_utterance_window_without_minimum(tiny_dir: Path, seconds: float, frames: int) -> None:
    # The utterance + 200 ms of padding, 10 ms frames, an even count.
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance", utterance_min_window_ms=0)
    stream = asr.open_stream()
    stream.feed(white_noise(seconds))
    stream.finish()
    assert stream.last_decoded is not None and stream.last_decoded.encoder_frames == frames


def test_default_window() -> None:
    assert DEFAULT_WINDOW == "utterance"


def test_utterance_window_over_30s_takes_the_30s_path(tiny_dir: Path) -> None:
    # 1.5 s of audio + 29 s of padding is over 3000 frames: decoded in one 30 s window.
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance", utterance_pad_ms=29_000)
    stream = asr.open_stream()
    stream.feed(white_noise(1.5))
    assert stream.finish().text
    assert stream.last_decoded is not None
    assert (stream.last_decoded.encoder_frames, stream.last_decoded.tokens) == (3000, 5)


def test_domain_prompt(asr: WhisperTranscriber) -> None:
    prompt = asr.domain_prompt("pizza")
    assert prompt is not None and prompt.startswith("Pizza, ") and prompt.endswith(".")
    assert "would" not in prompt.lower().replace(",", "").split()


def test_domain_prompt_is_capped() -> None:
    phrases = ["alpha beta gamma delta", "gamma delta", "delta"]
    assert content_words(phrases) == ["delta", "gamma", "alpha", "beta"]
    assert domain_prompt(phrases, count_tokens=lambda t: len(t.split()), max_tokens=2) == (
        "Delta, gamma."
    )
    assert domain_prompt(phrases, count_tokens=len, max_tokens=0) is None
    assert domain_prompt(["yes please", "I would"], count_tokens=len) is None
    # Numbers are left to the slot prompts (which ask for numerals).
    assert content_words(["four two one seven", "oh double seven", "my card"]) == ["card"]


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


# ---- slot prompts --------------------------------------------------------------------------


def test_slot_type() -> None:
    assert slot_type("bank_card/digits") == "digits"
    assert slot_type("a/b/yes_no") == "yes_no"
    assert slot_type("bank_card") is None
    assert slot_type("/digits") is None and slot_type("bank_card/") is None


def test_slot_domains_get_the_slot_prompt(tiny_dir: Path) -> None:
    asr = WhisperTranscriber(model=tiny_dir)
    asr.prepare_domain(name="bank/digits", phrases=["four two one seven", "agent"])
    asr.prepare_domain(name="bank/yes_no", phrases=["yes please block it", "agent"])
    asr.prepare_domain(name="bank", phrases=PHRASES)
    assert asr.domain_prompt("bank/digits") == SLOT_PROMPTS["digits"]
    assert asr.domain_prompt("bank/yes_no") == "Block, agent."  # no slot prompt: vocabulary
    assert str(asr.domain_prompt("bank")).startswith("Pizza, ")


def test_slot_prompts_can_be_replaced_or_dropped(tiny_dir: Path) -> None:
    asr = WhisperTranscriber(model=tiny_dir, slot_prompts={"digits": "PIN: 1 2 3 4."})
    asr.prepare_domain(name="bank/digits", phrases=["four two one seven"])
    assert asr.domain_prompt("bank/digits") == "PIN: 1 2 3 4."
    bare = WhisperTranscriber(model=tiny_dir, slot_prompts={}, domain_prompt_tokens=0)
    bare.prepare_domain(name="bank/digits", phrases=["four two one seven"])
    assert bare.domain_prompt("bank/digits") is None


def test_registry_builds_whisper_with_guard_options(tiny_dir: Path) -> None:
    options = {"model": str(tiny_dir), "encoder_window": "30s", "guard": {"tokens_per_s": 6}}
    asr = build_engine("asr", "whisper", EngineOptions(options=options))
    assert isinstance(asr, WhisperTranscriber) and asr.encoder_window == "30s"
    with pytest.raises(ConfigError):
        build_engine("asr", "whisper", EngineOptions(options={**options, "guard": {"x": 1}}))
    with pytest.raises(ConfigError):
        bad = {**options, "guard": {"tokens_per_s": 0}}
        build_engine("asr", "whisper", EngineOptions(options=bad))
