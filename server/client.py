"""``voicebot call``: a caller over the native protocol, at real-time pace.

It streams 20 ms frames continuously (silence between turns, like a phone
line), plays one caller turn at a time once the bot has finished speaking,
saves the bot's audio and prints one JSON line per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import wave
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, decode, encode
from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm

__all__ = ["CallOptions", "CallerTurn", "TurnReport", "load_wav", "place_call", "speech_end_ms"]

log = logging.getLogger(__name__)
_FRAME_MS = 20
_END_GRACE_S = 0.15


@dataclass(frozen=True, slots=True)
class CallerTurn:
    kind: str  # "wav", "text" or "dtmf"
    value: str


@dataclass(frozen=True, slots=True)
class CallOptions:
    url: str = "ws://127.0.0.1:8765"
    scenario: str | None = None
    encoding: str = "pcm16"
    sample_rate_hz: int = 16_000
    pause_ms: int = 400
    turn_timeout_s: float = 20.0
    call_id: str = field(default_factory=lambda: f"cli-{uuid.uuid4().hex[:12]}")
    token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer`` (the server's auth.native.tokens)."""


@dataclass(slots=True)
class TurnReport:
    turn: int
    transcript: str | None = None
    intent: str | None = None
    bot_text: str | None = None
    latency_ms: float | None = None
    confidence: float | None = None
    end: str | None = None

    def as_json(self) -> str:
        return json.dumps({
            "turn": self.turn, "transcript": self.transcript, "intent": self.intent,
            "bot_text": self.bot_text,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms),
            "confidence": self.confidence, **({"end": self.end} if self.end else {}),
        })


def load_wav(path: Path, *, sample_rate_hz: int) -> Pcm:
    """Read a PCM16 WAV (mono or the first channel) and resample it."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        pcm = frames[:: wav.getnchannels()].astype(np.int16)
        rate = wav.getframerate()
    return pcm if rate == sample_rate_hz else resample(pcm, in_rate_hz=rate,
                                                       out_rate_hz=sample_rate_hz)


def speech_end_ms(pcm: Pcm, sample_rate_hz: int, *, threshold: int = 300) -> float:
    """Where speech ends in ``pcm`` (last sample louder than ``threshold``), in ms."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return (int(loud[-1]) + 1 if len(loud) else 0) * 1000.0 / sample_rate_hz


class _Line:
    """The phone line: frames go out every 20 ms; caller audio replaces silence."""

    def __init__(self, ws: ClientConnection, options: CallOptions) -> None:
        self.ws = ws
        self.encoding = AudioEncoding(options.encoding)
        self.rate = options.sample_rate_hz
        self.frame_samples = self.rate * _FRAME_MS // 1000
        self.silence = encode(np.zeros(self.frame_samples, dtype=np.int16), self.encoding)
        self.playing: deque[bytes] = deque()
        self.finished = asyncio.Event()

    def play(self, pcm: Pcm) -> None:
        data = encode(pcm, self.encoding)
        size = len(self.silence)
        self.playing = deque(data[i : i + size] for i in range(0, len(data), size))
        self.finished.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = self.playing.popleft() if self.playing else self.silence
                await self.ws.send(frame)
                if not self.playing:
                    self.finished.set()
                deadline += _FRAME_MS / 1000
                await asyncio.sleep(max(0.0, deadline - loop.time()))


