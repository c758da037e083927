"""``voicebot simulate PROVIDER``: play a telephony provider's side of a call.

The simulator speaks the provider's own websocket messages (the shapes in
``tests/conformance``) to a voicebot server: the opening messages, caller audio
as 20 ms frames in real time (silence between turns, like a phone line), keys,
echoes of the server's marks once the audio before them has played (a flush
echoes the pending ones, as Twilio does), and the end of the stream.  It waits
for the bot's reply (no bot audio for 0.8 s after its playout) before each turn and
prints one JSON line per turn: turn, bot audio seconds, latency_ms (end of caller
speech → first bot audio).  The caller is :class:`voicebot.caller.ScriptedCaller`,
driven by :func:`server.client.drive`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect

from voicebot.caller import ScriptedCaller
from voicebot.caller_script import CallEnd, CallScript, TurnRecord
from voicebot.telephony.dialects import DIALECTS
from voicebot.types import Pcm

from .client import CallerTurn, CallOptions, drive, prepare_turns, script_turns

__all__ = ["DIALECTS", "SimOptions", "SimReport", "SimResult", "run_simulation", "simulate"]

log = logging.getLogger(__name__)
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


def _end(end: CallEnd | None) -> str | None:
    """``timeout``, or ``hangup|closed:CODE:REASON`` (hangup: the provider was told to)."""
    if end is None or end.how in ("timeout", "error"):
        return None if end is None else end.how
    return f"{end.how}:{end.close_code}:{end.close_reason}"


@dataclass(slots=True)
class SimReport:
    turn: int
    bot_audio_s: float = 0.0
    latency_ms: float | None = None
    end: str | None = None

    @classmethod
    def of(cls, record: TurnRecord) -> SimReport:
        return cls(record.turn, record.bot_audio_s, record.latency_ms, _end(record.end))

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


def _call_url(options: SimOptions, path: str) -> str:
    if options.auto_detect:
        return options.url
    parts = urlsplit(options.url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


async def simulate(turns: Sequence[tuple[CallerTurn, Pcm | None]],
                   options: SimOptions) -> SimResult:
    """Run one provider call; reports per turn (0 = the greeting) and the bot's audio."""
    dialect = DIALECTS[options.provider](options.call_id)
    script = CallScript(script_turns(turns, dialect.encoding, dialect.rate,
                                     pause_ms=options.pause_ms),
                        scenario=options.scenario, turn_timeout_s=options.turn_timeout_s,
                        quiet_s=_QUIET_S)
    caller = ScriptedCaller(dialect, script)
    subprotocols = [dialect.subprotocol] if dialect.subprotocol else None
    url = _call_url(options, dialect.path)
    async with connect(url, max_size=2**20, subprotocols=subprotocols,  # type: ignore[arg-type]
                       additional_headers=_auth_headers(options, url)) as ws:
        await drive(ws, caller)
    line = caller.line
    return SimResult([SimReport.of(r) for r in caller.records], line.bot_audio(),
                     line.marks_echoed, line.clears, f"{ws.close_code}:{ws.close_reason}")


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
    failed = any(r.end and r.end.startswith(("timeout", "error")) for r in result.reports)
    return 1 if failed else 0
