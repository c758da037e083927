"""Tests of voicebot.vad.endpointer, driven by synthetic probability sequences.

Windows are 160 samples at 16 kHz (10 ms), so the default config reads in
windows: min_speech 20, min_silence 50, speech_pad 30.  The audio is a ramp
(sample ``i`` holds ``i``), so emitted audio shows which samples it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.engines.base import Pcm
from voicebot.errors import ConfigError
from voicebot.vad.endpointer import (
    EndpointConfig,
    Endpointer,
    EndpointEvent,
    SilenceStarted,
    SpeechAudio,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)

__all__: list[str] = []

SR = 16_000
W = 160  # 10 ms
SPEECH, MID, QUIET = 0.9, 0.4, 0.1  # above threshold, between the thresholds, below both


def _ramp(n_samples: int) -> Pcm:
    return (np.arange(n_samples) % 32768).astype(np.int16)


def _windows(*runs: tuple[float, int]) -> list[float]:
    """Probabilities from (value, n_windows) runs."""
    return [value for value, count in runs for _ in range(count)]


def _drive(
    probs: Sequence[float], config: EndpointConfig | None = None, *, step: int = 1
) -> tuple[Endpointer, list[tuple[int, EndpointEvent]]]:
    """Feed ``step`` windows per call; return (endpointer, [(last window index, event)])."""
    endpointer = Endpointer(config or EndpointConfig(), sample_rate_hz=SR, window_samples=W)
    pcm = _ramp(len(probs) * W)
    out: list[tuple[int, EndpointEvent]] = []
    for first in range(0, len(probs), step):
        chunk = probs[first : first + step]
        events = endpointer.process(pcm[first * W : (first + len(chunk)) * W], chunk)
        out.extend((first + len(chunk) - 1, event) for event in events)
    return endpointer, out


def _of(events: list[tuple[int, EndpointEvent]], kind: type) -> list[tuple[int, EndpointEvent]]:
    return [(i, e) for i, e in events if isinstance(e, kind)]


def test_onset_after_min_speech_with_padding() -> None:
    endpointer, events = _drive(_windows((QUIET, 40), (SPEECH, 30)))
    [(index, started)] = _of(events, SpeechStarted)
    assert index == 59  # the 20th speech window: 200 ms
    assert events[0][1] is started
    assert isinstance(started, SpeechStarted)
    assert started.onset_sample == 40 * W
    # 300 ms of pre-roll, then everything from the onset to now.
    np.testing.assert_array_equal(started.audio, _ramp(60 * W)[10 * W :])
    assert endpointer.in_speech
    assert endpointer.samples_seen == 70 * W
    assert endpointer.speech_samples == 30 * W
    audio = [e for _, e in _of(events, SpeechAudio)]
    assert [len(e.audio) for e in audio if isinstance(e, SpeechAudio)] == [W] * 10


def test_padding_is_limited_by_the_start_of_the_stream() -> None:
    _, events = _drive(_windows((QUIET, 5), (SPEECH, 20)))
    [(_, started)] = _of(events, SpeechStarted)
    assert isinstance(started, SpeechStarted)
    np.testing.assert_array_equal(started.audio, _ramp(25 * W))


def test_speech_ends_after_min_silence() -> None:
    endpointer, events = _drive(_windows((QUIET, 40), (SPEECH, 60), (QUIET, 60)))
    [(silence_index, silence)] = _of(events, SilenceStarted)
    assert silence_index == 100
    assert silence == SilenceStarted(100 * W)
    [(end_index, ended)] = _of(events, SpeechEnded)
    assert end_index == 149  # 50 windows of silence: 500 ms
    assert ended == SpeechEnded(100 * W, "silence")
    assert events[-1][1] is ended
    assert not endpointer.in_speech
    assert endpointer.speech_samples == 0
    # The utterance carries its trailing silence, up to the endpoint.
    audio = np.concatenate(
        [e.audio for _, e in events if isinstance(e, SpeechStarted | SpeechAudio)]
    )
    np.testing.assert_array_equal(audio, _ramp(150 * W)[10 * W :])


def test_a_digit_string_gets_the_longer_pause() -> None:
    """While digits are expected, a 700 ms pause between groups does not end the turn;
    the digits' own silence (1000 ms) does."""
    probs = _windows((QUIET, 40), (SPEECH, 60), (QUIET, 70), (SPEECH, 60), (QUIET, 110))
    endpointer = Endpointer(EndpointConfig(), sample_rate_hz=SR, window_samples=W)
    endpointer.expect_digits = True
    events = endpointer.process(_ramp(len(probs) * W), probs)
    assert [e for e in events if isinstance(e, SpeechEnded)] == [SpeechEnded(230 * W, "silence")]
    assert len([e for e in events if isinstance(e, SpeechStarted)]) == 1
    _, plain = _drive(probs)  # otherwise the pause ends the first group's turn
    assert len(_of(plain, SpeechEnded)) == 2


