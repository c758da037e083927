"""The caller's phone line: frames out in real time, the bot's audio, playout and marks.

A pure part of :class:`voicebot.caller.ScriptedCaller`, time passed in.  Once
started, the line owes a 20 ms frame every 20 ms: the caller's speech queued by
:meth:`CallerLine.say`, or silence.  A late driver gets the missed frames at once;
after a second of starvation the line's clock restarts (the lag is kept in
``max_lag_s``).  The bot's playout ends ``playout_end``: each audio message plays
after the audio before it (or now, if that has played), a ``clear`` ends it at once.
Each mark is echoed once the audio before it has played; a ``clear`` echoes them all.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from voicebot.audio.codecs import bytes_per_sample, decode
from voicebot.caller_script import FRAME_MS, line_frames
from voicebot.telephony.dialects import Dialect
from voicebot.types import Pcm

__all__ = ["END", "ONSET", "CallerLine"]

ONSET, END = 1, 2
"""Flags of a line frame: it holds the turn's first / last speech sample."""
_FRAME_S = FRAME_MS / 1000
_STARVED_S = 1.0


class CallerLine:
    """One call's line, in ``dialect``'s media messages."""

    def __init__(self, dialect: Dialect, *, keep_audio: bool) -> None:
        self.dialect, self.keep_audio = dialect, keep_audio
        self.playout_end = 0.0
        self.max_lag_s = 0.0  # the latest a frame went out
        self.marks_echoed = self.clears = 0
        self._bytes_per_s = dialect.rate * bytes_per_sample(dialect.encoding)
        self._silence = line_frames(np.zeros(0, np.int16), dialect.encoding, dialect.rate)[0]
        self._queue: deque[tuple[bytes, int]] = deque()  # speech frames, with their flags
        self._start, self._sent = 0.0, 0  # frames sent since the clock (re)started
        self._marks: list[tuple[float, str]] = []  # (echo when, mark name)
        self._audio: list[bytes] = []

    @property
    def next_frame_at(self) -> float:
        return self._start + self._sent * _FRAME_S

    def start(self, now: float) -> None:
        """The first frame is due now."""
        self._start, self._sent = now, 0

    def say(self, frames: tuple[bytes, ...], onset: int, end: int) -> None:
        """Queue speech; frame ``onset`` / ``end`` gets the :data:`ONSET` / :data:`END` flag."""
        self._queue.extend((frame, (ONSET if i == onset else 0) | (END if i == end else 0))
                           for i, frame in enumerate(frames))

    def frames_due(self, now: float) -> list[tuple[str | bytes, int]]:
        """The media messages due by ``now``, each with its frame's flags."""
        due: list[tuple[str | bytes, int]] = []
        while (at := self.next_frame_at) <= now:
            frame, flags = self._queue.popleft() if self._queue else (self._silence, 0)
            due.append((self.dialect.media(frame), flags))
            self.max_lag_s = max(self.max_lag_s, now - at)
            self._sent += 1
            if self.next_frame_at < now - _STARVED_S:
                self.start(now)
        return due

    def echoes_due(self, now: float) -> list[str | bytes]:
        """The mark echoes due by ``now``: their audio has played."""
        names = [name for at, name in self._marks if at <= now]
        if names:
            self._marks = [(at, name) for at, name in self._marks if at > now]
            self.marks_echoed += len(names)
        return [self.dialect.mark_echo(name) for name in names]

    def audio(self, data: bytes, now: float) -> float:
        """The bot's audio arrived; returns its duration (s)."""
        seconds = len(data) / self._bytes_per_s
        self.playout_end = max(self.playout_end, now) + seconds
        if self.keep_audio:
            self._audio.append(data)
        return seconds

    def mark(self, name: str, now: float) -> None:
        self._marks.append((max(self.playout_end, now), name))

    def clear(self, now: float) -> None:
        """The server flushed its audio: nothing more plays, every mark is due."""
        self.clears += 1
        self.playout_end = now
        self._marks = [(now, name) for _, name in self._marks]

    def hang_up(self) -> None:
        """The call is over: nothing more to say or echo."""
        self._queue.clear()
        self._marks.clear()

    def bot_audio(self) -> Pcm:
        """The bot's audio kept so far."""
        data = b"".join(self._audio)
        width = bytes_per_sample(self.dialect.encoding)
        return decode(data[: len(data) - len(data) % width], self.dialect.encoding)
