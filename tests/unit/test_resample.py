"""Tests of voicebot.audio.resample: streaming and whole-buffer soxr resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voicebot.audio.resample import StreamResampler, resample
from voicebot.engines.base import Pcm
from voicebot.errors import ConfigError

__all__: list[str] = []

RATE_PAIRS = [(8000, 16000), (16000, 8000), (22050, 16000), (48000, 16000), (16000, 16000)]


def _stream(pcm: Pcm, chunk_sizes: list[int], *, in_rate_hz: int, out_rate_hz: int) -> Pcm:
    """Feed ``pcm`` in chunks of the given sizes (cycled), then flush."""
    resampler = StreamResampler(in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    parts, start, index = [], 0, 0
    while start < len(pcm):
        size = chunk_sizes[index % len(chunk_sizes)]
        parts.append(resampler.process(pcm[start : start + size]))
        start += size
        index += 1
    parts.append(resampler.flush())
    return np.concatenate(parts)


def _sine(freq_hz: float, rate_hz: int, seconds: float, amplitude: float = 10000.0) -> Pcm:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return np.rint(amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


@settings(deadline=None, max_examples=60)
@given(
    pcm=arrays(np.int16, st.integers(0, 3000)),
    chunk_sizes=st.lists(st.integers(1, 700), min_size=1, max_size=20),
    rates=st.sampled_from(RATE_PAIRS),
)
def test_chunking_does_not_change_the_output(
    pcm: Pcm, chunk_sizes: list[int], rates: tuple[int, int]
) -> None:
    in_rate_hz, out_rate_hz = rates
    whole = _stream(pcm, [max(len(pcm), 1)], in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    chunked = _stream(pcm, chunk_sizes, in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    assert chunked.dtype == np.int16
    np.testing.assert_array_equal(chunked, whole)
    oneshot = resample(pcm, in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    assert len(oneshot) == len(whole)
    assert np.all(np.abs(oneshot.astype(np.int32) - whole) <= 1)


@pytest.mark.parametrize(("in_rate_hz", "out_rate_hz"), RATE_PAIRS)
@pytest.mark.parametrize("n_samples", [1, 160, 999, 48000])
def test_length_follows_the_rate_ratio(in_rate_hz: int, out_rate_hz: int, n_samples: int) -> None:
    pcm = np.random.default_rng(n_samples).integers(-8000, 8000, n_samples).astype(np.int16)
    expected = n_samples * out_rate_hz / in_rate_hz
    out = resample(pcm, in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    assert abs(len(out) - expected) <= 1
    streamed = _stream(pcm, [160], in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    assert abs(len(streamed) - expected) <= 1


def test_sine_keeps_its_frequency_8k_to_16k() -> None:
    pcm = _sine(1000, 8000, 1.0)
    out = _stream(pcm, [160], in_rate_hz=8000, out_rate_hz=16000)
    assert len(out) == 16000
    body = out[1000:-1000].astype(np.float64)  # away from the edge transients
    spectrum = np.abs(np.fft.rfft(body * np.hanning(len(body))))
    freqs = np.fft.rfftfreq(len(body), d=1 / 16000)
    assert abs(freqs[np.argmax(spectrum)] - 1000) < 2
    # Amplitude kept, and no image above the old Nyquist frequency.
    assert np.max(np.abs(body)) == pytest.approx(10000, rel=0.02)
    image = spectrum[freqs > 4100].max()
    assert image < 1e-3 * spectrum.max()


def test_equal_rates_pass_through_as_a_copy() -> None:
    pcm = _sine(300, 16000, 0.1)
    resampler = StreamResampler(in_rate_hz=16000, out_rate_hz=16000)
    out = resampler.process(pcm)
    np.testing.assert_array_equal(out, pcm)
    assert out is not pcm
    assert resampler.flush().size == 0
    np.testing.assert_array_equal(resample(pcm, in_rate_hz=16000, out_rate_hz=16000), pcm)


def test_full_scale_is_clipped_not_wrapped() -> None:
    square = np.where(_sine(200, 8000, 0.5) >= 0, 32767, -32768).astype(np.int16)
    out = resample(square, in_rate_hz=8000, out_rate_hz=16000)
    # Filter overshoot must saturate at the int16 limits instead of wrapping around.
    up = _sine(200, 16000, 0.5)[: len(out)] > 3000
    assert np.all(out[up] > 0)


def test_resampler_is_reusable_after_flush_and_reset() -> None:
    pcm = _sine(700, 8000, 0.3)
    resampler = StreamResampler(in_rate_hz=8000, out_rate_hz=16000)
    first = np.concatenate([resampler.process(pcm), resampler.flush()])
    second = np.concatenate([resampler.process(pcm), resampler.flush()])
    np.testing.assert_array_equal(first, second)
    resampler.process(pcm[:500])
    resampler.reset()
    third = np.concatenate([resampler.process(pcm), resampler.flush()])
    np.testing.assert_array_equal(first, third)


def test_empty_input() -> None:
    assert resample(np.zeros(0, dtype=np.int16), in_rate_hz=8000, out_rate_hz=16000).size == 0
    resampler = StreamResampler(in_rate_hz=8000, out_rate_hz=16000)
    assert resampler.process(np.zeros(0, dtype=np.int16)).size == 0
    assert resampler.flush().size == 0


@pytest.mark.parametrize(("in_rate_hz", "out_rate_hz"), [(0, 16000), (8000, -1)])
def test_rejects_bad_rates(in_rate_hz: int, out_rate_hz: int) -> None:
    with pytest.raises(ConfigError):
        StreamResampler(in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)
    with pytest.raises(ConfigError):
        resample(np.zeros(10, dtype=np.int16), in_rate_hz=in_rate_hz, out_rate_hz=out_rate_hz)


def test_rejects_multichannel_input() -> None:
    resampler = StreamResampler(in_rate_hz=8000, out_rate_hz=16000)
    with pytest.raises(ValueError, match="mono"):
        resampler.process(np.zeros((10, 2), dtype=np.int16))
