"""The provider-codec interface, the normalized call events, and the lazy registry.

Every telephony provider streams a call over a websocket in its own message
shapes.  A *provider codec* is a pure, per-call, stateful translator between
those shapes and a handful of normalized events, so the server can drive every
provider through the same :class:`voicebot.session.Session`:

* :meth:`ProviderCodec.decode` turns one websocket message (``str`` text frame
  or ``bytes`` binary frame) into zero or more :data:`Inbound` events;
* ``encode_*`` turn bot audio, marks, barge-in flushes and hang-ups into the
  provider's websocket messages.

Codecs never do I/O, never read a clock and never log.  Malformed input raises
:class:`voicebot.errors.ProtocolError` (close code 4400; 4409 for messages out
of order; 4415, via :class:`~voicebot.errors.UnsupportedAudioError`, for audio
voicebot does not serve) and nothing else, whatever the frame: JSON is parsed
by :func:`voicebot.jsonsafe.load_json` (nesting at most 32 deep), counters are
at most :data:`MAX_COUNTER_DIGITS` digits, identifiers 1..128 characters of
valid Unicode (control characters are kept: the log layer escapes them).  The
helpers below are shared by the provider modules.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias, cast

from voicebot.errors import ConfigError, ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import has_lone_surrogate, load_json, shown
from voicebot.protocol import SUPPORTED_ENCODINGS, SUPPORTED_RATES_HZ, CloseCode

__all__ = [
    "MAX_COUNTER",
    "MAX_COUNTER_DIGITS",
    "PROVIDERS",
    "SILENCE_BYTE",
    "AudioIn",
    "CallStarted",
    "CallStopped",
    "DtmfIn",
    "EventHandler",
    "FlowControl",
    "Frame",
    "Inbound",
    "MarkPlayed",
    "Pacing",
    "ProviderCodec",
    "check_audio",
    "check_call_id",
    "check_digits",
    "chunked",
    "codec_for",
    "decode_base64",
    "dispatch_event",
    "dumps",
    "encode_base64",
    "frame_bytes_20ms",
    "get_field",
    "ignore",
    "opt_field",
    "out_of_order",
    "pad_to_multiple",
    "parse_counter",
    "parse_json_object",
    "string_map",
]

# --------------------------------------------------------------------- normalized events


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The provider's start/metadata message: who is calling and how audio is encoded."""

    call_id: str
    encoding: str  # "mulaw" | "alaw" | "pcm16" (little-endian)
    sample_rate_hz: int  # 8000 | 16000
    scenario: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Caller audio in :attr:`CallStarted.encoding` (already base64-decoded etc.)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DtmfIn:
    """Keypad digits pressed by the caller (``0-9 * # A-D``)."""

    digits: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The provider reports that a mark we sent has been played (or cleared)."""

    name: str


@dataclass(frozen=True, slots=True)
class CallStopped:
    """The provider ended the stream (caller hung up, stream stopped)."""

    reason: str


@dataclass(frozen=True, slots=True)
class FlowControl:
    """Asterisk-style flow control: ``paused`` means stop sending media until resumed."""

    paused: bool


Inbound: TypeAlias = CallStarted | AudioIn | DtmfIn | MarkPlayed | CallStopped | FlowControl
Frame: TypeAlias = str | bytes
Pacing: TypeAlias = Literal["buffered", "realtime"]


class ProviderCodec(Protocol):
    """One call's translator between a provider's websocket messages and voicebot."""

    name: str
    subprotocol: str | None
    pacing: Pacing
    has_marks: bool

    def decode(self, frame: Frame) -> list[Inbound]:
        """Events carried by one websocket message; raises ProtocolError when malformed."""
        ...

    def encode_audio(self, data: bytes) -> list[Frame]:
        """Messages carrying bot audio, already in the call's encoding and rate."""
        ...

    def encode_mark(self, name: str) -> list[Frame]:
        """Messages asking to be told when the audio sent so far has played."""
        ...

    def encode_clear(self) -> list[Frame]:
        """Messages flushing bot audio the provider buffered (barge-in)."""
        ...

    def encode_hangup(self, reason: str) -> list[Frame]:
        """Messages ending the call; ``[]`` where hanging up is closing the socket."""
        ...


