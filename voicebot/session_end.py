"""How a call ends, and the timer that moves a silent call on: parts of the Session.

:func:`dialog_end`, :func:`caller_stop` and :func:`protocol_failure` are the commands
that close a call (its event, the :class:`~voicebot.commands.CallEnded` record, the
close); :class:`NoInputTimer` says when the caller has been silent too long while the
dialog waits for them.  Pure: time comes in as milliseconds of audio received.
"""

from __future__ import annotations

from voicebot import protocol as p
from voicebot.commands import CallEnded, CallOutcome, CloseConnection, Command, SendEvent
from voicebot.dialog.engine import EndCall
from voicebot.errors import ProtocolError

__all__ = ["NoInputTimer", "caller_gone", "caller_stop", "dialog_end", "protocol_failure"]


def dialog_end(final: EndCall) -> list[Command]:
    """The dialog hangs up or transfers."""
    transfer = final.kind == "transfer"
    event: p.ServerEvent = p.Transfer(final.detail) if transfer else p.Hangup(final.detail)
    outcome = CallOutcome.TRANSFERRED if transfer else CallOutcome.COMPLETED
    return [SendEvent(event), CallEnded(outcome, final.detail or final.kind),
            CloseConnection(p.CloseCode.NORMAL, final.kind)]


def caller_gone() -> list[Command]:
    """The caller's connection went away (the socket is already closed)."""
    return [CallEnded(CallOutcome.CALLER_HUNG_UP, "connection closed")]


def caller_stop(reason: str) -> list[Command]:
    """The caller's side sent ``stop``."""
    return [CallEnded(CallOutcome.CALLER_HUNG_UP, reason or "stop"),
            CloseConnection(p.CloseCode.NORMAL, p.close_reason(reason))]


def protocol_failure(exc: ProtocolError, reason: str, started: bool) -> list[Command]:
    """A fatal protocol error: the error event and the close (and, for a call that had
    started, its record's failure with ``reason``, the error redacted)."""
    ended: list[Command] = (
        [CallEnded(CallOutcome.FAILED, f"protocol error: {reason}")] if started else [])
    return [*ended, SendEvent(p.ErrorEvent(exc.close_code, str(exc), True)),
            CloseConnection(exc.close_code, p.close_reason(str(exc)))]


class NoInputTimer:
    """Runs from the moment the bot stops talking (or the caller stops typing or
    leaves an utterance that was not words) until the caller speaks."""

    def __init__(self) -> None:
        self.since_ms: float | None = None

    def restart(self, now_ms: float) -> None:
        self.since_ms = now_ms

    def stop(self) -> None:
        self.since_ms = None

    def expired(self, now_ms: float, *, timeout_ms: int, waiting: bool) -> bool:
        """Whether the caller has been silent ``timeout_ms`` while ``waiting`` (the dialog
        listens, no reply plays, no utterance is open); an expired timer stops."""
        if (not waiting or self.since_ms is None or timeout_ms <= 0
                or now_ms - self.since_ms < timeout_ms):
            return False
        self.since_ms = None
        return True
