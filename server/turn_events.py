"""The opt-in ``turn`` event of the native protocol (:mod:`voicebot.protocol_turn`).

:class:`server.runtime.CallRuntime` calls :func:`turn_events` as a reply's first audio
frame is about to go out, with the turn's log record (:class:`ReplyStarted`: every text
in it already masked) and the latency it measured; a call whose ``start`` asked for
``"events": ["turn"]`` gets the turn explained (the browser softphone's call panel).
"""

from __future__ import annotations

from collections.abc import Mapping

from voicebot import protocol as p
from voicebot.commands import ReplyStarted

__all__ = ["TURN", "turn_events"]

TURN = "turn"


def turn_events(start: p.Start | None, command: ReplyStarted, *, latency_ms: float,
                parts_ms: Mapping[str, float]) -> list[p.TurnEvent]:
    """The events to send for the reply ``command`` starts: one ``turn`` event when the
    call asked for them, none otherwise (every client that did not ask)."""
    if start is None or TURN not in start.events:
        return []
    return [p.TurnEvent(
        turn=command.turn, reply=command.reply, source=command.source,
        heard=command.transcript, intent=command.intent, confidence=command.confidence,
        state=command.state, text=command.text, kind=command.kind.value,
        slots=dict(command.slots), sensitive=command.sensitive, end_rule=command.end_rule,
        turn_score=command.turn_score, latency_ms=round(max(latency_ms, 0.0)),
        parts_ms={name: round(ms) for name, ms in parts_ms.items()},
    )]
