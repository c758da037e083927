"""What a :class:`~voicebot.caller.ScriptedCaller` is told and what it reports.

Pure values.  A :class:`CallScript` is one call from the caller's side: its turns
(speech as 20 ms line frames, or keys), the pause before each and the barge-ins, the
reply timeout and how the caller tells that a reply is over.  A :class:`TurnRecord`
is one turn as measured (times in seconds on the driver's clock) and a
:class:`CallEnd` how the call ended.  Making the caller's audio (TTS, WAV files) is
the driver's business: a script carries the frames, built by :func:`speech_turn`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.types import Pcm

__all__ = ["FRAME_MS", "Actions", "CallEnd", "CallScript", "ReplyEnd", "Turn", "TurnRecord",
           "line_frames", "speech_end_ms", "speech_turn"]

FRAME_MS = 20
"""The line's frame: the caller sends one every 20 ms, speech or silence."""


def line_frames(pcm: Pcm, encoding: AudioEncoding, rate_hz: int) -> tuple[bytes, ...]:
    """``pcm`` as 20 ms frames in ``encoding`` (at least one; the last padded with silence)."""
    samples = rate_hz * FRAME_MS // 1000
    count = max(1, -(-len(pcm) // samples))
    padded = np.zeros(count * samples, np.int16)
    padded[: len(pcm)] = pcm
    data = encode(padded, encoding)
    size = len(data) // count
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def speech_end_ms(pcm: Pcm, sample_rate_hz: int, *, threshold: int = 300) -> float:
    """Where speech ends in ``pcm`` (last sample louder than ``threshold``), in ms."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return (int(loud[-1]) + 1 if len(loud) else 0) * 1000.0 / sample_rate_hz


@dataclass(frozen=True, slots=True)
class Turn:
    """One caller turn: speech (``frames``, 20 ms each in the line's encoding) or keys.

    ``speech_start_ms`` / ``speech_end_ms`` place the speech in the frames: the turn's
    latency runs from the sending of the frame holding its last speech sample, a
    barge-in's reaction from the frame holding its first.  ``pause_s``: the caller's
    pause after the bot's reply before this turn.  ``barge_in_after_s``: talk over the
    bot this long into its reply, if it is still talking then (None: never).
    """

    frames: tuple[bytes, ...] = ()
    keys: str = ""
    speech_start_ms: float = 0.0
    speech_end_ms: float = 0.0
    pause_s: float = 0.4
    barge_in_after_s: float | None = None

    def __post_init__(self) -> None:
        if bool(self.frames) == bool(self.keys):
            raise ValueError("a caller turn is either speech (frames) or keys")

    @property
    def kind(self) -> str:
        """``dtmf`` for keys, ``turn`` for speech."""
        return "dtmf" if self.keys else "turn"

    def marks(self) -> tuple[int, int]:
        """The indexes of the frames holding the first and the last speech sample."""
        last = len(self.frames) - 1
        return (min(int(self.speech_start_ms // FRAME_MS), last),
                min(int(max(self.speech_end_ms - 1, 0) // FRAME_MS), last))


def speech_turn(pcm: Pcm, encoding: AudioEncoding, rate_hz: int, *, pause_s: float = 0.4,
                speech_start_ms: float = 0.0, speech_end: float | None = None,
                barge_in_after_s: float | None = None) -> Turn:
    """A spoken turn from PCM at the line's rate; its speech ends at ``speech_end`` ms
    (default: the last loud sample, :func:`speech_end_ms`)."""
    end = speech_end_ms(pcm, rate_hz) if speech_end is None else speech_end
    return Turn(line_frames(pcm, encoding, rate_hz), speech_start_ms=speech_start_ms,
                speech_end_ms=end, pause_s=pause_s, barge_in_after_s=barge_in_after_s)


class ReplyEnd(enum.Enum):
    """How the caller tells that the bot's reply is over."""

    QUIET = enum.auto()  # no bot audio for quiet_s after the playout of its first audio on
    EVENTS = enum.auto()  # the native protocol's speech_end (not interrupted), end_grace_s on


@dataclass(frozen=True, slots=True)
class CallScript:
    """One call from the caller's side.  ``final_pause_s``: after the last reply, before
    ``stop``; ``keep_audio``: keep the bot's audio (``ScriptedCaller.bot_audio``)."""

    turns: tuple[Turn, ...]
    scenario: str | None = None
    turn_timeout_s: float = 20.0
    reply_end: ReplyEnd = ReplyEnd.QUIET
    quiet_s: float = 0.8
    end_grace_s: float = 0.15
    final_pause_s: float = 0.0
    keep_audio: bool = True


@dataclass(frozen=True, slots=True)
class CallEnd:
    """How a call ended: ``how`` is ``timeout`` (no reply in time), ``error`` (a fatal
    server error, or a message the dialect could not read: ``detail``), ``hangup`` (the
    server hung up or transferred: ``event`` on the native protocol) or ``closed`` (the
    connection closed; ``close_code`` None: lost without a close frame)."""

    how: str
    event: p.ServerEvent | None = None
    close_code: int | None = None
    close_reason: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn as measured, times on the driver's clock (s).  Turn 0 is the greeting;
    ``onset_at`` / ``spoke_until``: the caller's input began / ended (the greeting: the
    start; None: not sent); ``first_audio_at``: the reply's first audio; ``end``: set
    on the turn the call ended in."""

    turn: int
    kind: str  # greeting, turn or dtmf
    onset_at: float | None = None
    spoke_until: float | None = None
    first_audio_at: float | None = None
    bot_audio_s: float = 0.0
    transcript: str | None = None
    intent: str | None = None
    confidence: float | None = None
    bot_text: str | None = None
    barge_in: bool = False  # the caller talked over the bot
    clear_at: float | None = None  # the first clear after the caller's onset
    end: CallEnd | None = None

    @property
    def latency_ms(self) -> float | None:
        """End of the caller's input → the reply's first audio."""
        if self.first_audio_at is None or self.spoke_until is None:
            return None
        return (self.first_audio_at - self.spoke_until) * 1000

    @property
    def barge_in_ms(self) -> float | None:
        """The caller's onset → the server's clear."""
        if self.clear_at is None or self.onset_at is None:
            return None
        return (self.clear_at - self.onset_at) * 1000


@dataclass(frozen=True, slots=True)
class Actions:
    """What a caller's driver does now: send ``send`` in order, hand on ``records`` (the
    turns finished, each once), and wake the caller at ``wake_at`` unless a message comes
    first (None: the call is over; close the connection).  ``heard``: the turns whose
    reply has just begun, as recorded so far (latency, intent, barge-in), for drivers
    that report measurements as they come."""

    send: tuple[str | bytes, ...] = ()
    records: tuple[TurnRecord, ...] = ()
    wake_at: float | None = None
    heard: tuple[TurnRecord, ...] = ()

    @property
    def done(self) -> bool:
        return self.wake_at is None
