"""Vonage Voice API websocket (NCCO ``connect`` to a ``websocket`` endpoint) codec.

Checked against https://developer.vonage.com/en/voice/voice-api/concepts/websockets
(the 2021 revision is in Vonage's developer-portal sources; the current page adds
the ``clear`` and ``notify`` actions, corroborated here by open-source integrations).

Vonage → us:

* First, a JSON text frame ``{"event": "websocket:connected", "content-type":
  "audio/l16;rate=16000", ...}``; the NCCO endpoint's ``headers`` are flattened
  into it → :class:`CallStarted` (pcm16 at the ``rate``; call id from the
  ``call_id``/``uuid``/``call-id``/``conversation_uuid`` header, else a
  per-codec placeholder; string headers → metadata, ``scenario`` → scenario).
* Binary frames: 16-bit little-endian linear PCM, 20 ms each → :class:`AudioIn`.
* ``{"event": "websocket:dtmf", "digit": "5", "duration": 260}`` → :class:`DtmfIn`.
* ``{"event": "websocket:notify", "payload": {"name": ...}}`` (the echo of our
  ``notify``) → :class:`MarkPlayed`; ``websocket:cleared`` and unknown events → ``[]``.

Us → Vonage: binary frames of exactly 20 ms (320 bytes at 8 kHz, 640 at 16 kHz;
the last zero-padded) which Vonage buffers and plays in order; marks are
``{"action": "notify", "payload": {"name": ...}}`` and barge-in is
``{"action": "clear"}``.  No hang-up message: closing the socket ends the
``connect`` action (and the call, when it is the NCCO's last action).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicebot.errors import ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import shown
from voicebot.telephony.base import (
    AudioIn,
    CallStarted,
    DtmfIn,
    Frame,
    Inbound,
    MarkPlayed,
    Pacing,
    check_audio,
    check_call_id,
    check_digits,
    chunked,
    dumps,
    frame_bytes_20ms,
    get_field,
    opt_field,
    out_of_order,
    pad_to_multiple,
    parse_counter,
    parse_json_object,
    string_map,
)

__all__ = ["VonageCodec", "parse_content_type"]

_NAME = "vonage"
_CALL_ID_HEADERS = ("call_id", "uuid", "call-id", "conversation_uuid")
_RESERVED = frozenset({"event", "content-type"})


def parse_content_type(value: str) -> int:
    """The sample rate of an ``audio/l16;rate=N`` content type; ProtocolError/4415 otherwise."""
    kind, *params = (part.strip() for part in value.split(";"))
    options: dict[str, str] = {}
    for param in params:
        key, _, val = param.partition("=")
        options[key.strip().lower()] = val.strip()
    where = f"{_NAME} 'websocket:connected' message"
    if kind.lower() != "audio/l16":
        raise UnsupportedAudioError(f"{_NAME}: content-type {shown(value)} is not audio/l16")
    if "rate" not in options:
        raise ProtocolError(f"{where}: 'content-type' lacks 'rate'")
    return parse_counter(options["rate"], path="content-type", where=where)


class VonageCodec:
    """Per-call Vonage codec: binary PCM16 frames plus JSON control messages."""

    name: str = _NAME
    subprotocol: str | None = None
    pacing: Pacing = "buffered"
    has_marks: bool = True

    def __init__(self) -> None:
        self._started: CallStarted | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Inbound]]] = {
            "websocket:connected": self._on_connected,
            "websocket:dtmf": self._on_dtmf,
            "websocket:notify": self._on_notify,
        }

    # ----------------------------------------------------------------- inbound

    def decode(self, frame: Frame) -> list[Inbound]:
        if isinstance(frame, bytes):
            if self._started is None:
                raise out_of_order(_NAME, "audio before 'websocket:connected'")
            return [AudioIn(frame)]
        obj = parse_json_object(frame, provider=_NAME)
        event = get_field(obj, "event", str, where=f"{_NAME} message")
        handler = self._handlers.get(event)
        return handler(obj) if handler is not None else []

    def _on_connected(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'websocket:connected' message"
        if self._started is not None:
            raise out_of_order(_NAME, "a second 'websocket:connected' message")
        rate = parse_content_type(get_field(obj, "content-type", str, where=where))
        check_audio("pcm16", rate, provider=_NAME)
        headers = {k: v for k, v in string_map(obj).items() if k not in _RESERVED}
        call_id = next((headers[k] for k in _CALL_ID_HEADERS if headers.get(k)), None)
        if call_id is None:
            call_id = f"vonage-{id(self):x}"
        check_call_id(call_id, path="call_id", where=where)
        self._started = CallStarted(
            call_id=call_id,
            encoding="pcm16",
            sample_rate_hz=rate,
            scenario=headers.get("scenario"),
            metadata=headers,
        )
        return [self._started]

    def _on_dtmf(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'websocket:dtmf' message"
        if self._started is None:
            raise out_of_order(_NAME, "'websocket:dtmf' before 'websocket:connected'")
        digit = get_field(obj, "digit", str, where=where)
        return [DtmfIn(check_digits(digit, path="digit", where=where))]

    def _on_notify(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'websocket:notify' message"
        name = opt_field(obj, "payload.name", str, None, where=where)
        return [MarkPlayed(name)] if name else []

    # ----------------------------------------------------------------- outbound

    def encode_audio(self, data: bytes) -> list[Frame]:
        if self._started is None:
            raise out_of_order(_NAME, "cannot send audio before 'websocket:connected'")
        if not data:
            return []
        size = frame_bytes_20ms("pcm16", self._started.sample_rate_hz)
        return list(chunked(pad_to_multiple(data, size, b"\x00"), size))

    def encode_mark(self, name: str) -> list[Frame]:
        if not name:
            raise ValueError("a mark needs a name")
        return [dumps({"action": "notify", "payload": {"name": name}})]

    def encode_clear(self) -> list[Frame]:
        return [dumps({"action": "clear"})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return []
