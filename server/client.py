"""``voicebot call``: a caller over the native protocol, at real-time pace.

The calling is :class:`voicebot.caller.ScriptedCaller`'s: it streams 20 ms frames
continuously (silence between turns, like a phone line) and plays one caller turn at
a time once the bot has finished speaking.  This module is its asyncio driver
(:func:`drive`, ``voicebot simulate``'s too): it reads the caller's audio, connects,
carries messages and wake-ups, saves the bot's audio and prints one JSON line per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding
from voicebot.audio.resample import resample
from voicebot.caller import ScriptedCaller
from voicebot.caller_script import (
    CallEnd,
    CallScript,
    ReplyEnd,
    Turn,
    TurnRecord,
    speech_end_ms,
    speech_turn,
)
from voicebot.telephony.dialects import DIALECTS
from voicebot.types import Pcm

__all__ = ["CallOptions", "CallerTurn", "TurnReport", "drive", "load_wav", "place_call",
           "prepare_turns", "run_call", "save_wav", "script_turns", "speech_end_ms"]

log = logging.getLogger(__name__)


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


_DETAIL = {p.Hangup: lambda e: e.reason, p.Transfer: lambda e: e.target,
           p.ErrorEvent: lambda e: e.code}


def _end(end: CallEnd | None) -> str | None:
    """``hangup:REASON``, ``transfer:TARGET``, ``error:CODE``, ``timeout`` or ``closed``."""
    if end is None or end.how == "timeout" or end.event is None:
        return None if end is None else end.how
    return f"{end.event.type}:{_DETAIL[type(end.event)](end.event)}"


@dataclass(slots=True)
class TurnReport:
    turn: int
    transcript: str | None = None
    intent: str | None = None
    bot_text: str | None = None
    latency_ms: float | None = None
    confidence: float | None = None
    end: str | None = None

    @classmethod
    def of(cls, record: TurnRecord) -> TurnReport:
        return cls(record.turn, record.transcript, record.intent, record.bot_text,
                   record.latency_ms, record.confidence, _end(record.end))

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


def script_turns(turns: Sequence[tuple[CallerTurn, Pcm | None]], encoding: AudioEncoding,
                 rate_hz: int, *, pause_ms: int) -> tuple[Turn, ...]:
    """The scripted caller's turns: keys, or speech as line frames (ending at its last
    loud sample)."""
    def one(turn: CallerTurn, pcm: Pcm | None) -> Turn:
        if turn.kind == "dtmf":
            return Turn(keys=turn.value, pause_s=pause_ms / 1000)
        assert pcm is not None
        return speech_turn(pcm, encoding, rate_hz, pause_s=pause_ms / 1000)

    return tuple(one(turn, pcm) for turn, pcm in turns)


async def drive(ws: ClientConnection, caller: ScriptedCaller) -> None:
    """Run ``caller``'s call over ``ws`` until it is over (messages stamped on arrival)."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[float, str | bytes | None]] = asyncio.Queue()

    async def receive() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                inbox.put_nowait((loop.time(), message))
        inbox.put_nowait((loop.time(), None))

    receiver = asyncio.create_task(receive())
    actions = caller.start(loop.time())
    try:
        while True:
            with contextlib.suppress(ConnectionClosed):
                for message in actions.send:
                    await ws.send(message)
            if actions.wake_at is None:
                return
            try:
                at, got = await asyncio.wait_for(inbox.get(), actions.wake_at - loop.time())
            except TimeoutError:
                actions = caller.wake(loop.time())
                continue
            actions = caller.closed(ws.close_code, ws.close_reason, at) if got is None \
                else caller.receive(got, at)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def place_call(
    turns: Sequence[tuple[CallerTurn, Pcm | None]], options: CallOptions
) -> tuple[list[TurnReport], Pcm]:
    """Run one call; returns a report per turn (0 = greeting) and all bot audio."""
    dialect = DIALECTS["native"](options.call_id)
    dialect.encoding, dialect.rate = AudioEncoding(options.encoding), options.sample_rate_hz
    script = CallScript(script_turns(turns, dialect.encoding, dialect.rate,
                                     pause_ms=options.pause_ms),
                        scenario=options.scenario, turn_timeout_s=options.turn_timeout_s,
                        reply_end=ReplyEnd.EVENTS)
    caller = ScriptedCaller(dialect, script)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    async with connect(options.url, max_size=2**20, additional_headers=headers) as ws:
        await drive(ws, caller)
    return [TurnReport.of(r) for r in caller.records], caller.line.bot_audio()


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
