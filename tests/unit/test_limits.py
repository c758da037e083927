"""The per-connection clock: which bound the next read waits under, and how long a
caller running ahead of real time is left unread."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.limits import AudioClock, CallLimits

__all__: list[str] = []

LIMITS = CallLimits(first_message_timeout_s=5, no_audio_timeout_s=3, max_audio_ahead_ms=1000)


def test_first_message_then_audio_bounds() -> None:
    clock = AudioClock(LIMITS)
    clock.opened(100.0, received=False)
    assert clock.deadline(101.0) == (4.0, "no message within 5 s")
    clock.received(102.0, audio_ms=0)  # start: a message, no audio yet
    left, what = clock.deadline(102.0)
    assert (left, what) == (1.0, "no audio for 3 s")  # counted from the opening
    clock.received(102.5, audio_ms=20)
    assert clock.deadline(103.0)[0] == pytest.approx(2.5)
    clock.received(104.0, audio_ms=20)  # a mark or a key: no audio, no extension
    assert clock.deadline(104.0)[0] == pytest.approx(1.5)


def test_a_connection_opened_with_its_first_message_waits_for_audio() -> None:
    clock = AudioClock(LIMITS)
    clock.opened(0.0, received=True)
    assert clock.deadline(0.0) == (3.0, "no audio for 3 s")


def test_real_time_callers_are_never_throttled() -> None:
    clock = AudioClock(LIMITS)
    clock.opened(0.0, received=False)
    for frame in range(1, 500):
        now = frame * 0.02
        clock.received(now, audio_ms=frame * 20)
        assert clock.throttle_s(now) == 0.0


@given(st.floats(1.5, 100.0), st.integers(10, 400))
def test_a_fast_caller_is_held_to_real_time_plus_the_allowance(speed: float,
                                                               frames: int) -> None:
    """Frames arrive ``speed`` times faster than real time; whenever the runtime sleeps
    what throttle_s says, the caller ends at most max_audio_ahead_ms ahead."""
    clock = AudioClock(LIMITS)
    clock.opened(0.0, received=False)
    now = 0.0
    for frame in range(1, frames + 1):
        now += 0.02 / speed
        clock.received(now, audio_ms=frame * 20)
        now += clock.throttle_s(now)
        ahead_ms = frame * 20 - (now - 0.02 / speed) * 1000
        assert ahead_ms <= LIMITS.max_audio_ahead_ms + 1e-6
