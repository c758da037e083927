"""One real-time call against voicebot, placed the way a telephony platform places it.

A :class:`Caller` opens a websocket (``websocket-client``: blocking sockets,
no asyncio, so it runs on plain threads and, under Locust's gevent
monkey-patching, on greenlets), speaks one provider dialect
(:mod:`voicebot.telephony.dialects`) and keeps the line alive: a sender
sends a 20 ms frame every 20 ms (silence, or the caller's phrase) and echoes
marks once the bot audio before them has played; a receiver tracks the bot's
audio, ``clear`` and the end of the call.  The script's turns wait for the bot
to finish (plus a human pause) or, for barge-in callers, talk over it.

Measured at the caller, from its own clock: the greeting (start → first bot
audio), each turn (the frame holding the last speech sample sent → first bot
audio), keys (sent → first bot audio) and barge-in reaction (the frame
holding the first speech sample sent → ``clear``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import websocket

from loadtests.phrases import FRAME_MS, Script, Step
from loadtests.results import CallResult, Sample
from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.telephony.dialects import DIALECTS, Dialect

__all__ = ["CallFailed", "CallRefused", "Caller", "CallerOptions"]

log = logging.getLogger(__name__)
_FRAME_S = FRAME_MS / 1000
_REFUSED_CLOSE = (p.CloseCode.TRY_AGAIN_LATER, p.CloseCode.BUSY)
_OLD_REPLY_GRACE_S = 0.3


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


def _emit(result: CallResult, samples: list[Sample],
          on_sample: Callable[[CallResult, Sample], None] | None) -> None:
    result.samples += samples
    if on_sample is not None:
        for sample in samples:
            on_sample(result, sample)


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
        width = 2 if self.encoding is AudioEncoding.PCM16 else 1
        self._bytes_per_s = self.rate * width
        self._silence = encode(np.zeros(self.rate * FRAME_MS // 1000, np.int16), self.encoding)
        self._ws: websocket.WebSocket | None = None
        self._cv = threading.Condition()
        self._queue: deque[tuple[bytes, str | None]] = deque()
        self._marker_at: dict[str, float] = {}
        self._armed = self._arm_on_clear = False
        self._first_audio_at: float | None = None
        self._reply_started_at: float | None = None
        self._playout_end = 0.0
        self._clears: list[float] = []
        self._marks: list[tuple[float, str]] = []
        self._ended = self._closed = self._closing = False
        self._close: tuple[int | None, str] = (None, "")
        self._error: str | None = None
        self._intent: str | None = None
        self._lag_s = 0.0

    # ------------------------------------------------------------------ the call

    def run(self, script: Script, *,
            on_sample: Callable[[CallResult, Sample], None] | None = None) -> CallResult:
        """Place the call; ``on_sample`` hears each measurement as it is taken."""
        wall = time.time() - self.clock()
        result = CallResult(self.call_id, self.options.protocol, script.name, time.time())
        began = self.clock()
        threads: list[threading.Thread] = []
        try:
            self._connect()
            opened = self.clock()
            with self._cv:
                self._armed = True
            threads = [threading.Thread(target=self._send_loop, daemon=True),
                       threading.Thread(target=self._recv_loop, daemon=True)]
            for thread in threads:
                thread.start()
            first = self._await_reply()
            if first is None:
                raise CallFailed("closed before the greeting")
            greeting = Sample("greeting", wall + first, (first - opened) * 1000)
            _emit(result, [greeting], on_sample)
            for number, step in enumerate(script.steps, start=1):
                samples = self._turn(number, step, wall)
                _emit(result, samples, on_sample)
                if not samples or self._ended:
                    break
            if not self._ended and self._wait_quiet(self.options.pause_s[0]):
                for message in self.dialect.stop():
                    self._send(message)
            result.outcome = "completed"
        except CallRefused as exc:
            result.outcome, result.error = "refused", str(exc)
        except CallFailed as exc:
            result.outcome, result.error = "failed", str(exc)
        finally:
            self._hang_up(threads)
            result.duration_s = self.clock() - began
            result.max_send_lag_ms = self._lag_s * 1000
        return result

    def _turn(self, number: int, step: Step, wall: float) -> list[Sample]:
        """One caller turn and the samples it gave; [] when the call ended before it."""
        barge = step.barge_in and self._bot_talking()
        if not barge and not self._wait_quiet(self.rng.uniform(*self.options.pause_s)):
            return []
        with self._cv:
            self._intent = None
            self._armed = self._arm_on_clear = False
            clears_before = len(self._clears)
        if step.phrase is None:
            assert step.dtmf is not None
            for digit in step.dtmf:
                for message in self.dialect.dtmf(digit):
                    self._send(message)
            with self._cv:
                spoke_until = self.clock()
                self._armed, self._first_audio_at = True, None
            kind, onset = "dtmf", spoke_until
        else:
            said = self._say(step, barge=barge)
            if said is None:
                return []
            (onset, spoke_until), kind = said, "turn"
        first = self._await_reply()
        samples = [Sample(kind, wall + spoke_until, None if first is None else
                          (first - spoke_until) * 1000, turn=number, phrase=step.label,
                          expected_intent=step.expected_intent, intent=self._intent,
                          error=None if first is not None else "call ended before a reply")]
        if barge:
            with self._cv:
                clears = [t for t in self._clears[clears_before:] if t >= onset]
            samples.append(Sample("barge_in", wall + onset, (clears[0] - onset) * 1000
                                  if clears else None, turn=number, phrase=step.label,
                                  error=None if clears else "no clear: barge-in not detected"))
        return samples

    def _say(self, step: Step, *, barge: bool) -> tuple[float, float] | None:
        """Queue the phrase on the line; returns when its onset and end frames were sent
        (None: the call ended meanwhile)."""
        assert step.phrase is not None
        frames = step.phrase.frames(self.encoding, self.rate)
        onset_i = min(step.phrase.speech_start_ms // FRAME_MS, len(frames) - 1)
        end_i = min(max(step.phrase.speech_end_ms - 1, 0) // FRAME_MS, len(frames) - 1)
        with self._cv:
            self._marker_at.clear()
            for i, frame in enumerate(frames):
                marker = "end" if i == end_i else "onset" if i == onset_i else None
                self._queue.append((frame, marker))
            self._arm_on_clear = barge
            deadline = self.clock() + len(frames) * _FRAME_S + 5.0
            while "end" not in self._marker_at:
                self._check_alive(deadline, "the caller's line stalled")
                if self._closed:
                    return None  # the server ended the call (normally) while we spoke
                self._cv.wait(max(0.0, deadline - self.clock()))
            return self._marker_at.get("onset", self._marker_at["end"]), self._marker_at["end"]

    # ------------------------------------------------------------------ waiting

    def _check_alive(self, deadline: float, what: str) -> None:
        """Raise for a dead or failed call (caller holds the lock)."""
        if self._error is not None:
            raise CallFailed(self._error)
        if self._closed and not self._ended:
            code, reason = self._close
            if code in _REFUSED_CLOSE:
                raise CallRefused(f"closed {code} {reason}".strip())
            if code != p.CloseCode.NORMAL:
                raise CallFailed(f"closed {code} {reason}".strip())
        if self.clock() >= deadline:
            raise CallFailed(f"{what} within {self.options.turn_timeout_s:.0f} s")

    def _await_reply(self) -> float | None:
        """When the bot's first audio frame since arming came; None if the call ended."""
        deadline = self.clock() + self.options.turn_timeout_s
        with self._cv:
            while self._first_audio_at is None or not self._armed:
                if self._closed and (self._ended or self._close[0] == p.CloseCode.NORMAL):
                    return None
                self._check_alive(deadline, "no bot reply")
                wake = deadline
                if self._arm_on_clear and "end" in self._marker_at:
                    # Barged in but no clear: once the old reply has played out,
                    # the next audio is the answer.
                    if self.clock() >= self._playout_end + _OLD_REPLY_GRACE_S:
                        self._armed, self._first_audio_at = True, None
                        self._arm_on_clear = False
                        continue
                    wake = min(wake, self._playout_end + _OLD_REPLY_GRACE_S)
                self._cv.wait(max(0.0, wake - self.clock()))
            self._reply_started_at = self._first_audio_at
            return self._first_audio_at

    def _wait_quiet(self, pause_s: float) -> bool:
        """Until the bot has played everything and been silent for ``pause_s``; False when
        the call ended meanwhile."""
        with self._cv:
            while True:
                if self._closed or self._ended:
                    return False
                left = self._playout_end + pause_s - self.clock()
                if left <= 0:
                    return True
                self._cv.wait(left)

    def _bot_talking(self) -> bool:
        """Wait a little into the bot's reply; True if enough of it is left to barge into."""
        with self._cv:
            started = self._reply_started_at or self.clock()
        time.sleep(max(0.0, started + self.rng.uniform(*self.options.barge_in_after_s)
                       - self.clock()))
        with self._cv:
            # Providers whose audio the server paces in real time show no more than
            # a frame ahead: "still playing" is all the caller can know there.
            return not self._ended and self._playout_end > self.clock()

    # ------------------------------------------------------------------ the socket

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
        for message in self.dialect.opening(self.options.scenario):
            self._send(message)

    def _send(self, message: str | bytes) -> None:
        assert self._ws is not None
        opcode = websocket.ABNF.OPCODE_BINARY if isinstance(message, bytes) \
            else websocket.ABNF.OPCODE_TEXT
        try:
            self._ws.send(message, opcode=opcode)
        except (websocket.WebSocketException, OSError) as exc:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
            if not self._ended and not self._closing:
                raise CallFailed(f"send: {exc or type(exc).__name__}") from exc

    def _send_loop(self) -> None:
        due = self.clock()
        while True:
            with self._cv:
                if self._closed or self._closing:
                    return
                frame, marker = self._queue.popleft() if self._queue else (self._silence, None)
                now = self.clock()
                echoes = [name for at, name in self._marks if at <= now]
                self._marks = [(at, name) for at, name in self._marks if at > now]
            try:
                self._send(self.dialect.media(frame))
                for name in echoes:
                    self._send(self.dialect.mark_echo(name))
            except CallFailed as exc:
                log.debug("%s: line down: %s", self.call_id, exc)
                return
            sent = self.clock()
            self._lag_s = max(self._lag_s, sent - due)
            if marker is not None:
                with self._cv:
                    self._marker_at[marker] = sent
                    if marker == "end" and not (self._arm_on_clear and not self._clears_since()):
                        self._armed, self._first_audio_at = True, None
                        self._arm_on_clear = False
                    self._cv.notify_all()
            due += _FRAME_S
            if due < sent - 1.0:  # starved for a second: restart the clock, keep the lag
                due = sent
            time.sleep(max(0.0, due - self.clock()))

    def _clears_since(self) -> bool:
        onset = self._marker_at.get("onset")
        return onset is not None and any(t >= onset for t in self._clears)

    def _recv_loop(self) -> None:
        assert self._ws is not None
        try:
            while True:
                opcode, data = self._ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                    with self._cv:
                        self._close = (code, data[2:].decode(errors="replace"))
                    return
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                message = data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else data
                events = self.dialect.parse(message)
                with self._cv:
                    for kind, value in events:
                        self._on(kind, value, self.clock())
                    self._cv.notify_all()
        except (websocket.WebSocketException, OSError) as exc:
            with self._cv:
                if not self._closing and self._close[0] is None:
                    self._close = (None, f"connection lost: {exc or type(exc).__name__}")
        except ValueError as exc:  # the dialect could not read a server message
            with self._cv:
                self._error = f"bad message from the server: {exc}"
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    def _on(self, kind: str, value: Any, now: float) -> None:
        """One event from the server (caller holds the lock)."""
        if kind == "audio":
            self._playout_end = max(self._playout_end, now) + len(value) / self._bytes_per_s
            if self._armed and self._first_audio_at is None:
                self._first_audio_at = now
        elif kind == "mark":
            self._marks.append((max(self._playout_end, now), value))
        elif kind == "clear":
            self._clears.append(now)
            self._playout_end = now
            self._marks = [(now, name) for _, name in self._marks]
            if self._arm_on_clear and "end" in self._marker_at:
                self._armed, self._first_audio_at, self._arm_on_clear = True, None, False
        elif kind == "hangup":
            self._ended = True
        elif kind == "event":
            if isinstance(value, p.IntentEvent):
                self._intent = value.intent
            elif isinstance(value, p.ErrorEvent) and value.fatal:
                self._error = f"server error {value.code}: {value.message}"

    def _hang_up(self, threads: list[threading.Thread]) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._ws is None:
            return
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._ws.send_close(websocket.STATUS_NORMAL)
        if len(threads) > 1:
            threads[1].join(2.0)
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._ws.shutdown()  # type: ignore[no-untyped-call]
        for thread in threads:
            thread.join(2.0)
