"""A scripted caller, sans-I/O: the caller's side of one call as a pure state machine.

:class:`ScriptedCaller` plays a :class:`~voicebot.caller_script.CallScript` in a
dialect of :mod:`voicebot.telephony.dialects` (native or a provider's).  It never
awaits, sleeps or reads the clock: its driver (``voicebot call`` and ``voicebot
simulate`` on asyncio, the Locust caller on a thread) passes in what the server sent
and the time ``now_s`` (any monotonic clock, in seconds) and carries out the
:class:`~voicebot.caller_script.Actions` it gets back: messages to send, when to wake
the caller, the turns finished.

Its line (:class:`~voicebot.caller_line.CallerLine`) sends a 20 ms frame every 20 ms
(the caller's speech, or silence), follows the bot's playout and echoes the marks.
The caller plays the greeting, then each turn once the bot's reply is over
(:class:`~voicebot.caller_script.ReplyEnd`) and has played out, and the turn's pause
has passed; a barge-in turn talks over the reply instead if the bot is still talking
that long into it, and then listens for the answer after the ``clear`` (or, without
one, once the old reply has played out).  A turn's latency runs from the frame
holding its last speech sample (keys: their sending; the greeting: the start) to the
reply's first audio.  The call ends when the script is done (the dialect's ``stop``
sent), at the server's hang-up, close or fatal error, or when no reply comes within
``turn_timeout_s``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from voicebot import protocol as p
from voicebot.caller_line import END, ONSET, CallerLine
from voicebot.caller_script import Actions, CallEnd, CallScript, ReplyEnd, Turn, TurnRecord
from voicebot.errors import VoicebotError
from voicebot.telephony.dialects import Dialect, Event

__all__ = ["Actions", "CallerState", "ScriptedCaller"]

log = logging.getLogger(__name__)
_OLD_REPLY_GRACE_S = 0.3  # barged in, no clear: the old reply played out this long ago


class CallerState(enum.Enum):
    IDLE = enum.auto()  # not started: nothing sent
    SPEAKING = enum.auto()  # the turn's speech is going out
    WAITING = enum.auto()  # the caller is done: waiting for the bot's reply
    REPLYING = enum.auto()  # the reply came (QUIET: its audio; EVENTS: its speech_end)
    ENDED = enum.auto()


class ScriptedCaller:
    """One call's caller: feed it the server's messages and the time, do what it says."""

    def __init__(self, dialect: Dialect, script: CallScript) -> None:
        self.dialect, self.script = dialect, script
        self.state = CallerState.IDLE
        self.end: CallEnd | None = None
        self.records: list[TurnRecord] = []  # every turn finished so far, in order
        self.line = CallerLine(dialect, keep_audio=script.keep_audio)
        self._next = 0  # script.turns[_next] comes next
        self._draft = TurnRecord(0, "greeting")
        self._audio_s = 0.0  # bot audio received during the current turn
        self._armed = self._arm_on_clear = self._barge_checked = self._hangup = False
        self._deadline = 0.0
        self._reply_at: float | None = None  # the current reply's first audio
        self._reply_end_at: float | None = None  # and its speech_end (EVENTS)
        self._end_event: p.ServerEvent | None = None  # the native hangup or transfer
        self._out: list[str | bytes] = []
        self._done: list[TurnRecord] = []
        self._heard: list[TurnRecord] = []
        self._inputs: dict[str, Callable[[Any, float], None]] = {
            "audio": self._on_audio, "mark": self._on_mark, "clear": self._on_clear,
            "hangup": self._on_hangup, "event": self._on_event,
        }
        self._events: dict[type[Any], Callable[[Any, float], None]] = {
            p.TranscriptEvent: lambda e, _: self._set(transcript=e.text),
            p.IntentEvent: lambda e, _: self._set(intent=e.intent, confidence=e.confidence),
            p.BotSpeechStart: lambda e, _: self._set(bot_text=e.text),
            p.BotSpeechEnd: self._on_speech_end,
            p.Hangup: self._on_end_event, p.Transfer: self._on_end_event,
            p.ErrorEvent: self._on_error,
        }

    # ------------------------------------------------------------------ inputs

    def start(self, now_s: float) -> Actions:
        """Open the call (the dialect's opening messages); the line and the greeting start."""
        if self.state is not CallerState.IDLE:
            raise RuntimeError("the call has already started")
        self._out += self.dialect.opening(self.script.scenario)
        self.line.start(now_s)
        self._draft = TurnRecord(0, "greeting", onset_at=now_s, spoke_until=now_s)
        self._listen(now_s)
        return self._advance(now_s)

    def receive(self, message: str | bytes, now_s: float) -> Actions:
        """A websocket message from the server, read in the call's dialect."""
        if self.state in (CallerState.IDLE, CallerState.ENDED):
            return self._actions()
        try:
            events = self.dialect.parse(message)
        except (ValueError, LookupError, TypeError, VoicebotError) as exc:
            self._finish(CallEnd("error", detail=f"bad message from the server: {exc}"))
            return self._actions()
        return self.hear(events, now_s)

    def hear(self, events: Iterable[Event], now_s: float) -> Actions:
        """The server's messages, already read: the dialect's ``(kind, value)`` events."""
        for kind, value in events:
            if self.state in (CallerState.IDLE, CallerState.ENDED):
                break
            handler = self._inputs.get(kind)
            if handler is not None:
                handler(value, now_s)
        return self._advance(now_s)

    def wake(self, now_s: float) -> Actions:
        """Time has passed: frames, mark echoes, timeouts, the next turn."""
        return self._advance(now_s)

    def closed(self, code: int | None, reason: str | None, now_s: float) -> Actions:
        """The connection closed (``code`` None: lost without a close frame)."""
        if self.state is not CallerState.ENDED:
            how = "hangup" if self._hangup else "closed"
            self._finish(CallEnd(how, self._end_event, code, reason))
        return self._actions()

    # ------------------------------------------------------------------ what the server sent

    def _on_audio(self, data: bytes, now: float) -> None:
        self._audio_s += self.line.audio(data, now)
        if self._armed and self._draft.first_audio_at is None:
            self._set(first_audio_at=now)
            self._reply_at = now
            self._heard.append(replace(self._draft, bot_audio_s=self._audio_s))
            if self.script.reply_end is ReplyEnd.QUIET and self.state is CallerState.WAITING:
                self.state = CallerState.REPLYING

    def _on_mark(self, name: Any, now: float) -> None:
        if name:
            self.line.mark(str(name), now)

    def _on_clear(self, _: Any, now: float) -> None:
        self.line.clear(now)
        if self._draft.onset_at is not None and self._draft.clear_at is None:
            self._set(clear_at=now)
        if self._arm_on_clear and self._draft.spoke_until is not None:
            self._arm()

    def _on_hangup(self, _: Any, now: float) -> None:
        self._hangup = True

    def _on_event(self, event: Any, now: float) -> None:
        handler = self._events.get(type(event))
        if handler is not None:
            handler(event, now)

    def _on_speech_end(self, event: p.BotSpeechEnd, now: float) -> None:
        if (self.script.reply_end is ReplyEnd.EVENTS and not event.interrupted and self._armed
                and self.state in (CallerState.WAITING, CallerState.REPLYING)):
            self._reply_end_at = now
            self.state = CallerState.REPLYING

    def _on_end_event(self, event: p.Hangup | p.Transfer, now: float) -> None:
        self._end_event = event

    def _on_error(self, event: p.ErrorEvent, now: float) -> None:
        if event.fatal:
            self._finish(CallEnd("error", event, detail=f"server error {event.code}: "
                                                        f"{event.message}"))
        else:
            log.warning("server error %s: %s", event.code, event.message)

    # ------------------------------------------------------------------ time

    def _advance(self, now: float) -> Actions:
        if self.state not in (CallerState.IDLE, CallerState.ENDED):
            self._send_line(now)
            self._out += self.line.echoes_due(now)
            self._tick(now)
        return self._actions()

    def _send_line(self, now: float) -> None:
        for message, flags in self.line.frames_due(now):
            self._out.append(message)
            if flags & ONSET:
                self._set(onset_at=now)
            if flags & END:
                onset = self._draft.onset_at
                self._set(spoke_until=now, onset_at=now if onset is None else onset)
                self._listen(now)

    def _tick(self, now: float) -> None:
        if self.state is CallerState.WAITING:
            if now >= self._deadline:
                self._finish(CallEnd("timeout"))
                return
            if (self._arm_on_clear and self._draft.spoke_until is not None
                    and now >= self.line.playout_end + _OLD_REPLY_GRACE_S):
                self._arm()
        if self.state in (CallerState.WAITING, CallerState.REPLYING):
            self._next_turn(now)

    def _next_turn(self, now: float) -> None:
        turn = None if self._hangup or self._next >= len(self.script.turns) \
            else self.script.turns[self._next]
        if (turn is not None and turn.barge_in_after_s is not None and not self._barge_checked
                and self._reply_at is not None):
            if now < self._reply_at + turn.barge_in_after_s:
                return
            self._barge_checked = True
            if self.line.playout_end > now:
                self._begin(turn, now, barge=True)
                return
        if self.state is not CallerState.REPLYING:
            return
        pause = self.script.final_pause_s if turn is None else turn.pause_s
        if now < self._reply_over_at() + pause:
            return
        if turn is not None:
            self._begin(turn, now, barge=False)
        elif self._hangup:
            self._finish(CallEnd("hangup", self._end_event))
        else:
            self._out += self.dialect.stop()
            self._finish(None)

    def _reply_over_at(self) -> float:
        playout_end = self.line.playout_end
        if self.script.reply_end is ReplyEnd.QUIET:
            return playout_end + self.script.quiet_s
        ended = playout_end if self._reply_end_at is None else self._reply_end_at
        return max(playout_end, ended + self.script.end_grace_s)

    # ------------------------------------------------------------------ turns

    def _begin(self, turn: Turn, now: float, *, barge: bool) -> None:
        self._emit()
        self._next += 1
        self._barge_checked = self._armed = False
        self._arm_on_clear = barge and not turn.keys
        self._reply_at = self._reply_end_at = None
        self._draft = TurnRecord(self._next, turn.kind, barge_in=barge)
        if turn.keys:
            self._set(onset_at=now, spoke_until=now)
            for digit in turn.keys:
                self._out += self.dialect.dtmf(digit)
            self._listen(now)
            return
        self.state = CallerState.SPEAKING
        self.line.say(turn.frames, *turn.marks())

    def _listen(self, now: float) -> None:
        """The caller's input is out: wait for the reply (a barge-in: after the clear)."""
        self.state = CallerState.WAITING
        self._deadline = now + self.script.turn_timeout_s
        if not self._arm_on_clear or self._draft.clear_at is not None:
            self._arm()

    def _arm(self) -> None:
        self._armed, self._arm_on_clear = True, False

    def _set(self, **changes: Any) -> None:
        self._draft = replace(self._draft, **changes)

    def _emit(self) -> None:
        record = replace(self._draft, bot_audio_s=self._audio_s)
        self._audio_s = 0.0
        self.records.append(record)
        self._done.append(record)

    def _finish(self, end: CallEnd | None) -> None:
        self.end = end
        self._set(end=end)
        self._emit()
        self.state = CallerState.ENDED
        self.line.hang_up()

    def _actions(self) -> Actions:
        live = self.state not in (CallerState.IDLE, CallerState.ENDED)
        wake_at = self.line.next_frame_at if live else None
        actions = Actions(tuple(self._out), tuple(self._done), wake_at, tuple(self._heard))
        self._out.clear()
        self._done.clear()
        self._heard.clear()
        return actions
