"""Tests of voicebot.audio.framer: window regrouping and outgoing frame splitting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voicebot.audio.framer import Framer, split_frames
from voicebot.engines.base import Pcm
from voicebot.errors import ConfigError

__all__: list[str] = []


def _push_in_chunks(framer: Framer, pcm: Pcm, chunk_sizes: list[int]) -> list[Pcm]:
    outputs, start, index = [], 0, 0
    while start < len(pcm):
        size = chunk_sizes[index % len(chunk_sizes)]
        outputs.append(framer.push(pcm[start : start + size]))
        start += size
        index += 1
    return outputs


@given(
    pcm=arrays(np.int16, st.integers(0, 3000)),
    window=st.integers(1, 600),
    chunk_sizes=st.lists(st.integers(0, 900), min_size=1, max_size=20).filter(any),
)
def test_any_chunking_yields_the_same_windows(
    pcm: Pcm, window: int, chunk_sizes: list[int]
) -> None:
    framer = Framer(window)
    outputs = _push_in_chunks(framer, pcm, chunk_sizes)
    for out in outputs:
        assert out.dtype == np.int16
        assert len(out) % window == 0
    whole = len(pcm) - len(pcm) % window
    joined = np.concatenate([np.zeros(0, dtype=np.int16), *outputs])
    np.testing.assert_array_equal(joined, pcm[:whole])
    assert framer.pending_samples == len(pcm) % window
    # The remainder completes with the next push.
    tail = np.arange(window - framer.pending_samples, dtype=np.int16)
    np.testing.assert_array_equal(
        framer.push(tail), np.concatenate([pcm[whole:], tail]) if len(tail) else []
    )
    assert framer.pending_samples == 0


def test_push_returns_nothing_until_a_window_is_full() -> None:
    framer = Framer(4)
    assert framer.push(np.array([1, 2, 3], dtype=np.int16)).size == 0
    assert framer.pending_samples == 3
    out = framer.push(np.array([4, 5, 6, 7, 8, 9], dtype=np.int16))
    assert out.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert framer.pending_samples == 1


def test_output_does_not_alias_the_input() -> None:
    framer = Framer(2)
    pcm = np.array([1, 2, 3], dtype=np.int16)
    out = framer.push(pcm)
    pcm[:] = 0
    assert out.tolist() == [1, 2]
    assert framer.push(np.array([4], dtype=np.int16)).tolist() == [3, 4]


def test_reset_drops_the_remainder() -> None:
    framer = Framer(4)
    framer.push(np.array([1, 2, 3], dtype=np.int16))
    framer.reset()
    assert framer.pending_samples == 0
    assert framer.push(np.array([5, 6, 7, 8], dtype=np.int16)).tolist() == [5, 6, 7, 8]


@pytest.mark.parametrize("window", [0, -512])
def test_rejects_bad_window(window: int) -> None:
    with pytest.raises(ConfigError):
        Framer(window)


def test_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match="mono"):
        Framer(4).push(np.zeros((4, 2), dtype=np.int16))


@given(data=st.binary(max_size=2000), size=st.integers(1, 500))
def test_split_frames_properties(data: bytes, size: int) -> None:
    frames = split_frames(data, size)
    assert b"".join(frames) == data
    assert all(len(frame) == size for frame in frames[:-1])
    if frames:
        assert 1 <= len(frames[-1]) <= size
    assert len(frames) == -(-len(data) // size)


def test_split_frames_examples() -> None:
    assert split_frames(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert split_frames(b"abcdef", 3) == [b"abc", b"def"]
    assert split_frames(b"", 160) == []
    with pytest.raises(ConfigError):
        split_frames(b"abc", 0)
