"""Tests of the Whisper transcriber on a synthetic (random-weight) whisper-tiny, and of
its pure parts: the degenerate-decoding guard (token budget, loops) and the prompts.

Real weights: tests/unit/test_whisper_real.py (slow).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from voicebot.whisper.decoding import WhisperDecoder, silence_level
from voicebot.whisper.guard import (
    DecodeGuard,
    Loop,
    compression_ratio,
    find_loop,
    token_budget,
    trim_loop,
)
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
    stream.feed(_noise(seconds))
    stream.finish()
    assert stream.last_decoded is not None and stream.last_decoded.encoder_frames == frames


def test_default_window() -> None:
    assert DEFAULT_WINDOW == "utterance"


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


# ---- the guard: token budget, loops, compression -----------------------------------------


@given(
    st.floats(0.0, 60.0),
    st.floats(0.5, 20.0),
    st.integers(0, 64),
    st.integers(1, 448),
)
def test_token_budget_bounds(seconds: float, rate: float, extra: int, cap: int) -> None:
    budget = token_budget(seconds, tokens_per_s=rate, extra_tokens=extra, max_tokens=cap)
    assert 1 <= budget <= cap
    assert budget == min(cap, max(1, math.ceil(rate * seconds) + extra))
    longer = token_budget(seconds + 1.0, tokens_per_s=rate, extra_tokens=extra, max_tokens=cap)
    assert longer >= budget


def test_token_budget_is_generous_for_speech() -> None:
    guard = DecodeGuard()
    # Four digits read with commas in 2 s ("4, 2, 1, 7.": 8 tokens) fit easily...
    assert guard.budget(2.0, max_tokens=224) == 32
    # ... while a loop of hundreds of digits is cut short.
    assert guard.budget(4.5, max_tokens=224) == 52
    with pytest.raises(ValueError):
        token_budget(-1.0, tokens_per_s=8.0, extra_tokens=16, max_tokens=224)


def test_find_loop_on_whisper_loops() -> None:
    three, two, one = 1001, 1002, 1003
    assert find_loop([three, two, one] + [one] * 20) == Loop(start=2, period=1, repeats=21)
    card = [8, 6, 5, 2]
    assert find_loop(card * 2) == Loop(start=0, period=4, repeats=2)
    comma = 11
    spoken = [8, comma, 6, comma, 5, comma, 2, comma]
    assert find_loop(spoken * 3) == Loop(start=0, period=8, repeats=3)


@pytest.mark.parametrize(
    "tokens",
    [
        [5, 5, 5, 5],  # "5 5 5 5" is a card number, not a loop
        [5, 11, 5, 11, 5, 11, 5],  # "5, 5, 5, 5"
        [1, 2, 1, 2],  # "1 2 1 2"
        [7, 8, 9, 7, 8, 9],  # a three-word phrase said twice
        [],
    ],
)
def test_find_loop_leaves_real_answers_alone(tokens: list[int]) -> None:
    assert find_loop(tokens) is None


@given(
    st.lists(st.integers(0, 50), max_size=10),
    st.lists(st.integers(0, 50), min_size=1, max_size=8),
    st.integers(2, 12),
    st.lists(st.integers(0, 50), max_size=10),
)
def test_find_loop_finds_repeated_units(
    prefix: list[int], unit: list[int], repeats: int, suffix: list[int]
) -> None:
    tokens = prefix + unit * repeats + suffix
    loop = find_loop(tokens)
    if len(unit) * repeats >= 8:
        assert loop is not None and loop.start <= len(prefix)
    if loop is not None:  # whatever it found is a real repetition, long enough
        assert loop.repeats >= 2 and loop.period * loop.repeats >= 8
        copy = tokens[loop.start : loop.start + loop.period]
        assert tokens[loop.start : loop.end] == copy * loop.repeats
        assert trim_loop(tokens, loop) == tokens[: loop.start] + copy


@given(st.lists(st.integers(0, 1000), unique=True, max_size=80))
def test_no_loop_without_repeated_tokens(tokens: list[int]) -> None:
    assert find_loop(tokens) is None


def test_compression_ratio() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("I would like to check the balance on my card please") < 2.4
    assert compression_ratio("one " * 40) > 2.4


def test_assess_reasons() -> None:
    guard = DecodeGuard()
    fine = [1, 2, 3, 4]
    assert guard.assess(fine, text="4 2 1 7", avg_logprob=-0.2, budget=32) is None
    assert guard.assess(fine, text="4 2 1 7", avg_logprob=-0.2, budget=4) == "budget"
    assert guard.assess(fine * 2, text="x", avg_logprob=-0.2, budget=32) == "loop"
    assert guard.assess(fine, text="one " * 40, avg_logprob=-0.2, budget=32) == "compression"
    assert guard.assess(fine, text="4 2 1 7", avg_logprob=-3.0, budget=32) == "log_prob"
    assert guard.assess([], text="", avg_logprob=-3.0, budget=32) is None
    final = guard.assess(fine, text="4 2 1 7", avg_logprob=-3.0, budget=32, check_log_prob=False)
    assert final is None
    ended_early = {"text": "and forevermore.", "avg_logprob": -0.5, "budget": 200}
    assert guard.assess([1, 2, 3, 4], audio_s=15.0, **ended_early) == "short"  # type: ignore[arg-type]
    assert guard.assess([1, 2, 3, 4], audio_s=3.0, **ended_early) is None  # type: ignore[arg-type]
    assert guard.assess([1, 2, 3, 4], audio_s=15.0, check_log_prob=False,
                        **ended_early) is None  # type: ignore[arg-type]
    lenient = DecodeGuard(min_avg_logprob=None)
    assert lenient.assess(fine, text="4 2 1 7", avg_logprob=-3.0, budget=32) is None
    with pytest.raises(ValueError):
        DecodeGuard(tokens_per_s=0)


def test_silence_level() -> None:
    loud = np.array([[1.0, 0.5], [0.2, -0.5]], dtype=np.float32)
    assert silence_level(loud) == pytest.approx(-1.0)  # max - 2 (log10 floor max - 8)
    quiet = np.full((2, 2), -1.5, dtype=np.float32)  # digital silence everywhere
    assert silence_level(quiet) == -1.5


# ---- fallback to the 30 s window (generation faked to loop in the short window) -----------


def _looping_below_30s(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the decoder loop (one token to the budget) in any window shorter than 30 s."""
    from voicebot.whisper import decoding

    frames_seen: list[int] = []
    generate = decoding.WhisperDecoder._generate

    def fake(self: WhisperDecoder, features: Any, frames: int, *args: Any, **kwargs: Any) -> Any:
        frames_seen.append(frames)
        real = generate(self, features, frames, *args, **kwargs)
        if frames < 3000:
            return replace(real, ids=[220] * real.budget, avg_logprob=-0.1, silence=False)
        return real

    monkeypatch.setattr(decoding.WhisperDecoder, "_generate", fake)
    return frames_seen


