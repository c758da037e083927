"""One real-time call against voicebot, placed the way a telephony platform places it.

A :class:`Caller` opens a websocket (``websocket-client``: blocking sockets, no
asyncio, so it runs on plain threads and, under Locust's gevent monkey-patching, on
greenlets) and drives :class:`voicebot.caller.ScriptedCaller` over it in one provider
dialect (:mod:`voicebot.telephony.dialects`): a receiver thread stamps the server's
messages, the calling thread hands them to the scripted caller, sends what it says
(a 20 ms frame every 20 ms, silence or the caller's phrase; mark echoes once the bot
audio before them has played) and sleeps until it asks to be woken.  The script's
turns wait for the bot to finish (plus a human pause) or, for barge-in callers, talk
over it.

Measured at the caller, from its own clock: the greeting (start → first bot
audio), each turn (the frame holding the last speech sample sent → first bot
audio), keys (sent → first bot audio) and barge-in reaction (the frame
holding the first speech sample sent → ``clear``).  Where the server says which
intent it recognised (the native protocol's ``intent`` event), each turn that meant
an intent is also checked against it (``CallResult.checks``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import websocket

from loadtests.phrases import Script, Step
from loadtests.results import CallResult, Sample
from voicebot import protocol as p
from voicebot.caller import Actions, ScriptedCaller
from voicebot.caller_script import CallEnd, CallScript, Turn, TurnRecord
from voicebot.telephony.dialects import DIALECTS, Dialect

__all__ = ["CallFailed", "CallRefused", "Caller", "CallerOptions"]

log = logging.getLogger(__name__)
_REFUSED_CLOSE = (p.CloseCode.TRY_AGAIN_LATER, p.CloseCode.BUSY)
_Inbox = queue.Queue[tuple[float, str | bytes | None, int | None, str]]
"""(arrival, message, close code, close reason); message None: the connection closed."""


class CallRefused(Exception):
    """The server turned the call away (HTTP 503 at the handshake, or close 1013/4503)."""


class CallFailed(Exception):
    """An admitted call went wrong: an error, an unexpected close, or no reply in time."""


@dataclass(frozen=True, slots=True)
class CallerOptions:
    url: str  # ws://host:port; the dialect's path is appended
    protocol: str = "native"
    scenario: str | None = None
    turn_timeout_s: float = 15.0
    connect_timeout_s: float = 10.0
    pause_s: tuple[float, float] = (0.4, 1.0)  # the caller's pause after the bot stops
    barge_in_after_s: tuple[float, float] = (0.8, 1.6)  # into the bot's reply


class Caller:
    """Places one call; :meth:`run` returns what it measured (never raises for the call)."""

    def __init__(self, options: CallerOptions, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if options.protocol not in DIALECTS:
            raise ValueError(f"unknown protocol {options.protocol!r}; one of {sorted(DIALECTS)}")
        self.options, self.rng, self.clock = options, rng or random.Random(), clock
        self.call_id = f"lt-{uuid.uuid4().hex[:16]}"
        self.dialect: Dialect = DIALECTS[options.protocol](self.call_id)
        self.encoding, self.rate = self.dialect.encoding, self.dialect.rate
        self._ws: websocket.WebSocket | None = None
        self._closing = False

    def run(self, script: Script, *,
            on_sample: Callable[[CallResult, Sample], None] | None = None,
            on_check: Callable[[CallResult, Sample], None] | None = None) -> CallResult:
        """Place the call; ``on_sample`` hears each measurement as it is taken,
        ``on_check`` each intent check (``CallResult.checks``)."""
        wall = time.time() - self.clock()
        result = CallResult(self.call_id, self.options.protocol, script.name, time.time())
        began = self.clock()
        caller = ScriptedCaller(self.dialect, self._script(script))
        measured: set[int] = set()

        def emit(record: TurnRecord) -> None:
            """A turn's samples, once: when its reply began, or when it ended without one."""
            if record.turn in measured:
                return
            measured.add(record.turn)
            step = script.steps[record.turn - 1] if record.turn else None
            samples = [] if self._failure(record.end) else _samples(record, step, wall)
            result.samples += samples
            for sample in samples:
                if on_sample is not None:
                    on_sample(result, sample)
            check = _intent_check(record, step, wall)
            if check is not None:
                result.checks.append(check)
                if on_check is not None:
                    on_check(result, check)

        receiver: threading.Thread | None = None
        try:
            self._connect()
            inbox: _Inbox = queue.Queue()
            receiver = threading.Thread(target=self._receive, args=(inbox,), daemon=True)
            receiver.start()
            self._drive(caller, inbox, emit)
            failure = self._failure(caller.end)
            if failure is not None:
                raise failure
            if caller.records[0].first_audio_at is None:
                raise CallFailed("closed before the greeting")
            result.outcome = "completed"
        except CallRefused as exc:
            result.outcome, result.error = "refused", str(exc)
        except CallFailed as exc:
            result.outcome, result.error = "failed", str(exc)
        finally:
            self._hang_up(receiver)
            result.duration_s = self.clock() - began
            result.max_send_lag_ms = caller.line.max_lag_s * 1000
        return result

    def _script(self, script: Script) -> CallScript:
        """The scripted caller's plan: each step with its random pause and barge-in delay."""
        o = self.options

        def turn(step: Step) -> Turn:
            pause = self.rng.uniform(*o.pause_s)
            barge = self.rng.uniform(*o.barge_in_after_s) if step.barge_in else None
            if step.phrase is None:
                assert step.dtmf is not None
                return Turn(keys=step.dtmf, pause_s=pause, barge_in_after_s=barge)
            frames = tuple(step.phrase.frames(self.encoding, self.rate))
            return Turn(frames, speech_start_ms=step.phrase.speech_start_ms,
                        speech_end_ms=step.phrase.speech_end_ms, pause_s=pause,
                        barge_in_after_s=barge)

        # The reply is over once it has played: each turn's pause counts from there.
        return CallScript(tuple(turn(s) for s in script.steps), scenario=o.scenario,
                          turn_timeout_s=o.turn_timeout_s, quiet_s=0.0,
                          final_pause_s=o.pause_s[0], keep_audio=False)

    def _failure(self, end: CallEnd | None) -> CallRefused | CallFailed | None:
        """What an end of the call means for the call: None when it ended normally."""
        if end is None or end.how == "hangup":
            return None
        if end.how == "timeout":
            return CallFailed(f"no bot reply within {self.options.turn_timeout_s:.0f} s")
        if end.how == "error":
            return CallFailed(end.detail)
        closed = f"closed {end.close_code} {end.close_reason or ''}".strip()
        if end.close_code in _REFUSED_CLOSE:
            return CallRefused(closed)
        return None if end.close_code == p.CloseCode.NORMAL else CallFailed(closed)

    # ------------------------------------------------------------------ the socket

    def _drive(self, caller: ScriptedCaller, inbox: _Inbox,
               emit: Callable[[TurnRecord], None]) -> None:
        actions = caller.start(self.clock())
        while True:
            try:
                for out in actions.send:
                    self._send(out)
            except (websocket.WebSocketException, OSError) as exc:
                lost = caller.closed(None, f"send: {exc or type(exc).__name__}", self.clock())
                actions = Actions((), actions.records + lost.records, lost.wake_at,
                                  actions.heard)
            for record in (*actions.heard, *actions.records):
                emit(record)
            if actions.wake_at is None:
                return
            try:
                at, message, code, reason = inbox.get(
                    timeout=max(0.0, actions.wake_at - self.clock()))
            except queue.Empty:
                actions = caller.wake(self.clock())
                continue
            actions = caller.closed(code, reason, at) if message is None \
                else caller.receive(message, at)

    def _connect(self) -> None:
        base = self.options.url.rstrip("/")
        path = self.dialect.path if self.dialect.path != "/" else ""
        subprotocols = [self.dialect.subprotocol] if self.dialect.subprotocol else None
        try:
            self._ws = websocket.create_connection(
                base + path, timeout=self.options.connect_timeout_s, subprotocols=subprotocols,
                enable_multithread=True, skip_utf8_validation=True)
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code == 503:
                raise CallRefused(f"HTTP 503 at the handshake: {exc.resp_body!r:.80}") from exc
            raise CallFailed(f"handshake: HTTP {exc.status_code}") from exc
        except (websocket.WebSocketException, OSError) as exc:
            raise CallFailed(f"connect: {exc}") from exc
        self._ws.settimeout(None)

    def _send(self, message: str | bytes) -> None:
        assert self._ws is not None
        opcode = websocket.ABNF.OPCODE_BINARY if isinstance(message, bytes) \
            else websocket.ABNF.OPCODE_TEXT
        self._ws.send(message, opcode=opcode)

    def _receive(self, inbox: _Inbox) -> None:
        assert self._ws is not None
        code, reason = None, ""
        try:
            while True:
                opcode, data = self._ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                    reason = data[2:].decode(errors="replace")
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    inbox.put((self.clock(), data.decode(errors="replace"), None, ""))
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    inbox.put((self.clock(), data, None, ""))
        except (websocket.WebSocketException, OSError) as exc:
            if not self._closing:
                reason = f"connection lost: {exc or type(exc).__name__}"
        finally:
            inbox.put((self.clock(), None, code, reason))

    def _hang_up(self, receiver: threading.Thread | None) -> None:
        self._closing = True
        if self._ws is None:
            return
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._ws.send_close(websocket.STATUS_NORMAL)
        if receiver is not None:
            receiver.join(2.0)
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._ws.shutdown()  # type: ignore[no-untyped-call]
        if receiver is not None:
            receiver.join(2.0)