# --------------------------------------------------------------------- registry

PROVIDERS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "twilio": ("voicebot.telephony.twilio", "TwilioCodec"),
    "vonage": ("voicebot.telephony.vonage", "VonageCodec"),
    "telnyx": ("voicebot.telephony.telnyx", "TelnyxCodec"),
    "exotel": ("voicebot.telephony.exotel", "ExotelCodec"),
    "freeswitch": ("voicebot.telephony.freeswitch", "FreeswitchCodec"),
    "jambonz": ("voicebot.telephony.jambonz", "JambonzCodec"),
    "asterisk": ("voicebot.telephony.asterisk", "AsteriskCodec"),
})
"""Provider name → (module, class); modules are imported on first use only."""


def codec_for(name: str) -> ProviderCodec:
    """A new codec for one call with provider ``name``; raises ConfigError if unknown."""
    try:
        module_name, class_name = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown telephony provider {name!r}; known: {known}") from None
    module = importlib.import_module(module_name)
    return cast(ProviderCodec, getattr(module, class_name)())


# --------------------------------------------------------------------- shared helpers

SILENCE_BYTE: Mapping[str, bytes] = MappingProxyType(
    {"mulaw": b"\xff", "alaw": b"\xd5", "pcm16": b"\x00"}
)
"""One byte of digital silence per encoding (G.711 codes of 0; PCM16 bytes of 0)."""

_DTMF_KEYS = frozenset("0123456789*#ABCD")
_MAX_CALL_ID_CHARS = 128
_MISSING = object()
MAX_COUNTER_DIGITS = 19
"""Longest decimal counter accepted (sequence numbers, chunks, rates, sizes)."""
MAX_COUNTER = 2**63 - 1
"""Largest counter accepted: what fits a signed 64-bit integer."""


def dumps(obj: Mapping[str, Any]) -> str:
    """Compact JSON text frame."""
    return json.dumps(obj, separators=(",", ":"))


def out_of_order(provider: str, what: str) -> ProtocolError:
    """A ProtocolError (4409) for a message that came out of order."""
    return ProtocolError(f"{provider}: {what}", close_code=CloseCode.OUT_OF_ORDER)


EventHandler: TypeAlias = "Callable[[dict[str, Any]], list[Inbound]]"


def ignore(obj: dict[str, Any]) -> list[Inbound]:
    """The handler of a harmless message that carries nothing for the call."""
    return []


def dispatch_event(
    frame: Frame, handlers: Mapping[str, EventHandler], *, provider: str, key: str = "event"
) -> list[Inbound]:
    """Parse a JSON message and run the handler its ``key`` field names; an unknown event
    is harmless and ignored (each codec's docstring lists what it ignores)."""
    obj = parse_json_object(frame, provider=provider)
    event = get_field(obj, key, str, where=f"{provider} message")
    return handlers.get(event, ignore)(obj)


def parse_json_object(frame: Frame, *, provider: str) -> dict[str, Any]:
    """The JSON object in a text frame; ProtocolError for binary frames or bad JSON
    (including nesting deeper than :data:`voicebot.jsonsafe.MAX_JSON_DEPTH`)."""
    if isinstance(frame, bytes):
        raise ProtocolError(f"{provider}: binary frame where a JSON text message was expected")
    try:
        obj = load_json(frame)
    except ValueError as exc:
        raise ProtocolError(f"{provider}: text message is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{provider}: text message must be a JSON object")
    return obj


