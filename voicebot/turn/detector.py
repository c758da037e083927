"""The end-of-turn model's Protocol, :class:`TurnDetector`, and its :class:`TurnVerdict`.

An end-of-turn model hears the caller's turn so far (16 kHz mono PCM16, the
rate the server keeps the caller's audio at for the VAD; 8 kHz calls are
resampled on the way in) and says how likely it is that the caller has finished
their turn.  It only looks at the end of the turn (``window_ms``, 8 s for Smart
Turn v3), so a caller needs to send no more than that.

Conventions of :mod:`voicebot.engines.base` apply: blocking, complete calls; no
thread pools (``threads`` comes from the scheduler); third-party errors raised as
:class:`voicebot.errors.EngineError`.  Implementations: the ONNX Runtime adapter
:class:`voicebot.engines.smart_turn.SmartTurnDetector` (registry name
``smart-turn``) and the scripted :class:`voicebot.engines.fakes.FakeTurnDetector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from voicebot.types import Pcm

__all__ = ["DEFAULT_THRESHOLD", "TurnDetector", "TurnVerdict"]

DEFAULT_THRESHOLD = 0.5
"""Smart Turn's published decision threshold: complete when the probability exceeds it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnVerdict:
    """What an end-of-turn model said about a turn's audio."""

    complete_prob: float
    """Probability in [0, 1] that the caller has finished the turn."""
    complete: bool
    """``complete_prob`` above the detector's threshold."""
    heard_ms: int
    """How much audio the model heard: the turn's length, at most its window."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.complete_prob <= 1.0:
            raise ValueError(f"complete_prob must be in [0, 1], got {self.complete_prob}")
        if self.heard_ms < 0:
            raise ValueError(f"heard_ms must not be negative, got {self.heard_ms}")


class TurnDetector(Protocol):
    """End-of-turn model, shared by many calls (stateless between calls)."""

    @property
    def sample_rate_hz(self) -> int: ...

    @property
    def window_ms(self) -> int:
        """How much of the end of the turn the model looks at; earlier audio is ignored."""
        ...

    @property
    def threshold(self) -> float: ...

    def predict(self, pcm: Pcm) -> TurnVerdict:
        """The verdict on a turn whose audio so far is ``pcm`` (1-D int16 at
        ``sample_rate_hz``; any length, the end of the turn last).

        Raises ``ValueError`` for audio that is not 1-D int16."""
        ...