def test_end_now_cuts_a_paused_utterance_only() -> None:
    endpointer, _ = _drive(_windows((QUIET, 40), (SPEECH, 60)))
    assert endpointer.end_now() is None  # speaking: nothing to cut
    pcm = _ramp(20 * W)
    assert [type(e) for e in endpointer.process(pcm, [QUIET] * 20)] == [SilenceStarted,
                                                                         SpeechAudio]
    assert endpointer.end_now() == SpeechEnded(100 * W, "silence")
    assert not endpointer.in_speech and endpointer.end_now() is None
    assert endpointer.process(pcm, [QUIET] * 20) == []  # the pause goes on: no second end


def test_endpointing_settings_are_laid_over_the_defaults() -> None:
    config = EndpointConfig().updated({"min_silence_ms": 700.0, "digits_min_silence_ms": 1200.0,
                                       "max_utterance_s": 20})
    assert (config.min_silence_ms, config.digits_min_silence_ms) == (700, 1200)
    assert isinstance(config.min_silence_ms, int) and config.max_utterance_s == 20.0
    assert config.speech_pad_ms == EndpointConfig().speech_pad_ms
    with pytest.raises(ConfigError, match="digits_min_silence_ms"):
        EndpointConfig().updated({"digits_min_silence_ms": 0})


def test_short_blip_is_ignored() -> None:
    endpointer, events = _drive(_windows((QUIET, 40), (SPEECH, 19), (QUIET, 100)))
    assert events == []
    assert not endpointer.in_speech
    assert endpointer.samples_seen == 159 * W


def test_hysteresis_keeps_speech_between_thresholds() -> None:
    # Onset at threshold, then speech holds while above neg_threshold.
    _, events = _drive(_windows((QUIET, 10), (SPEECH, 3), (MID, 100)))
    [(index, _)] = _of(events, SpeechStarted)
    assert index == 29
    assert _of(events, SilenceStarted) == []
    # MID windows do not start an utterance on their own.
    _, events = _drive(_windows((MID, 200)))
    assert events == []


def test_speech_resumed_restarts_the_silence_timer() -> None:
    probs = _windows((SPEECH, 30), (QUIET, 40), (MID, 5), (SPEECH, 10), (QUIET, 49), (SPEECH, 5))
    _, events = _drive(probs)
    kinds = [type(e) for _, e in events if not isinstance(e, SpeechAudio)]
    assert kinds == [SpeechStarted, SilenceStarted, SpeechResumed, SilenceStarted, SpeechResumed]
    assert [e for _, e in _of(events, SilenceStarted)] == [
        SilenceStarted(30 * W),
        SilenceStarted(85 * W),
    ]
    # MID windows do not end the silence; the first SPEECH window does.
    assert [e for _, e in _of(events, SpeechResumed)] == [
        SpeechResumed(75 * W),
        SpeechResumed(134 * W),
    ]


def test_mid_windows_count_as_silence_once_silent() -> None:
    _, events = _drive(_windows((SPEECH, 30), (QUIET, 1), (MID, 60)))
    [(index, ended)] = _of(events, SpeechEnded)
    assert index == 79
    assert ended == SpeechEnded(30 * W, "silence")


def test_max_length_cut_then_a_new_utterance() -> None:
    config = EndpointConfig(max_utterance_s=1.0)
    _, events = _drive(_windows((QUIET, 10), (SPEECH, 150)), config)
    assert _of(events, SpeechEnded)[0] == (109, SpeechEnded(110 * W, "max_length"))
    starts = [e for _, e in _of(events, SpeechStarted)]
    assert [e.onset_sample for e in starts if isinstance(e, SpeechStarted)] == [10 * W, 110 * W]
    second = starts[1]
    assert isinstance(second, SpeechStarted)
    # No pre-roll repeated from the previous utterance.
    np.testing.assert_array_equal(second.audio, _ramp(130 * W)[110 * W :])


def test_events_are_the_same_whatever_the_batching() -> None:
    probs = _windows((QUIET, 40), (SPEECH, 60), (QUIET, 20), (SPEECH, 25), (QUIET, 60))
    _, single = _drive(probs)
    _, batched = _drive(probs, step=len(probs))
    assert [type(e) for _, e in batched if not isinstance(e, SpeechAudio)] == [
        type(e) for _, e in single if not isinstance(e, SpeechAudio)
    ]


def test_reset_forgets_everything() -> None:
    endpointer, _ = _drive(_windows((QUIET, 40), (SPEECH, 30)))
    endpointer.reset()
    assert not endpointer.in_speech
    assert endpointer.samples_seen == 0
    events = endpointer.process(_ramp(25 * W), _windows((SPEECH, 25)))
    started = events[0]
    assert isinstance(started, SpeechStarted)
    assert started.onset_sample == 0


def test_events_are_frozen_and_audio_read_only() -> None:
    _, events = _drive(_windows((SPEECH, 30)))
    started = events[0][1]
    assert isinstance(started, SpeechStarted)
    with pytest.raises(FrozenInstanceError):
        started.onset_sample = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        started.audio[0] = 1