def _lookup(obj: Mapping[str, Any], path: str) -> Any:
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _check_kind(value: Any, kind: type | tuple[type, ...], path: str, where: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{where}: '{path}' has the wrong type")
    return value


def get_field(
    obj: Mapping[str, Any], path: str, kind: type | tuple[type, ...], *, where: str
) -> Any:
    """The value at dotted ``path``; ProtocolError naming the field when absent or mistyped."""
    value = _lookup(obj, path)
    if value is _MISSING or value is None:
        raise ProtocolError(f"{where} lacks '{path}'")
    return _check_kind(value, kind, path, where)


def opt_field(
    obj: Mapping[str, Any], path: str, kind: type | tuple[type, ...], default: Any, *, where: str
) -> Any:
    """Like :func:`get_field`, but ``default`` when the field is absent or null."""
    value = _lookup(obj, path)
    if value is _MISSING or value is None:
        return default
    return _check_kind(value, kind, path, where)


def parse_counter(value: Any, *, path: str, where: str) -> int:
    """A sequence number / chunk / timestamp / rate / size: a decimal string (as sent) of
    ASCII digits, or an integer; 0..:data:`MAX_COUNTER` (ProtocolError otherwise)."""
    number: int | None = None
    if (isinstance(value, str) and 0 < len(value) <= MAX_COUNTER_DIGITS
            and value.isascii() and value.isdigit()):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None or not 0 <= number <= MAX_COUNTER:
        raise ProtocolError(
            f"{where}: '{path}' must be a non-negative decimal string of at most "
            f"{MAX_COUNTER_DIGITS} digits (up to {MAX_COUNTER})"
        )
    return number


def decode_base64(value: str, *, path: str, where: str) -> bytes:
    """Strict base64 (standard alphabet, padded); ProtocolError naming the field."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{where}: '{path}' is not valid base64") from exc


def encode_base64(data: bytes) -> str:
    """Standard padded base64 text."""
    return base64.b64encode(data).decode("ascii")


def check_digits(digits: str, *, path: str, where: str) -> str:
    """``digits`` if it is 1..64 keys of ``0-9 * # A-D``; ProtocolError otherwise."""
    if not 0 < len(digits) <= 64 or not set(digits) <= _DTMF_KEYS:
        raise ProtocolError(
            f"{where}: '{path}' must be 1..64 of 0-9 * # A-D, got {shown(digits)}"
        )
    return digits


def check_call_id(call_id: str, *, path: str, where: str) -> str:
    """``call_id`` (or another identifier: a stream sid) if it is 1..128 characters with no
    lone surrogate (no UTF-8 encoding); ProtocolError otherwise."""
    if not 0 < len(call_id) <= _MAX_CALL_ID_CHARS or has_lone_surrogate(call_id):
        raise ProtocolError(
            f"{where}: '{path}' must be 1..{_MAX_CALL_ID_CHARS} characters of valid Unicode"
        )
    return call_id


def check_audio(encoding: str, sample_rate_hz: int, *, provider: str) -> None:
    """UnsupportedAudioError (4415) unless voicebot serves this encoding and rate."""
    if encoding not in SUPPORTED_ENCODINGS or sample_rate_hz not in SUPPORTED_RATES_HZ:
        raise UnsupportedAudioError(
            f"{provider}: {encoding} at {shown(sample_rate_hz)} Hz is not supported; "
            f"voicebot serves {', '.join(SUPPORTED_ENCODINGS)} at {SUPPORTED_RATES_HZ} Hz"
        )


def string_map(obj: Any) -> dict[str, str]:
    """The string-valued (or scalar, stringified) entries of a JSON object; ``{}`` otherwise."""
    if not isinstance(obj, Mapping):
        return {}
    out: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, bool):
            out[str(key)] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[str(key)] = str(value)
    return out


def frame_bytes_20ms(encoding: str, sample_rate_hz: int) -> int:
    """Bytes of one 20 ms mono frame."""
    return sample_rate_hz // 50 * (2 if encoding == "pcm16" else 1)


def chunked(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def pad_to_multiple(data: bytes, size: int, silence: bytes) -> bytes:
    """``data`` followed by silence up to the next multiple of ``size`` bytes."""
    short = -len(data) % size
    return data + silence * short