def _samples(record: TurnRecord, step: Step | None, wall: float) -> list[Sample]:
    """The measurements of one finished turn (wall: the caller's clock → Unix time)."""
    if step is None:
        if record.first_audio_at is None:
            return []
        return [Sample("greeting", wall + record.first_audio_at, record.latency_ms)]
    if record.spoke_until is None:
        return []  # the call ended while the caller was still talking
    latency, barge = record.latency_ms, record.barge_in_ms
    samples = [Sample(record.kind, wall + record.spoke_until, latency, turn=record.turn,
                      phrase=step.label, expected_intent=step.expected_intent,
                      intent=record.intent,
                      error=None if latency is not None else "call ended before a reply")]
    if record.barge_in and record.onset_at is not None:
        samples.append(Sample("barge_in", wall + record.onset_at, barge, turn=record.turn,
                              phrase=step.label, error=None if barge is not None
                              else "no clear: barge-in not detected"))
    return samples


def _intent_check(record: TurnRecord, step: Step | None, wall: float) -> Sample | None:
    """The intent a turn's phrase meant against the one the server recognised (None: the
    phrase meant none, or the server did not say: only the native protocol does)."""
    if step is None or step.expected_intent is None or record.intent is None \
            or record.spoke_until is None:
        return None
    return Sample("intent", wall + record.spoke_until, None, turn=record.turn,
                  phrase=step.label, expected_intent=step.expected_intent, intent=record.intent)
