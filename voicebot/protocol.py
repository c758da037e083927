"""The native voicebot websocket protocol, version 1: a pure codec.

JSON text frames carry control messages; binary frames carry audio in the
encoding the client declared.  Both the server and clients (the ``voicebot
call`` CLI, Locust users) use this module, so it does no I/O.  The wire format
is documented in ``docs/protocol.md``.

Client → server: ``start`` (first message), ``dtmf``, ``stop``; binary audio.
Server → client: ``ready``, ``transcript``, ``intent``, ``speech_start``,
``speech_end``, ``clear``, ``transfer``, ``hangup``, ``error``; binary audio; and
the events a client opts into with ``start``'s ``events`` (:mod:`voicebot.protocol_turn`).

Decoding raises :class:`ProtocolError` and nothing else, whatever the text (JSON
goes through :func:`voicebot.jsonsafe.load_json`); :func:`close_reason` makes any
text a valid websocket close reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeAlias

from voicebot.errors import ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import has_lone_surrogate, load_json, replace_unsafe_chars, shown
from voicebot.protocol_turn import TurnEvent, parse_event_names
from voicebot.types import EntityValue

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "PROTOCOL_VERSION",
    "SUPPORTED_ENCODINGS",
    "SUPPORTED_RATES_HZ",
    "BotSpeechEnd",
    "BotSpeechStart",
    "Clear",
    "ClientMessage",
    "CloseCode",
    "Dtmf",
    "ErrorEvent",
    "Hangup",
    "IntentEvent",
    "Ready",
    "ServerEvent",
    "Start",
    "Stop",
    "TranscriptEvent",
    "Transfer",
    "TurnEvent",
    "close_reason",
    "decode_client_message",
    "decode_server_event",
    "encode_client_message",
    "encode_server_event",
]

PROTOCOL_VERSION = 1
SUPPORTED_ENCODINGS = ("pcm16", "mulaw", "alaw")
SUPPORTED_RATES_HZ = (8000, 16000)
_MAX_ID_CHARS = 128
_DTMF_KEYS = frozenset("0123456789*#ABCD")
MAX_CLOSE_REASON_BYTES = 123
"""Longest websocket close reason, in UTF-8 bytes (RFC 6455: 125-byte control frames)."""


class CloseCode:
    """Websocket close codes the server uses (4xxx are voicebot's own)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    BAD_MESSAGE = 4400
    UNAUTHORIZED = 4401
    """On ``/``: the detected provider is not one the handshake's credentials are for."""
    UNKNOWN_SCENARIO = 4404
    BAD_VERSION = 4406
    TIMEOUT = 4408
    """Nothing (or no audio) arrived within the server's bound: first message, first
    audio after ``start``, or a gap in the audio stream (``no_audio_timeout_s``)."""
    OUT_OF_ORDER = 4409
    UNSUPPORTED_AUDIO = 4415
    BUSY = 4503


def close_reason(text: str) -> str:
    """``text`` fit for a websocket close reason: control characters and line separators
    as spaces (lone surrogates as U+FFFD), cut at a character boundary to at most
    :data:`MAX_CLOSE_REASON_BYTES` UTF-8 bytes.  Idempotent."""
    # A character is at least one byte: no more than the first 123 can fit.
    clean = replace_unsafe_chars(text[:MAX_CLOSE_REASON_BYTES])
    data = clean.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return clean
    return data[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")  # drops a cut character


# --------------------------------------------------------------------- client messages


@dataclass(frozen=True, slots=True)
class Start:
    """First message of a call: who is calling, how audio is encoded, which scenario."""

    type: ClassVar[str] = "start"
    call_id: str
    encoding: str
    sample_rate_hz: int
    scenario: str | None = None
    version: int = PROTOCOL_VERSION
    metadata: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = ()  # opt-in server events (voicebot.protocol_turn)


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Keypad digits pressed by the caller."""

    type: ClassVar[str] = "dtmf"
    digits: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The caller hangs up."""

    type: ClassVar[str] = "stop"
    reason: str = "caller_hangup"


ClientMessage: TypeAlias = Start | Dtmf | Stop


def _need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise ProtocolError(f"'{obj.get('type')}' message lacks '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"'{key}' has the wrong type in '{obj.get('type')}' message")
    return value


def _parse_start(obj: Mapping[str, Any]) -> Start:
    version = obj.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool | float):
        raise ProtocolError(
            f"protocol version {shown(version)} is not supported "
            f"(server speaks {PROTOCOL_VERSION})",
            close_code=CloseCode.BAD_VERSION,
        )
    call_id = _need(obj, "call_id", str)
    if not 0 < len(call_id) <= _MAX_ID_CHARS or has_lone_surrogate(call_id):
        raise ProtocolError(f"call_id must be 1..{_MAX_ID_CHARS} characters of valid Unicode")
    encoding = _need(obj, "encoding", str)
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedAudioError(
            f"encoding {shown(encoding)} is not supported; "
            f"use one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    rate = _need(obj, "sample_rate_hz", int)
    if rate not in SUPPORTED_RATES_HZ:
        raise UnsupportedAudioError(
            f"sample_rate_hz {shown(rate)} is not supported; use one of {SUPPORTED_RATES_HZ}"
        )
    scenario = obj.get("scenario")
    if scenario is not None and not isinstance(scenario, str):
        raise ProtocolError("'scenario' must be a string")
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ProtocolError("'metadata' must be an object of strings")
    return Start(
        call_id=call_id,
        encoding=encoding,
        sample_rate_hz=rate,
        scenario=scenario,
        version=version,
        metadata=dict(metadata),
        events=parse_event_names(obj.get("events", [])),
    )


def _parse_dtmf(obj: Mapping[str, Any]) -> Dtmf:
    digits = _need(obj, "digits", str)
    if not digits or len(digits) > 64 or not set(digits) <= _DTMF_KEYS:
        raise ProtocolError("'digits' must be 1..64 of 0-9 * # A-D")
    return Dtmf(digits=digits)


def _parse_stop(obj: Mapping[str, Any]) -> Stop:
    reason = obj.get("reason", "caller_hangup")
    return Stop(reason=close_reason(reason if isinstance(reason, str) else shown(reason)))


_CLIENT_PARSERS: dict[str, Callable[[Mapping[str, Any]], ClientMessage]] = {
    "start": _parse_start,
    "dtmf": _parse_dtmf,
    "stop": _parse_stop,
}


def _load_object(text: str | bytes) -> dict[str, Any]:
    try:
        obj = load_json(text)
    except ValueError as exc:
        raise ProtocolError(f"control message is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("control message must be a JSON object with a string 'type'")
    return obj


def decode_client_message(text: str) -> ClientMessage:
    """Parse a client's text frame; raises :class:`ProtocolError` on anything invalid."""
    obj = _load_object(text)
    parser = _CLIENT_PARSERS.get(obj["type"])
    if parser is None:
        raise ProtocolError(f"unknown message type {shown(obj['type'])}")
    return parser(obj)


def encode_client_message(message: ClientMessage) -> str:
    """Serialize a client control message to its JSON text frame."""
    body = {k: v for k, v in asdict(message).items() if k != "events" or v}  # 1.0 if unused
    return json.dumps({"type": message.type, **body}, separators=(",", ":"))


# --------------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class Ready:
    type: ClassVar[str] = "ready"
    call_id: str
    scenario: str
    encoding: str
    sample_rate_hz: int
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    type: ClassVar[str] = "transcript"
    turn: int
    text: str
    confidence: float | None = None
    audio_ms: int = 0


@dataclass(frozen=True, slots=True)
class IntentEvent:
    type: ClassVar[str] = "intent"
    turn: int
    intent: str
    confidence: float
    entities: Mapping[str, EntityValue] = field(default_factory=dict)
    source: str = "speech"


@dataclass(frozen=True, slots=True)
class BotSpeechStart:
    type: ClassVar[str] = "speech_start"
    reply: int
    text: str


@dataclass(frozen=True, slots=True)
class BotSpeechEnd:
    """The bot stopped speaking; when ``interrupted``, ``heard_sentences`` and
    ``heard_ms`` say how much of the reply the caller heard (omitted otherwise)."""

    type: ClassVar[str] = "speech_end"
    reply: int
    text: str
    interrupted: bool = False
    audio_ms: int = 0
    heard_sentences: int | None = None
    heard_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Clear:
    """Barge-in: drop every bot audio frame you buffered and have not played."""

    type: ClassVar[str] = "clear"
    reply: int


@dataclass(frozen=True, slots=True)
class Transfer:
    type: ClassVar[str] = "transfer"
    target: str


@dataclass(frozen=True, slots=True)
class Hangup:
    type: ClassVar[str] = "hangup"
    reason: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: ClassVar[str] = "error"
    code: int
    message: str
    fatal: bool = True


ServerEvent: TypeAlias = (
    Ready
    | TranscriptEvent
    | IntentEvent
    | BotSpeechStart
    | BotSpeechEnd
    | Clear
    | Transfer
    | Hangup
    | ErrorEvent
    | TurnEvent
)

_SERVER_TYPES: dict[str, type[ServerEvent]] = {
    cls.type: cls
    for cls in (
        Ready,
        TranscriptEvent,
        IntentEvent,
        BotSpeechStart,
        BotSpeechEnd,
        Clear,
        Transfer,
        Hangup,
        ErrorEvent,
        TurnEvent,
    )
}


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


_OMIT_WHEN_NONE = frozenset({"heard_sentences", "heard_ms"})


def encode_server_event(event: ServerEvent) -> str:
    """Serialize a server event to its JSON text frame (optional fields left out when unset)."""
    body = {k: _clean(v) for k, v in asdict(event).items()
            if v is not None or k not in _OMIT_WHEN_NONE}
    return json.dumps({"type": event.type, **body}, separators=(",", ":"))


def decode_server_event(text: str | bytes) -> ServerEvent:
    """Parse a server text frame (client side); raises :class:`ProtocolError`."""
    obj = _load_object(text)
    cls = _SERVER_TYPES.get(obj.pop("type"))
    if cls is None:
        raise ProtocolError("unknown server event type")
    try:
        return cls(**obj)
    except TypeError as exc:
        raise ProtocolError(f"malformed {cls.type!r} event: {exc}") from exc
