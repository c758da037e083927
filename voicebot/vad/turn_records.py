"""The end-of-turn policy's vocabulary: its settings, what it is fed, what it decides.

Everything here is a frozen value; :mod:`voicebot.vad.turn_policy` is the state
machine that consumes :data:`TurnEvent` and produces :data:`TurnDecision`.  Times
are milliseconds on the call's audio clock (counted from samples, never read from
a clock).

* In: :class:`Speech`, :class:`Silence`, :class:`Tick` (VAD), :class:`Partial`
  (a transcript of the turn so far), :class:`Verdict` (the turn model's answer to
  an :class:`AskTurnModel`), :class:`Expect` (what the dialog waits for).
* Out: :class:`AskTurnModel`, :class:`SpeculateReply`, :class:`DiscardReply` and
  one :class:`EndOfTurn` per turn, which names the :class:`EndRule` that ended it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeAlias

from voicebot.errors import ConfigError

__all__ = [
    "AskTurnModel",
    "DiscardReply",
    "EndOfTurn",
    "EndRule",
    "Expect",
    "ExpectKind",
    "Expectation",
    "Partial",
    "Silence",
    "SpeculateReply",
    "Speech",
    "Tick",
    "TurnDecision",
    "TurnEvent",
    "TurnPolicyConfig",
    "TurnRule",
    "Verdict",
]


class TurnRule(enum.Enum):
    """How a turn ends when no expectation settles it (``settings.endpointing.turn_policy``)."""

    SILENCE = "silence"  # a fixed pause (min_silence_ms): the endpointer's rule of old
    MODEL = "model"  # the turn model, asked at each short pause, up to max_silence_ms


class EndRule(enum.Enum):
    """Which rule ended a turn (a metrics label and a log field)."""

    MODEL = "model"  # the turn model judged the turn complete
    EXPECTATION = "expectation"  # the partial transcript holds the expected answer
    MAX_SILENCE = "max_silence"  # the longest pause the model rule waits out
    SILENCE = "silence"  # the silence rule's fixed pause


class ExpectKind(enum.Enum):
    FREE = "free"  # anything: the turn rule decides
    YES_NO = "yes_no"  # a complete yes/no answer ends the turn at once
    DIGITS = "digits"  # ``length`` digits end it; fewer: wait through pauses between groups


@dataclass(frozen=True, kw_only=True, slots=True)
class Expectation:
    """What the dialog waits for in this turn."""

    kind: ExpectKind = ExpectKind.FREE
    length: int | None = None  # DIGITS: how many (None: unknown, the turn rule decides)

    def __post_init__(self) -> None:
        if self.length is not None and (self.kind is not ExpectKind.DIGITS or self.length < 1):
            raise ValueError(f"length is for DIGITS and must be >= 1, got {self!r}")

    @classmethod
    def for_slot(cls, slot_type: str | None, length: int | None = None) -> Expectation:
        """The expectation while a slot of ``slot_type`` (a scenario's slot type; None:
        no slot) is asked for."""
        if slot_type == "yes_no":
            return cls(kind=ExpectKind.YES_NO)
        if slot_type == "digits":
            return cls(kind=ExpectKind.DIGITS, length=length)
        return cls()


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnPolicyConfig:
    """The end-of-turn policy's settings (a scenario's ``settings.endpointing``)."""

    turn_policy: TurnRule = TurnRule.MODEL
    short_pause_ms: int = 200  # pause before the turn model is asked and a reply speculated
    max_silence_ms: int = 1500  # MODEL rule: this pause always ends the turn
    digits_max_silence_ms: int = 2500  # ... while digits are expected
    min_silence_ms: int = 500  # SILENCE rule: the pause that ends the turn
    digits_min_silence_ms: int = 800  # ... while digits are expected
    turn_threshold: float = 0.5  # the turn model's "complete" probability
    expectations: bool = True  # False: every turn is FREE (benchmarks compare policies)
    speculate: bool = True  # speculate a reply at each short pause

    def __post_init__(self) -> None:
        positive = ("short_pause_ms", "max_silence_ms", "digits_max_silence_ms",
                    "min_silence_ms", "digits_min_silence_ms")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.short_pause_ms >= self.max_silence_ms:
            raise ConfigError(f"short_pause_ms ({self.short_pause_ms}) must be shorter than "
                              f"max_silence_ms ({self.max_silence_ms})")
        if not (math.isfinite(self.turn_threshold) and 0.0 < self.turn_threshold <= 1.0):
            raise ConfigError(f"turn_threshold must be in (0, 1], got {self.turn_threshold}")

    def updated(self, values: Mapping[str, float | str | bool]) -> TurnPolicyConfig:
        """This configuration with those of ``values`` that are its fields laid over it
        (a scenario's ``settings.endpointing``: its endpointer keys are left out)."""
        typed: dict[str, Any] = {}
        for spec in fields(self):
            if spec.name not in values:
                continue
            value = values[spec.name]
            if spec.name == "turn_policy":
                typed[spec.name] = TurnRule(value)
            elif spec.name in ("expectations", "speculate"):
                typed[spec.name] = bool(value)
            elif spec.name.endswith("_ms"):
                typed[spec.name] = int(value)
            else:
                typed[spec.name] = float(value)
        return replace(self, **typed)


# ------------------------------------------------------------------ events in


@dataclass(frozen=True, kw_only=True, slots=True)
class Speech:
    """The caller is speaking at ``at_ms``: opens a turn, or resumes it after a pause."""

    at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Silence:
    """The caller fell silent at ``at_ms`` (the end of speech, if the turn ends here)."""

    at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Tick:
    """The audio clock reached ``at_ms`` (one per VAD window)."""

    at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Partial:
    """A transcript of the turn's audio up to ``audio_end_ms``."""

    text: str
    audio_end_ms: int

    def __repr__(self) -> str:  # the text may be a card number: never in a log
        return f"Partial(text=<{len(self.text)} chars>, audio_end_ms={self.audio_end_ms})"


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The turn model's answer to the :class:`AskTurnModel` ``request_id``."""

    request_id: int
    complete_probability: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.complete_probability <= 1.0:  # NaN fails too
            raise ValueError(f"complete_probability must be in [0, 1], got {self!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Expect:
    """The dialog waits for ``expectation`` (from now on, the open turn included)."""

    expectation: Expectation


TurnEvent: TypeAlias = Speech | Silence | Tick | Partial | Verdict | Expect


# ------------------------------------------------------------------ decisions out


@dataclass(frozen=True, kw_only=True, slots=True)
class AskTurnModel:
    """Ask the turn model whether the turn's audio ``[turn_start_ms, audio_end_ms)`` is a
    complete turn; answer with ``Verdict(request_id=...)``."""

    request_id: int
    turn: int
    turn_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SpeculateReply:
    """Transcribe the turn so far, understand it, step the dialog and synthesize the
    first sentence now; hold the audio until the turn's :class:`EndOfTurn` names this
    ``speculation_id``, or a :class:`DiscardReply` drops it."""

    speculation_id: int
    turn: int
    audio_end_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DiscardReply:
    """The caller went on: the speculation ``speculation_id`` is stale, drop it."""

    speculation_id: int
    turn: int


@dataclass(frozen=True, kw_only=True, slots=True)
class EndOfTurn:
    """The caller's turn ``turn`` is over.

    ``speech_end_ms``: where its last pause began; ``waited_ms``: from there to the
    decision at ``decided_at_ms``; ``score``: the turn model's verdict in that pause
    (None: none came); ``speculation_id``: the speculation to use (its audio holds the
    whole turn), None when there is none and the reply must be made now.
    """

    turn: int
    rule: EndRule
    score: float | None
    speech_end_ms: int
    decided_at_ms: int
    waited_ms: int
    speculation_id: int | None


TurnDecision: TypeAlias = AskTurnModel | SpeculateReply | DiscardReply | EndOfTurn
