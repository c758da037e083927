"""``voicebot simulate PROVIDER``: play a telephony provider's side of a call.

The simulator speaks the provider's own websocket messages (the shapes in
``tests/conformance``) to a voicebot server: the opening messages, caller audio
as 20 ms frames in real time (silence between turns, like a phone line), keys,
echoes of the server's marks once the audio before them has played (a flush
echoes the pending ones, as Twilio does), and the end of the stream.  It waits
for the bot's reply before each turn and prints one JSON line per turn: turn,
bot audio seconds, latency_ms (end of caller speech → first bot audio).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebot.audio.codecs import decode, encode
from voicebot.engines.base import Pcm
from voicebot.telephony.dialects import DIALECTS, Dialect

from .client import CallerTurn, CallOptions, prepare_turns, speech_end_ms

__all__ = ["DIALECTS", "SimOptions", "SimReport", "SimResult", "run_simulation", "simulate"]

log = logging.getLogger(__name__)
_FRAME_S = 0.02
_QUIET_S = 0.8  # no bot audio for this long after its playout: the reply is over



@dataclass(frozen=True, slots=True)
class SimOptions:
    provider: str
    url: str = "ws://127.0.0.1:8765"
    scenario: str | None = None
    pause_ms: int = 400
    turn_timeout_s: float = 20.0
    auto_detect: bool = False  # connect to the url as given (no /provider path)
    call_id: str = field(default_factory=lambda: f"CA{uuid.uuid4().hex}")
    token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer`` (auth.<provider>.tokens)."""
    twilio_auth_token: str | None = field(default=None, repr=False)
    """Sign the upgrade as Twilio does (``X-Twilio-Signature`` over the URL)."""


def _auth_headers(options: SimOptions, url: str) -> dict[str, str]:
    """What the platform would send to authenticate (docs/security.md)."""
    from .auth_schemes import twilio_signature

    headers: dict[str, str] = {}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    if options.twilio_auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(url, options.twilio_auth_token)
    return headers


@dataclass(slots=True)
class SimReport:
    turn: int
    bot_audio_s: float = 0.0
    latency_ms: float | None = None
    end: str | None = None

    def as_json(self) -> str:
        latency = None if self.latency_ms is None else round(self.latency_ms)
        return json.dumps({"turn": self.turn, "bot_audio_s": round(self.bot_audio_s, 2),
                           "latency_ms": latency, **({"end": self.end} if self.end else {})})


@dataclass(slots=True)
class SimResult:
    reports: list[SimReport]
    audio: Pcm
    marks_echoed: int = 0
    clears: int = 0
    close: str | None = None


class _Call:
    """One simulated provider call: the line, the listener and the mark echoes."""

    def __init__(self, ws: ClientConnection, dialect: Dialect) -> None:
        self.ws, self.dialect = ws, dialect
        self.loop = asyncio.get_running_loop()
        samples = dialect.rate // 50
        self.silence = encode(np.zeros(samples, np.int16), dialect.encoding)
        self.playing: list[bytes] = []
        self.audio: list[Pcm] = []
        self.audio_s = 0.0
        self.first_audio_at: float | None = None
        self.playout_end = 0.0
        self.heard = asyncio.Event()
        self.closed = asyncio.Event()
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.marks_echoed = self.clears = 0
        self.echoes: set[asyncio.Task[None]] = set()
        self.hangup = False

    def play(self, pcm: Pcm) -> None:
        data, size = encode(pcm, self.dialect.encoding), len(self.silence)
        self.playing = [data[i : i + size] for i in range(0, len(data), size)]

    async def send(self, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(message)

    async def line(self) -> None:
        deadline = self.loop.time()
        while not self.closed.is_set():
            await self.send(self.dialect.media(self.playing.pop(0) if self.playing
                                               else self.silence))
            deadline += _FRAME_S
            await asyncio.sleep(max(0.0, deadline - self.loop.time()))

    def _echo(self, name: str) -> None:
        self.pending.pop(name, None)
        self.marks_echoed += 1
        task = self.loop.create_task(self.send(self.dialect.mark_echo(name)))
        self.echoes.add(task)
        task.add_done_callback(self.echoes.discard)

    async def listen(self) -> None:
        try:
            async for message in self.ws:
                for kind, value in self.dialect.parse(message):
                    self._on(kind, value)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.heard.set()

    def _on(self, kind: str, value: Any) -> None:
        now = self.loop.time()
        if kind == "audio":
            pcm = decode(value, self.dialect.encoding)
            self.audio.append(pcm)
            self.audio_s += len(pcm) / self.dialect.rate
            self.first_audio_at = self.first_audio_at or now
            self.playout_end = max(self.playout_end, now) + len(pcm) / self.dialect.rate
            self.heard.set()
        elif kind == "mark" and value:
            self.pending[value] = self.loop.call_at(max(self.playout_end, now), self._echo, value)
        elif kind == "clear":
            self.clears += 1
            self.playout_end = now
            for name, handle in list(self.pending.items()):
                handle.cancel()
                self._echo(name)
        elif kind == "hangup":
            self.hangup = True

    async def await_reply(self, report: SimReport, timeout_s: float) -> bool:
        """Until the bot's reply has played; False when the call ended."""
        self.heard.clear()
        self.audio_s = 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.heard.wait(), timeout_s)
        while not self.closed.is_set():
            self.heard.clear()
            quiet = max(0.0, self.playout_end - self.loop.time()) + _QUIET_S
            try:
                await asyncio.wait_for(self.heard.wait(), quiet)
            except TimeoutError:
                break
        report.bot_audio_s = self.audio_s
        if self.first_audio_at is None:
            report.end = "timeout" if not self.closed.is_set() else None
        if self.closed.is_set() or self.hangup:
            code, reason = self.ws.close_code, self.ws.close_reason
            report.end = f"{'hangup' if self.hangup else 'closed'}:{code}:{reason}"
            return False
        return report.end is None