def test_degenerate_utterance_window_falls_back_to_30s(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames_seen = _looping_below_30s(monkeypatch)
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance", guard=DecodeGuard())
    stream = asr.open_stream()
    stream.feed(_noise(2.0))
    transcript = stream.finish()
    decoded = stream.last_decoded
    assert decoded is not None and frames_seen == [1500, 3000]
    assert (decoded.window, decoded.fallback, decoded.degenerate) == ("30s", "budget", None)
    assert decoded.encoder_frames == 4500 and decoded.tokens == 6  # synthetic: 3 tokens/s
    assert transcript.text
    assert asr.stats.decodes == 1 and asr.stats.fallbacks == {"budget": 1}


@pytest.mark.parametrize(("window", "frames"), [("utterance", 1500), ("30s", 3000)])
def test_a_text_that_ends_early_is_decoded_again_with_a_beam(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, window: str, frames: int
) -> None:
    """Greedy search ending the text long before the audio: same window, beam 5."""
    from voicebot.whisper import decoding

    calls: list[tuple[int, int | None]] = []
    generate = decoding.WhisperDecoder._generate

    def fake(self: WhisperDecoder, features: Any, frames: int, *args: Any,
             beam_size: int | None = None) -> Any:
        calls.append((frames, beam_size))
        real = generate(self, features, frames, *args, beam_size=beam_size)
        return real if beam_size else replace(real, ids=real.ids[:1], avg_logprob=-0.3)

    monkeypatch.setattr(decoding.WhisperDecoder, "_generate", fake)
    asr = WhisperTranscriber(model=tiny_dir, encoder_window=window,  # type: ignore[arg-type]
                             guard=DecodeGuard())
    stream = asr.open_stream()
    stream.feed(_noise(6.0))
    stream.finish()
    decoded = stream.last_decoded
    expected = 1500 if window == "utterance" else 3000  # 6 s of audio: the 15 s minimum
    assert calls == [(expected, None), (expected, decoding.SHORT_RETRY_BEAM)]
    assert decoded is not None and (decoded.window, decoded.fallback) == (window, "short")
    assert decoded.encoder_frames == 2 * expected  # the window encoded again
    assert asr.stats.fallbacks == {"short": 1}


def test_without_fallback_a_loop_is_cut_and_flagged(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames_seen = _looping_below_30s(monkeypatch)
    asr = WhisperTranscriber(
        model=tiny_dir, encoder_window="utterance", guard=DecodeGuard(), fallback=False
    )
    stream = asr.open_stream()
    stream.feed(_noise(2.0))
    stream.finish()
    decoded = stream.last_decoded
    assert decoded is not None and frames_seen == [1500]
    assert (decoded.window, decoded.fallback, decoded.degenerate) == ("utterance", None, "budget")
    assert decoded.tokens == 1  # cut after the loop's first copy
    assert asr.stats.degenerate == 1 and asr.stats.fallbacks == {}


def test_synthetic_models_have_no_guard(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames_seen = _looping_below_30s(monkeypatch)
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance")
    stream = asr.open_stream()
    stream.feed(_noise(2.0))
    stream.finish()
    assert frames_seen == [1500] and asr.stats.fallbacks == {}


def test_over_30s_goes_to_faster_whisper_transcribe(tiny_dir: Path) -> None:
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance")
    stream = asr.open_stream()
    stream.feed(_noise(31.0))
    assert stream.finish().text
    decoded = stream.last_decoded
    assert decoded is not None and (decoded.window, decoded.encoder_frames) == ("30s", 6000)