class _Listener:
    """Collects the server's events and audio, and tracks the bot's playout."""

    def __init__(self, encoding: AudioEncoding, rate: int) -> None:
        self.encoding, self.rate = encoding, rate
        self.audio: list[Pcm] = []
        self.events: asyncio.Queue[tuple[float, p.ServerEvent | None]] = asyncio.Queue()
        self.first_audio_at: float | None = None
        self.playout_end = 0.0

    async def run(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in ws:
                now = loop.time()
                if isinstance(message, bytes):
                    pcm = decode(message, self.encoding)
                    self.audio.append(pcm)
                    if self.first_audio_at is None:
                        self.first_audio_at = now
                    self.playout_end = max(self.playout_end, now) + len(pcm) / self.rate
                else:
                    event = p.decode_server_event(message)
                    if isinstance(event, p.Clear):
                        self.playout_end = now
                    await self.events.put((now, event))
        except ConnectionClosed:
            pass
        finally:
            await self.events.put((loop.time(), None))


async def _await_reply(listener: _Listener, report: TurnReport, timeout_s: float) -> bool:
    """Fill ``report`` until the bot's reply ends; False when the call is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    reply_done = False
    while True:
        try:
            _, event = await asyncio.wait_for(listener.events.get(), deadline - loop.time())
        except TimeoutError:
            if reply_done:
                return True
            report.end = "timeout"
            return False
        if event is None:
            report.end = report.end or "closed"
            return False
        if isinstance(event, p.TranscriptEvent):
            report.transcript = event.text
        elif isinstance(event, p.IntentEvent):
            report.intent, report.confidence = event.intent, event.confidence
        elif isinstance(event, p.BotSpeechStart):
            report.bot_text = event.text
        elif isinstance(event, p.BotSpeechEnd) and not event.interrupted:
            # A transfer or hang-up follows the last reply at once: look briefly.
            reply_done = True
            deadline = loop.time() + _END_GRACE_S
        elif isinstance(event, p.Transfer | p.Hangup):
            detail = event.target if isinstance(event, p.Transfer) else event.reason
            report.end = f"{event.type}:{detail}"
        elif isinstance(event, p.ErrorEvent):
            log.warning("server error %s: %s", event.code, event.message)
            if event.fatal:
                report.end = f"error:{event.code}"


async def place_call(
    turns: Sequence[tuple[CallerTurn, Pcm | None]], options: CallOptions
) -> tuple[list[TurnReport], Pcm]:
    """Run one call; returns a report per turn (0 = greeting) and all bot audio."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    async with connect(options.url, max_size=2**20, additional_headers=headers) as ws:
        start = p.Start(call_id=options.call_id, encoding=options.encoding,
                        sample_rate_hz=options.sample_rate_hz, scenario=options.scenario)
        await ws.send(p.encode_client_message(start))
        line = _Line(ws, options)
        listener = _Listener(line.encoding, line.rate)
        tasks = [asyncio.create_task(line.run()), asyncio.create_task(listener.run(ws))]
        reports: list[TurnReport] = []
        try:
            sent_at = loop.time()
            greeting = TurnReport(turn=0)
            alive = await _await_reply(listener, greeting, options.turn_timeout_s)
            if listener.first_audio_at is not None:
                greeting.latency_ms = (listener.first_audio_at - sent_at) * 1000
            reports.append(greeting)
            for number, (turn, pcm) in enumerate(turns, start=1):
                if not alive:
                    break
                await asyncio.sleep(max(0.0, listener.playout_end - loop.time())
                                    + options.pause_ms / 1000)
                report = TurnReport(turn=number)
                listener.first_audio_at = None
                if turn.kind == "dtmf":
                    await ws.send(p.encode_client_message(p.Dtmf(turn.value)))
                    spoke_until = loop.time()
                else:
                    assert pcm is not None
                    line.play(pcm)
                    began = loop.time()
                    spoke_until = began + speech_end_ms(pcm, line.rate) / 1000
                alive = await _await_reply(listener, report, options.turn_timeout_s)
                if listener.first_audio_at is not None:
                    report.latency_ms = (listener.first_audio_at - spoke_until) * 1000
                reports.append(report)
            if alive:
                await asyncio.sleep(max(0.0, listener.playout_end - loop.time()))
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(p.encode_client_message(p.Stop()))
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.gather(*tasks)
    audio = np.concatenate(listener.audio) if listener.audio else np.zeros(0, np.int16)
    return reports, audio


def save_wav(path: Path, pcm: Pcm, sample_rate_hz: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm.astype("<i2").tobytes())


def prepare_turns(
    turns: Sequence[CallerTurn], options: CallOptions
) -> list[tuple[CallerTurn, Pcm | None]]:
    """Caller audio for each turn: WAVs are read, texts spoken by espeak-ng."""
    synth: Any = None
    prepared: list[tuple[CallerTurn, Pcm | None]] = []
    for turn in turns:
        if turn.kind == "wav":
            pcm = load_wav(Path(turn.value), sample_rate_hz=options.sample_rate_hz)
            prepared.append((turn, pcm))
        elif turn.kind == "text":
            if synth is None:
                from voicebot.engines.espeak_tts import EspeakSynthesizer

                synth = EspeakSynthesizer()
            pcm = synth.synthesize(turn.value)
            pcm = resample(
                pcm, in_rate_hz=synth.sample_rate_hz, out_rate_hz=options.sample_rate_hz
            )
            prepared.append((turn, pcm))
        else:
            prepared.append((turn, None))
    return prepared


def run_call(turns: Sequence[CallerTurn], options: CallOptions, *, out: Path | None) -> int:
    """CLI entry: place the call, print JSON lines, save audio. Returns an exit status."""
    prepared = prepare_turns(turns, options)
    started = time.perf_counter()
    reports, audio = asyncio.run(place_call(prepared, options))
    for report in reports:
        print(report.as_json(), flush=True)
    if out is not None:
        save_wav(out, audio, options.sample_rate_hz)
        log.info("saved %.1f s of bot audio to %s", len(audio) / options.sample_rate_hz, out)
    log.info("call took %.1f s", time.perf_counter() - started)
    failed = any(r.end and r.end.startswith(("error", "timeout")) for r in reports)
    return 1 if failed else 0
