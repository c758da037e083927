"""What a call leaves behind: :class:`CallRecord`, its :class:`TurnEntry` rows and its
:class:`RecordingPause` spans.

Every text field (``heard``, ``slots``, ``reply``, ``dtmf``) is stored exactly as given:
the code that builds a record masks sensitive values *before* it reaches this module.

``CallRecord.to_json()`` gives a plain JSON-able dict (ISO-8601 times, lists, dicts,
str/int/float/bool/None only); ``CallRecord.from_json()`` reads it back, and the round
trip is exact. The same dict is the export line, the webhook payload and the body of
``GET /calls/{id}``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["CallRecord", "Outcome", "RecordingPause", "TurnEntry", "parse_time", "utc"]


class Outcome(enum.Enum):
    """How a call ended (``in_progress`` until it does)."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    """The bot ended the dialog."""
    TRANSFERRED = "transferred"
    CALLER_HUNG_UP = "caller_hung_up"
    FAILED = "failed"


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (a record's times are instants)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give a timezone (UTC)")
    return value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """An ISO-8601 instant (as ``to_json`` writes it) as an aware UTC datetime."""
    return utc(datetime.fromisoformat(text))


def _time_text(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEntry:
    """One turn of a call: what was heard, understood and answered (masked)."""

    turn: int
    """0 is the greeting."""
    at_ms: float
    """Where the turn starts on the call's audio clock."""
    source: str
    """``greeting``, ``speech``, ``dtmf`` or ``no_input``."""
    heard: str
    intent: str | None
    confidence: float
    slots: Mapping[str, str]
    reply: str
    state: str
    """The dialog state after the turn."""
    barged_in: bool = False
    heard_ms: int | None = None
    """How much of the reply the caller heard before barging in."""
    dtmf: str | None = None
    latency_ms: float | None = None
    parts_ms: Mapping[str, float] = field(default_factory=dict)
    """Where the latency went: ``asr``, ``nlu``, ``tts_first_audio``, ``queue_wait``..."""

    def __post_init__(self) -> None:
        if self.turn < 0:
            raise ValueError(f"turn must be >= 0, got {self.turn}")

    def to_json(self) -> dict[str, Any]:
        return {
            "turn": self.turn, "at_ms": self.at_ms, "source": self.source,
            "heard": self.heard, "intent": self.intent, "confidence": self.confidence,
            "slots": dict(self.slots), "reply": self.reply, "state": self.state,
            "barged_in": self.barged_in, "heard_ms": self.heard_ms, "dtmf": self.dtmf,
            "latency_ms": self.latency_ms, "parts_ms": dict(self.parts_ms),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TurnEntry:
        return cls(
            turn=int(data["turn"]), at_ms=float(data["at_ms"]), source=str(data["source"]),
            heard=str(data["heard"]), intent=_opt_str(data.get("intent")),
            confidence=float(data["confidence"]),
            slots={str(k): str(v) for k, v in (data.get("slots") or {}).items()},
            reply=str(data["reply"]), state=str(data["state"]),
            barged_in=bool(data.get("barged_in", False)),
            heard_ms=_opt_int(data.get("heard_ms")), dtmf=_opt_str(data.get("dtmf")),
            latency_ms=_opt_float(data.get("latency_ms")),
            # float(): a JSON store may hand back 1e300 as the integer it equals
            parts_ms={str(k): float(v) for k, v in (data.get("parts_ms") or {}).items()},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPause:
    """A span of the recording left silent (``end_ms`` None: paused until the end)."""

    start_ms: float
    end_ms: float | None
    reason: str
    """e.g. ``sensitive slot card_last4``."""

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordingPause:
        return cls(start_ms=float(data["start_ms"]), end_ms=_opt_float(data.get("end_ms")),
                   reason=str(data["reason"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One phone call. Times are aware UTC datetimes (others are converted, naive ones
    refused)."""

    call_id: str
    provider: str
    provider_call_id: str | None = None
    stream_id: str | None = None
    caller: str | None = None
    callee: str | None = None
    scenario: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Outcome = Outcome.IN_PROGRESS
    end_reason: str | None = None
    recording: str | None = None
    """Path of the recording file."""
    recording_pauses: tuple[RecordingPause, ...] = ()
    turns: tuple[TurnEntry, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", utc(self.started_at))
        if self.ended_at is not None:
            object.__setattr__(self, "ended_at", utc(self.ended_at))
        object.__setattr__(self, "recording_pauses", tuple(self.recording_pauses))
        object.__setattr__(self, "turns", tuple(self.turns))

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while the call is in progress."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "provider": self.provider,
            "provider_call_id": self.provider_call_id, "stream_id": self.stream_id,
            "caller": self.caller, "callee": self.callee, "scenario": self.scenario,
            "started_at": _time_text(self.started_at),
            "ended_at": None if self.ended_at is None else _time_text(self.ended_at),
            "outcome": self.outcome.value, "end_reason": self.end_reason,
            "recording": self.recording,
            "recording_pauses": [p.to_json() for p in self.recording_pauses],
            "turns": [t.to_json() for t in self.turns],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallRecord:
        """The record ``to_json`` gave; ``ValueError``/``KeyError`` on a malformed dict."""
        ended = data.get("ended_at")
        return cls(
            call_id=str(data["call_id"]), provider=str(data["provider"]),
            provider_call_id=_opt_str(data.get("provider_call_id")),
            stream_id=_opt_str(data.get("stream_id")), caller=_opt_str(data.get("caller")),
            callee=_opt_str(data.get("callee")), scenario=str(data["scenario"]),
            started_at=parse_time(str(data["started_at"])),
            ended_at=None if ended is None else parse_time(str(ended)),
            outcome=Outcome(data.get("outcome", Outcome.IN_PROGRESS.value)),
            end_reason=_opt_str(data.get("end_reason")),
            recording=_opt_str(data.get("recording")),
            recording_pauses=tuple(RecordingPause.from_json(p)
                                   for p in data.get("recording_pauses") or ()),
            turns=tuple(TurnEntry.from_json(t) for t in data.get("turns") or ()),
        )