def _call_url(options: SimOptions, path: str) -> str:
    if options.auto_detect:
        return options.url
    parts = urlsplit(options.url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


async def simulate(turns: Sequence[tuple[CallerTurn, Pcm | None]],
                   options: SimOptions) -> SimResult:
    """Run one provider call; reports per turn (0 = the greeting) and the bot's audio."""
    dialect = DIALECTS[options.provider](options.call_id)
    loop = asyncio.get_running_loop()
    subprotocols = [dialect.subprotocol] if dialect.subprotocol else None
    url = _call_url(options, dialect.path)
    async with connect(url, max_size=2**20, subprotocols=subprotocols,  # type: ignore[arg-type]
                       additional_headers=_auth_headers(options, url)) as ws:
        call = _Call(ws, dialect)
        for message in dialect.opening(options.scenario):
            await ws.send(message)
        sent_at = loop.time()
        tasks = [asyncio.create_task(call.line()), asyncio.create_task(call.listen())]
        reports: list[SimReport] = []
        try:
            greeting = SimReport(turn=0)
            alive = await call.await_reply(greeting, options.turn_timeout_s)
            if call.first_audio_at is not None:
                greeting.latency_ms = (call.first_audio_at - sent_at) * 1000
            reports.append(greeting)
            for number, (turn, pcm) in enumerate(turns, start=1):
                if not alive:
                    break
                await asyncio.sleep(max(0.0, call.playout_end - loop.time())
                                    + options.pause_ms / 1000)
                report = SimReport(turn=number)
                call.first_audio_at = None
                if turn.kind == "dtmf":
                    for digit in turn.value:
                        for message in dialect.dtmf(digit):
                            await ws.send(message)
                    spoke_until = loop.time()
                else:
                    assert pcm is not None
                    call.play(pcm)
                    spoke_until = loop.time() + speech_end_ms(pcm, dialect.rate) / 1000
                alive = await call.await_reply(report, options.turn_timeout_s)
                if call.first_audio_at is not None:
                    report.latency_ms = (call.first_audio_at - spoke_until) * 1000
                reports.append(report)
            if alive:
                for message in dialect.stop():
                    await call.send(message)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.gather(*tasks)
    audio = np.concatenate(call.audio) if call.audio else np.zeros(0, np.int16)
    close = f"{ws.close_code}:{ws.close_reason}"
    return SimResult(reports, audio, call.marks_echoed, call.clears, close)


def run_simulation(turns: Sequence[CallerTurn], options: SimOptions) -> int:
    """CLI entry: print one JSON line per turn; exit status 1 on an error or timeout."""
    dialect = DIALECTS[options.provider]
    prepared = prepare_turns(turns, CallOptions(sample_rate_hz=dialect.rate))
    started = time.perf_counter()
    result = asyncio.run(simulate(prepared, options))
    for report in result.reports:
        print(report.as_json(), flush=True)
    log.info("%s call took %.1f s; %d marks echoed; closed %s", options.provider,
             time.perf_counter() - started, result.marks_echoed, result.close)
    failed = any(r.end and r.end.startswith("timeout") for r in result.reports)
    return 1 if failed else 0
