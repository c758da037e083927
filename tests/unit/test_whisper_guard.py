"""Tests of Whisper's degenerate-decoding guard and of what the transcriber does when it
fires.

The pure parts (token budget, loops, compression ratio, the assessment reasons,
the silence level), then a synthetic (random-weight) whisper-tiny whose
generation is faked to loop or end early: it falls back to the 30 s window,
decodes again with a beam, or cuts the loop and flags it.  The transcriber's
streaming, windows and prompts: test_whisper_transcriber.py.
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

from tests.unit.whisper_helpers import white_noise
from voicebot.engines.whisper_asr import WhisperTranscriber
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

__all__: list[str] = []


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic whisper-tiny; built once per session (shared with test_whisper_synthetic)."""
    return build_synthetic_whisper(
        "whisper-tiny", tmp_path_factory.getbasetemp() / "synthetic-whisper" / "whisper-tiny"
    )


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
    stream.feed(white_noise(2.0))
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
    stream.feed(white_noise(6.0))
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
    stream.feed(white_noise(2.0))
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
    stream.feed(white_noise(2.0))
    stream.finish()
    assert frames_seen == [1500] and asr.stats.fallbacks == {}


def test_over_30s_goes_to_faster_whisper_transcribe(tiny_dir: Path) -> None:
    asr = WhisperTranscriber(model=tiny_dir, encoder_window="utterance")
    stream = asr.open_stream()
    stream.feed(white_noise(31.0))
    assert stream.finish().text
    decoded = stream.last_decoded
    assert decoded is not None and (decoded.window, decoded.encoder_frames) == ("30s", 6000)
