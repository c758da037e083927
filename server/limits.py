"""Per-connection bounds: which wait bounds the next read, and inbound audio pacing.

Pure (times are passed in), like server/admission.py: the runtime asks
:meth:`AudioClock.deadline` how long it may wait for the next message and
:meth:`AudioClock.throttle_s` how long to stop reading a caller who streams faster
than real time (the socket's TCP window then slows the sender down).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AudioClock", "CallLimits"]


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Bounds on what one connection may hold or send (config keys of the same names)."""

    first_message_timeout_s: float = 10.0
    no_audio_timeout_s: float = 10.0
    """Audio must keep arriving: after ``start`` and between frames (providers stream
    silence too, so a gap means a stalled or abusive client)."""
    max_audio_ahead_ms: float = 2000.0


class AudioClock:
    """Which wait bounds the next read, and how far the caller runs ahead of real time.

    ``audio_ms`` is the session's clock (caller audio received); wall times are the
    event loop's.  Pure: times are passed in.
    """

    def __init__(self, limits: CallLimits) -> None:
        self._limits = limits
        self._any_message = False
        self._audio_ms = 0.0
        self._last_progress = 0.0  # wall time the audio clock last advanced (or opening)
        self._audio_origin: float | None = None  # wall time matching audio_ms 0

    def opened(self, now: float, *, received: bool) -> None:
        self._last_progress = now
        self._any_message = received

    def received(self, now: float, *, audio_ms: float) -> None:
        self._any_message = True
        if audio_ms > self._audio_ms:
            if self._audio_origin is None:
                self._audio_origin = now - self._audio_ms / 1000
            self._audio_ms = audio_ms
            self._last_progress = now

    def deadline(self, now: float) -> tuple[float, str]:
        """(seconds left, what it waits for) for the next read."""
        if not self._any_message:
            bound = self._limits.first_message_timeout_s
            what = f"no message within {bound:g} s"
        else:
            bound = self._limits.no_audio_timeout_s
            what = f"no audio for {bound:g} s"
        return self._last_progress + bound - now, what

    def throttle_s(self, now: float) -> float:
        """How long to stop reading so the caller is at most ``max_audio_ahead_ms`` ahead."""
        if self._audio_origin is None:
            return 0.0
        ahead_ms = self._audio_ms - (now - self._audio_origin) * 1000
        return max(0.0, ahead_ms - self._limits.max_audio_ahead_ms) / 1000