def test_process_checks_the_pcm_length() -> None:
    endpointer = Endpointer(EndpointConfig(), sample_rate_hz=SR, window_samples=W)
    with pytest.raises(ValueError, match="windows"):
        endpointer.process(_ramp(W + 1), [0.9])
    assert endpointer.process(_ramp(0), []) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"neg_threshold": 0.5},
        {"neg_threshold": -0.1},
        {"min_speech_ms": -1},
        {"min_silence_ms": 0},
        {"digits_min_silence_ms": 0},
        {"speech_pad_ms": -10},
        {"max_utterance_s": 0.0},
        {"max_utterance_s": 0.1},
        {"max_utterance_s": float("inf")},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        EndpointConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rate", "window"), [(0, 512), (16000, 0)])
def test_endpointer_validation(rate: int, window: int) -> None:
    with pytest.raises(ConfigError):
        Endpointer(EndpointConfig(), sample_rate_hz=rate, window_samples=window)


@settings(deadline=None, max_examples=300)
@given(
    probs=st.lists(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.95]), min_size=1, max_size=180),
    steps=st.lists(st.integers(1, 12), min_size=1, max_size=10),
    min_speech_ms=st.sampled_from([0, 10, 30, 50]),
    min_silence_ms=st.sampled_from([10, 40, 100]),
    speech_pad_ms=st.sampled_from([0, 20, 50]),
    max_utterance_s=st.sampled_from([0.06, 0.3, 15.0]),
)
def test_utterance_audio_is_contiguous(
    probs: list[float],
    steps: list[int],
    min_speech_ms: int,
    min_silence_ms: int,
    speech_pad_ms: int,
    max_utterance_s: float,
) -> None:
    config = EndpointConfig(
        min_speech_ms=min_speech_ms,
        min_silence_ms=min_silence_ms,
        speech_pad_ms=speech_pad_ms,
        max_utterance_s=max_utterance_s,
    )
    endpointer = Endpointer(config, sample_rate_hz=SR, window_samples=W)
    pcm = _ramp(len(probs) * W)  # < 32768 samples: every value is its own index
    pad = SR * speech_pad_ms // 1000
    max_samples = round(max_utterance_s * SR)

    def prob_at(sample: int) -> float:
        return probs[sample // W]

    onset = 0
    previous_end = 0  # first sample not yet carried by an utterance
    open_start: int | None = None  # first audio sample of the open utterance
    audio_end = 0  # one past the last audio sample of the open utterance
    silent: int | None = None
    first, index = 0, 0
    while first < len(probs):
        count = steps[index % len(steps)]
        index += 1
        chunk = probs[first : first + count]
        events = endpointer.process(pcm[first * W : (first + len(chunk)) * W], chunk)
        first += len(chunk)
        for event in events:
            if isinstance(event, SpeechStarted):
                assert open_start is None
                start = int(event.audio[0])
                assert start == max(event.onset_sample - pad, previous_end)
                open_start, silent, onset = start, None, event.onset_sample
                audio_end = start + len(event.audio)
                np.testing.assert_array_equal(event.audio, pcm[start:audio_end])
                # Fired at the first window where speech had lasted min_speech_ms.
                assert prob_at(onset) >= config.threshold
                assert onset == previous_end or prob_at(onset - W) < config.threshold
                held = [prob_at(i) >= config.neg_threshold for i in range(onset, audio_end, W)]
                assert all(held)
                assert (audio_end - onset) * 1000 >= min_speech_ms * SR
                assert audio_end - onset == W or (audio_end - W - onset) * 1000 < min_speech_ms * SR
            elif isinstance(event, SpeechAudio):
                assert open_start is not None
                assert int(event.audio[0]) == audio_end  # no gap, no duplicate
                np.testing.assert_array_equal(
                    event.audio, pcm[audio_end : audio_end + len(event.audio)]
                )
                audio_end += len(event.audio)
            elif isinstance(event, SilenceStarted):
                assert open_start is not None and silent is None
                assert event.at_sample == audio_end  # sent before the silent window's audio
                silent = event.at_sample
            elif isinstance(event, SpeechResumed):
                assert open_start is not None and silent is not None
                assert event.at_sample == audio_end
                silent = None
            else:
                assert open_start is not None
                assert audio_end == first * W or first * W - audio_end < len(chunk) * W
                if event.reason == "silence":
                    assert silent is not None
                    assert event.end_sample == silent
                    quiet = [prob_at(i) < config.threshold for i in range(silent, audio_end, W)]
                    assert all(quiet)
                    assert (audio_end - silent) * 1000 >= min_silence_ms * SR
                    assert (audio_end - W - silent) * 1000 < min_silence_ms * SR
                else:
                    assert event.end_sample == audio_end
                    assert audio_end - onset >= max_samples
                    assert audio_end - W - onset < max_samples
                previous_end, open_start = audio_end, None
        assert endpointer.in_speech == (open_start is not None)
        assert endpointer.samples_seen == first * W
        if open_start is not None:
            assert audio_end == first * W  # nothing of the open utterance withheld
