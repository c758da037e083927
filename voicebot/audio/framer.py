"""Fixed-size framing of audio streams.

:class:`Framer` regroups incoming PCM chunks of any size into whole detector
windows (e.g. Silero's 512 samples); :func:`split_frames` cuts outgoing wire
audio into frames of a fixed byte size.
"""

from __future__ import annotations

import numpy as np

from voicebot.errors import ConfigError
from voicebot.types import Pcm

__all__ = ["Framer", "split_frames"]


class Framer:
    """Regroups a PCM16 stream into whole windows of ``window_samples``.

    :meth:`push` returns the concatenation of every whole window now available
    (its length is a multiple of ``window_samples``, possibly 0) and keeps the
    remainder for the next push.
    """

    __slots__ = ("_pending", "_window_samples")

    def __init__(self, window_samples: int) -> None:
        if window_samples <= 0:
            raise ConfigError(f"window_samples must be positive, got {window_samples}")
        self._window_samples = window_samples
        self._pending: Pcm = np.zeros(0, dtype=np.int16)

    @property
    def window_samples(self) -> int:
        return self._window_samples

    @property
    def pending_samples(self) -> int:
        """Samples kept back, waiting to complete a window."""
        return int(self._pending.size)

    def push(self, pcm: Pcm) -> Pcm:
        """Add ``pcm``; return every whole window now available, concatenated."""
        samples = np.asarray(pcm, dtype=np.int16)
        if samples.ndim != 1:
            raise ValueError(f"expected mono 1-D PCM, got shape {samples.shape}")
        buffered = np.concatenate((self._pending, samples)) if self._pending.size else samples
        whole = buffered.size - buffered.size % self._window_samples
        # Copies, so neither the result nor the remainder aliases the caller's array.
        self._pending = buffered[whole:].copy()
        return buffered[:whole].copy()

    def reset(self) -> None:
        """Drop the pending remainder."""
        self._pending = np.zeros(0, dtype=np.int16)


def split_frames(data: bytes, frame_bytes: int) -> list[bytes]:
    """Split ``data`` into frames of exactly ``frame_bytes`` (the last one may be shorter)."""
    if frame_bytes <= 0:
        raise ConfigError(f"frame_bytes must be positive, got {frame_bytes}")
    view = memoryview(data)
    return [bytes(view[i : i + frame_bytes]) for i in range(0, len(view), frame_bytes)]
