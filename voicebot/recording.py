"""A call's stereo recording, mixed as the call goes: caller LEFT, bot RIGHT.

This is the pure part (no file, no clock, no thread): :class:`CallRecorder` is fed
what the server sees of one call and hands back interleaved stereo int16
little-endian frames to append to a file (:mod:`server.recording_file` writes them).

The time axis is the caller's audio clock: caller sample ``n`` is frame ``n``.

* :meth:`CallRecorder.caller` appends the caller's next samples, contiguously.
* :meth:`CallRecorder.bot` queues bot speech: a chunk starts at
  ``max(caller position, end of the queued bot audio)``, so audio sent ahead of
  real time plays after what is queued, and a gap in the bot's speech is silence.
* :meth:`CallRecorder.bot_cleared` (barge-in) drops the queued bot audio that lies
  beyond the caller position: it was never played.
* :meth:`CallRecorder.pause` / :meth:`CallRecorder.resume` (sensitive input, PCI
  DSS): from the caller position at ``pause`` to the one at ``resume`` both channels
  are silence, and the interval is kept in :attr:`CallRecorder.pauses`.
* :meth:`CallRecorder.take` returns the frames that are final (up to the caller
  position: queued bot audio beyond it may still be dropped by a barge-in);
  :meth:`CallRecorder.finish` returns the rest, queued bot audio included, with
  the caller channel silent under it.

Memory holds only what is not yet taken (plus the bot's queued speech). One
recorder belongs to one call and is not thread-safe.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from voicebot.types import Pcm

__all__ = ["CallRecorder", "Pause"]

_log = logging.getLogger(__name__)

_STEREO_DTYPE = np.dtype("<i2")


@dataclass(frozen=True, slots=True)
class Pause:
    """A span of the recording written as silence; ``end_ms`` is None while it lasts."""

    start_ms: float
    end_ms: float | None
    reason: str


class _Channel:
    """One channel's pending samples: a queue of int16 chunks, cut and taken from the front."""

    __slots__ = ("_chunks", "_length")

    def __init__(self) -> None:
        self._chunks: deque[Pcm] = deque()
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def append(self, pcm: Pcm) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self._length += len(pcm)

    def pad_to(self, length: int) -> None:
        """Append silence until the channel holds ``length`` samples."""
        if length > self._length:
            self.append(np.zeros(length - self._length, dtype=np.int16))

    def truncate(self, length: int) -> None:
        """Drop everything past the first ``length`` samples."""
        while self._length > length:
            last = self._chunks[-1]
            excess = self._length - length
            if excess >= len(last):
                self._chunks.pop()
                self._length -= len(last)
            else:
                self._chunks[-1] = last[: len(last) - excess]
                self._length = length

    def take(self, count: int) -> Pcm:
        """Remove and return the first ``count`` samples, silence where there are none."""
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self._chunks:
            head = self._chunks[0]
            used = min(len(head), count - filled)
            out[filled : filled + used] = head[:used]
            filled += used
            if used == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[used:]
        self._length = max(0, self._length - count)
        return out


def _mono(pcm: Pcm, who: str) -> Pcm:
    array = np.asarray(pcm)
    if array.dtype != np.int16 or array.ndim != 1:
        raise ValueError(f"{who} audio must be 1-D int16 PCM, got {array.dtype} {array.shape}")
    return array


class CallRecorder:
    """Builds one call's stereo recording; see the module docstring for the time rules."""

    def __init__(self, *, sample_rate_hz: int = 16000) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        self._rate = sample_rate_hz
        self._caller_samples = 0  # caller samples received: the caller position
        self._taken = 0  # frames already returned by take()/finish()
        self._left = _Channel()  # caller samples [taken, caller position)
        self._right = _Channel()  # bot samples [taken, taken + len)
        self._pauses: list[tuple[int, int | None, str]] = []  # sample spans, in order
        self._finished = False

    @property
    def sample_rate_hz(self) -> int:
        return self._rate

    @property
    def position_ms(self) -> float:
        """The caller position (the call's audio clock) in milliseconds."""
        return self._ms(self._caller_samples)

    @property
    def frames_taken(self) -> int:
        """Stereo frames returned so far by :meth:`take` and :meth:`finish`."""
        return self._taken

    @property
    def paused(self) -> bool:
        return bool(self._pauses) and self._pauses[-1][1] is None

    @property
    def pauses(self) -> tuple[Pause, ...]:
        """Every pause so far, in order; the last one's ``end_ms`` is None while paused."""
        return tuple(
            Pause(
                start_ms=self._ms(start),
                end_ms=None if end is None else self._ms(end),
                reason=reason,
            )
            for start, end, reason in self._pauses
        )

    def caller(self, pcm: Pcm) -> None:
        """Append the caller's next samples (contiguous from the start of the call)."""
        samples = _mono(pcm, "caller")
        self._check_open()
        # While paused the caller's audio (a card number) is not even kept in memory.
        if self.paused:
            self._left.append(np.zeros(len(samples), dtype=np.int16))
        else:
            self._left.append(samples.copy())
        self._caller_samples += len(samples)

    def bot(self, pcm: Pcm) -> None:
        """Queue bot speech after what is queued, and not before the caller position."""
        samples = _mono(pcm, "bot")
        self._check_open()
        self._right.pad_to(self._caller_samples - self._taken)
        self._right.append(samples.copy())

    def bot_cleared(self) -> None:
        """Barge-in: drop the queued bot audio beyond the caller position (never played)."""
        self._right.truncate(self._caller_samples - self._taken)

    def pause(self, reason: str) -> None:
        """Write silence on both channels from the caller position until :meth:`resume`.

        A no-op while already paused (the first reason stays).
        """
        self._check_open()
        if self.paused:
            return
        self._pauses.append((self._caller_samples, None, reason))
        _log.debug("recording paused at %.0f ms", self.position_ms)

    def resume(self) -> None:
        """End the current pause at the caller position; a no-op when not paused."""
        if not self.paused:
            return
        start, _, reason = self._pauses[-1]
        self._pauses[-1] = (start, self._caller_samples, reason)
        _log.debug("recording resumed at %.0f ms", self.position_ms)

    def take(self) -> bytes:
        """Return (and forget) the final frames: those up to the caller position."""
        return self._emit(self._caller_samples - self._taken)

    def finish(self) -> bytes:
        """Return the rest at the end of the call, the queued bot audio played out.

        An open pause ends at the end of the recording. Later calls return ``b""``;
        feeding audio after it raises :class:`RuntimeError`.
        """
        if self._finished:
            return b""
        count = max(self._caller_samples - self._taken, len(self._right))
        data = self._emit(count)
        if self.paused:
            start, _, reason = self._pauses[-1]
            self._pauses[-1] = (start, self._taken, reason)
        self._finished = True
        return data

    def _emit(self, count: int) -> bytes:
        if count <= 0:
            return b""
        frames = np.empty((count, 2), dtype=_STEREO_DTYPE)
        frames[:, 0] = self._left.take(count)
        frames[:, 1] = self._right.take(count)
        begin, end = self._taken, self._taken + count
        for start, stop, _ in self._pauses:
            lo = max(start, begin)
            hi = end if stop is None else min(stop, end)
            if lo < hi:
                frames[lo - begin : hi - begin] = 0
        self._taken = end
        return frames.tobytes()

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("the recording is finished")

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self._rate
