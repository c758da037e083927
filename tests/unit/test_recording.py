"""The call recorder's stereo mix: alignment, bot queueing, barge-in, PCI pauses."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.recording import CallRecorder, Pause

__all__: list[str] = []

WINDOW = 512


def _frames(data: bytes) -> npt.NDArray[np.int16]:
    """Stereo bytes as an (n, 2) array: column 0 the caller (left), 1 the bot (right)."""
    assert len(data) % 4 == 0
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2).astype(np.int16)


def _silence(n: int) -> npt.NDArray[np.int16]:
    return np.zeros(n, dtype=np.int16)


def _ramp(n: int, *, start: int = 1, sign: int = 1) -> npt.NDArray[np.int16]:
    """Distinct non-zero samples, so any misalignment shows."""
    return (sign * ((np.arange(n) + start - 1) % 30000 + 1)).astype(np.int16)


def test_a_click_at_caller_sample_n_is_at_left_frame_n() -> None:
    rec = CallRecorder()
    click_at = 3 * WINDOW + 77
    out = b""
    for w in range(6):
        window = _silence(WINDOW)
        if w * WINDOW <= click_at < (w + 1) * WINDOW:
            window[click_at - w * WINDOW] = 12345
        rec.caller(window)
        out += rec.take()
    frames = _frames(out + rec.finish())
    assert len(frames) == 6 * WINDOW
    assert np.flatnonzero(frames[:, 0]).tolist() == [click_at]
    assert not frames[:, 1].any()
    assert rec.position_ms == 6 * WINDOW / 16
    assert rec.sample_rate_hz == 16000


def test_bot_chunks_queue_back_to_back_from_the_caller_position() -> None:
    rec = CallRecorder()
    rec.caller(_silence(WINDOW))
    first, second = _ramp(300, sign=-1), _ramp(400, start=301, sign=-1)
    rec.bot(first)  # starts at the caller position, 512
    rec.bot(second)  # sent ahead of real time: queues after the first
    for _ in range(3):
        rec.caller(_silence(WINDOW))
    frames = _frames(rec.take() + rec.finish())
    assert len(frames) == 4 * WINDOW
    right = frames[:, 1]
    assert not right[:WINDOW].any()
    assert right[WINDOW : WINDOW + 700].tolist() == _ramp(700, sign=-1).tolist()
    assert not right[WINDOW + 700 :].any()
    assert not frames[:, 0].any()


def test_bot_audio_after_a_gap_starts_at_the_caller_position() -> None:
    rec = CallRecorder()
    rec.bot(_ramp(100))  # plays at 0..100
    rec.caller(_silence(WINDOW))
    rec.caller(_silence(WINDOW))
    rec.bot(_ramp(50, start=101))  # the queue ran dry at 100: this starts at 1024
    rec.caller(_silence(WINDOW))
    right = _frames(rec.take())[:, 1]
    assert right[:100].tolist() == _ramp(100).tolist()
    assert not right[100 : 2 * WINDOW].any()
    assert right[2 * WINDOW : 2 * WINDOW + 50].tolist() == _ramp(50, start=101).tolist()


def test_take_holds_back_queued_bot_audio_and_finish_plays_it_out() -> None:
    rec = CallRecorder()
    rec.caller(_ramp(WINDOW))
    rec.bot(_ramp(2000, sign=-1))  # from 512 to 2512
    rec.caller(_ramp(WINDOW, start=WINDOW + 1))
    taken = _frames(rec.take())
    assert len(taken) == 2 * WINDOW  # only up to the caller position
    assert rec.take() == b""
    rest = _frames(rec.finish())
    assert len(rest) == 2000 - WINDOW  # the bot's tail, after the caller's last sample
    assert not rest[:, 0].any()  # the caller channel is silent there
    both = np.concatenate([taken, rest])
    assert both[:, 0].tolist() == _ramp(2 * WINDOW).tolist() + [0] * (2000 - WINDOW)
    assert both[WINDOW:, 1].tolist() == _ramp(2000, sign=-1).tolist()
    assert rec.frames_taken == WINDOW + 2000


def test_barge_in_drops_only_the_unplayed_bot_audio() -> None:
    rec = CallRecorder()
    rec.bot(_ramp(3000))
    rec.caller(_silence(WINDOW))
    first = _frames(rec.take())
    rec.caller(_silence(WINDOW))
    rec.bot_cleared()  # the caller spoke at 1024: 1024..3000 was never played
    rec.caller(_silence(WINDOW))
    rest = _frames(rec.take() + rec.finish())
    right = np.concatenate([first, rest])[:, 1]
    assert len(right) == 3 * WINDOW
    assert right[: 2 * WINDOW].tolist() == _ramp(2 * WINDOW).tolist()
    assert not right[2 * WINDOW :].any()
    rec2 = CallRecorder()
    rec2.bot(_ramp(10))
    rec2.bot_cleared()  # nothing played yet: all of it goes
    assert rec2.finish() == b""


def test_bot_audio_after_a_barge_in_starts_at_the_caller_position() -> None:
    rec = CallRecorder()
    rec.bot(_ramp(5000))
    rec.caller(_silence(WINDOW))
    rec.bot_cleared()
    rec.bot(_ramp(10, start=20001))
    frames = _frames(rec.finish())
    assert len(frames) == WINDOW + 10
    assert frames[WINDOW:, 1].tolist() == _ramp(10, start=20001).tolist()


def test_a_pause_silences_both_channels_over_exactly_its_interval() -> None:
    rec = CallRecorder()
    rec.caller(_ramp(WINDOW))
    rec.bot(_ramp(4 * WINDOW, sign=-1))  # 512..2560, across the pause
    rec.caller(_ramp(WINDOW, start=WINDOW + 1))
    rec.pause("card_number")  # at 1024
    rec.pause("other")  # a no-op: the first reason stays
    out = rec.take()
    rec.caller(_ramp(WINDOW, start=2 * WINDOW + 1))
    out += rec.take()
    rec.caller(_ramp(WINDOW, start=3 * WINDOW + 1))
    rec.resume()  # at 2048
    rec.resume()  # a no-op
    rec.caller(_ramp(WINDOW, start=4 * WINDOW + 1))
    frames = _frames(out + rec.take() + rec.finish())
    assert len(frames) == 5 * WINDOW  # the bot's audio ends with the caller's, at 2560
    expected_left = _ramp(5 * WINDOW)
    expected_left[2 * WINDOW : 4 * WINDOW] = 0
    assert frames[:, 0].tolist() == expected_left.tolist()
    expected_right = _silence(5 * WINDOW)
    expected_right[WINDOW:] = _ramp(4 * WINDOW, sign=-1)
    expected_right[2 * WINDOW : 4 * WINDOW] = 0
    assert frames[:, 1].tolist() == expected_right.tolist()
    assert rec.pauses == (Pause(start_ms=64.0, end_ms=128.0, reason="card_number"),)


def test_pauses_are_frozen_reported_while_open_and_closed_at_finish() -> None:
    rec = CallRecorder()
    rec.resume()  # not paused: a no-op
    rec.caller(_ramp(1600))
    rec.pause("cvv")
    assert rec.paused
    assert rec.pauses == (Pause(start_ms=100.0, end_ms=None, reason="cvv"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.pauses[0].reason = "x"  # type: ignore[misc]
    rec.caller(_ramp(160))
    rec.bot(_ramp(160))  # plays 1760..1920, inside the open pause
    frames = _frames(rec.take() + rec.finish())
    assert len(frames) == 1920
    assert not frames[1600:].any()
    assert frames[:1600, 0].tolist() == _ramp(1600).tolist()
    assert rec.pauses == (Pause(start_ms=100.0, end_ms=120.0, reason="cvv"),)
    assert not rec.paused


def test_finish_is_final() -> None:
    rec = CallRecorder()
    rec.caller(_ramp(10))
    assert len(rec.finish()) == 40
    assert rec.finish() == b""
    assert rec.take() == b""
    with pytest.raises(RuntimeError):
        rec.caller(_ramp(10))
    with pytest.raises(RuntimeError):
        rec.bot(_ramp(10))


def test_rejects_audio_that_is_not_mono_int16() -> None:
    rec = CallRecorder()
    with pytest.raises(ValueError, match="int16"):
        rec.caller(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        rec.bot(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(ValueError):
        CallRecorder(sample_rate_hz=0)


def test_the_recorder_keeps_its_own_copy_of_the_audio() -> None:
    rec = CallRecorder()
    window = _ramp(WINDOW)
    rec.caller(window)
    window[:] = 0  # the server reuses its buffer
    assert _frames(rec.take())[:, 0].tolist() == _ramp(WINDOW).tolist()


# --- any interleaving, against a straightforward model on absolute arrays -------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("caller"), st.integers(0, 1200)),
        st.tuples(st.just("bot"), st.integers(0, 1500)),
        st.tuples(st.just("clear"), st.just(0)),
        st.tuples(st.just("pause"), st.integers(0, 2)),
        st.tuples(st.just("resume"), st.just(0)),
        st.tuples(st.just("take"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_any_interleaving_matches_the_model(ops: list[tuple[str, int]]) -> None:
    rec = CallRecorder()
    caller: list[int] = []  # all the caller's samples
    right = np.zeros(0, dtype=np.int16)  # the bot channel, absolute
    bot_end = 0
    spans: list[tuple[int, int | None]] = []  # (start, end) in samples
    reasons: list[str] = []
    bot_sent = 0
    out = b""
    for op, n in ops:
        position = len(caller)
        if op == "caller":
            rec.caller(_ramp(n, start=position + 1))
            caller.extend(_ramp(n, start=position + 1).tolist())
        elif op == "bot":
            chunk = _ramp(n, start=bot_sent + 1, sign=-1)
            bot_sent += n
            rec.bot(chunk)
            start = max(position, bot_end)
            right = np.concatenate([right, _silence(max(0, start + n - len(right)))])
            right[start : start + n] = chunk
            bot_end = start + n
        elif op == "clear":
            rec.bot_cleared()
            if bot_end > position:
                right[position:bot_end] = 0
                bot_end = position
        elif op == "pause":
            rec.pause(f"reason{n}")
            if not spans or spans[-1][1] is not None:
                spans.append((position, None))
                reasons.append(f"reason{n}")
        elif op == "resume":
            rec.resume()
            if spans and spans[-1][1] is None:
                spans[-1] = (spans[-1][0], position)
        else:
            before = rec.frames_taken
            got = rec.take()
            assert len(got) == 4 * (position - before)  # exactly the final frames
            out += got
    out += rec.finish()
    total = max(len(caller), bot_end)
    frames = _frames(out)
    assert len(frames) == total  # every caller sample, plus the bot's trailing audio

    mask = np.zeros(total, dtype=bool)
    for start, end in spans:
        mask[start : total if end is None else end] = True
    left = np.concatenate([np.array(caller, dtype=np.int16), _silence(total - len(caller))])
    assert frames[~mask, 0].tolist() == left[~mask].tolist()  # the caller, outside pauses
    assert not frames[mask].any()  # silence on both channels inside them
    expected_right = np.concatenate([right, _silence(max(0, total - len(right)))])[:total]
    assert frames[~mask, 1].tolist() == expected_right[~mask].tolist()

    expected_pauses = tuple(
        Pause(
            start_ms=start / 16,
            end_ms=(total if end is None else end) / 16,
            reason=reason,
        )
        for (start, end), reason in zip(spans, reasons, strict=True)
    )
    assert rec.pauses == expected_pauses
