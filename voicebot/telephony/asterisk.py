"""Asterisk ``chan_websocket`` (ARI external media / ``Dial(WebSocket/...)``) codec.

Checked against docs.asterisk.org "Configuration/Channel-Drivers/WebSocket"
(asterisk/documentation sources) and ``channels/chan_websocket.c`` (asterisk/asterisk).

Control messages are TEXT frames, media BINARY frames.  Asterisk speaks either
the legacy plain-text control format (``EVENT key:value ...``) or, from
20.18/22.8/23.2 with ``f(json)``, JSON (``{"event": ...}`` / ``{"command": ...}``);
this codec answers in the format the ``MEDIA_START`` came in.

Asterisk → us:

* ``MEDIA_START`` ``connection_id channel channel_id format optimal_frame_size
  ptime [channel_variables]`` → :class:`CallStarted` (call id = ``channel_id``,
  else ``connection_id``; ``format`` ulaw → mulaw, alaw → alaw, slin → pcm16 8 kHz,
  slin16 → pcm16 16 kHz, others → 4415; the channel variable
  ``VOICEBOT_SCENARIO`` → scenario).
* Binary frames (raw media, e.g. 160 bytes of ulaw every 20 ms) → :class:`AudioIn`.
* ``DTMF_END digit:5`` → :class:`DtmfIn`.
* ``MEDIA_XOFF`` / ``MEDIA_XON`` (queue above ~900 / below ~800 frames) →
  :class:`FlowControl` ``paused=True`` / ``False``.
* ``MEDIA_MARK_PROCESSED <correlation_id>`` → :class:`MarkPlayed`.
* ``STATUS``, ``QUEUE_DRAINED``, ``MEDIA_BUFFERING_COMPLETED``, ``ERROR`` (Asterisk
  rejecting a command) and unknown events are ignored (``[]``).  Asterisk sends
  no hang-up event: the socket closes.

Us → Asterisk: binary media in whole multiples of ``optimal_frame_size`` (the
last frame padded with silence; Asterisk drops partial frames), at most 65500
bytes per message.  ``optimal_frame_size`` must be whole samples, from one
sample to :data:`MAX_FRAME_MS` of audio (8000 bytes of ulaw, 32000 of slin16);
anything else, or more than 19 digits, is a ProtocolError (4400).
``MARK_MEDIA <name>``; ``FLUSH_MEDIA`` (barge-in); ``HANGUP``.  Text commands are
limited to 128 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voicebot.errors import ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import shown
from voicebot.telephony.base import (
    SILENCE_BYTE,
    AudioIn,
    CallStarted,
    DtmfIn,
    FlowControl,
    Frame,
    Inbound,
    MarkPlayed,
    Pacing,
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

__all__ = [
    "MAX_COMMAND_BYTES",
    "MAX_FRAME_MS",
    "MAX_MEDIA_BYTES",
    "AsteriskCodec",
    "frame_size_bounds",
    "parse_plain",
]

_NAME = "asterisk"
_FORMATS = {
    "ulaw": ("mulaw", 8000),
    "alaw": ("alaw", 8000),
    "slin": ("pcm16", 8000),
    "slin16": ("pcm16", 16000),
}
MAX_MEDIA_BYTES = 65500
"""Largest websocket message Asterisk accepts; bigger ones hang the call up."""
MAX_COMMAND_BYTES = 128
"""Longest text command chan_websocket reads (longer ones are dropped)."""
MAX_FRAME_MS = 1000
"""Longest ``optimal_frame_size`` accepted, as audio (Asterisk's own are 10-100 ms)."""
_REST = "_rest"


def frame_size_bounds(encoding: str, sample_rate_hz: int) -> tuple[int, int, int]:
    """``(smallest, largest, step)`` bytes of an acceptable ``optimal_frame_size``: whole
    samples, from one sample to :data:`MAX_FRAME_MS` of audio."""
    width = 2 if encoding == "pcm16" else 1
    return width, sample_rate_hz * width * MAX_FRAME_MS // 1000, width


def parse_plain(text: str) -> tuple[str, dict[str, str]]:
    """``"EVENT k:v k:v"`` → (``EVENT``, fields); the text after the event is ``_rest``."""
    event, _, rest = text.strip().partition(" ")
    fields = {_REST: rest.strip()}
    for token in rest.split():
        key, sep, value = token.partition(":")
        if sep:
            fields[key] = value
    return event, fields


class AsteriskCodec:
    """Per-call chan_websocket codec; mirrors the control format of ``MEDIA_START``."""

    name: str = _NAME
    subprotocol: str | None = None
    pacing: Pacing = "buffered"
    has_marks: bool = True

    def __init__(self) -> None:
        self._started: CallStarted | None = None
        self._json = True
        self._frame_bytes = 0
        self._handlers: dict[str, Callable[[Mapping[str, Any]], list[Inbound]]] = {
            "MEDIA_START": self._on_media_start,
            "DTMF_END": self._on_dtmf,
            "MEDIA_XOFF": lambda _: [FlowControl(paused=True)],
            "MEDIA_XON": lambda _: [FlowControl(paused=False)],
            "MEDIA_MARK_PROCESSED": self._on_mark,
        }

    # ----------------------------------------------------------------- inbound

    def decode(self, frame: Frame) -> list[Inbound]:
        if isinstance(frame, bytes):
            if self._started is None:
                raise out_of_order(_NAME, "media before MEDIA_START")
            return [AudioIn(frame)]
        is_json = frame.lstrip().startswith("{")
        if is_json:
            obj: Mapping[str, Any] = parse_json_object(frame, provider=_NAME)
            event = get_field(obj, "event", str, where=f"{_NAME} message")
        else:
            event, obj = parse_plain(frame)
        if self._started is None:
            if event != "MEDIA_START":
                raise out_of_order(_NAME, f"{event[:40] or 'empty message'} before MEDIA_START")
            self._json = is_json
        handler = self._handlers.get(event)
        return handler(obj) if handler is not None else []

    def _on_media_start(self, obj: Mapping[str, Any]) -> list[Inbound]:
        where = f"{_NAME} MEDIA_START"
        if self._started is not None:
            raise out_of_order(_NAME, "a second MEDIA_START")
        fmt = get_field(obj, "format", str, where=where)
        if fmt not in _FORMATS:
            raise UnsupportedAudioError(
                f"{_NAME}: format {shown(fmt)} is not supported (ulaw, alaw, slin, slin16)"
            )
        encoding, rate = _FORMATS[fmt]
        size = opt_field(obj, "optimal_frame_size", (int, str), None, where=where)
        self._frame_bytes = (
            frame_bytes_20ms(encoding, rate)
            if size is None
            else parse_counter(size, path="optimal_frame_size", where=where)
        )
        low, high, step = frame_size_bounds(encoding, rate)
        if not low <= self._frame_bytes <= high or self._frame_bytes % step:
            raise ProtocolError(
                f"{where}: 'optimal_frame_size' must be {low}..{high} bytes (whole samples, "
                f"at most {MAX_FRAME_MS} ms of {fmt}), got {shown(self._frame_bytes)}"
            )
        fields = {k: v for k, v in string_map(obj).items()
                  if k in ("channel", "channel_id", "connection_id")}
        call_id = fields.get("channel_id") or get_field(obj, "connection_id", str, where=where)
        check_call_id(call_id, path="channel_id", where=where)
        variables = string_map(obj.get("channel_variables"))
        self._started = CallStarted(
            call_id=call_id,
            encoding=encoding,
            sample_rate_hz=rate,
            scenario=variables.get("VOICEBOT_SCENARIO"),
            metadata={**variables, **fields},
        )
        return [self._started]

    def _on_dtmf(self, obj: Mapping[str, Any]) -> list[Inbound]:
        where = f"{_NAME} DTMF_END"
        digit = get_field(obj, "digit", str, where=where)
        return [DtmfIn(check_digits(digit, path="digit", where=where))]

    def _on_mark(self, obj: Mapping[str, Any]) -> list[Inbound]:
        where = f"{_NAME} MEDIA_MARK_PROCESSED"
        name = opt_field(obj, "correlation_id" if self._json else _REST, str, "", where=where)
        return [MarkPlayed(name)] if name else []

    # ----------------------------------------------------------------- outbound

    def _command(self, command: str, argument: str | None = None) -> str:
        if self._started is None:
            raise out_of_order(_NAME, f"cannot send {command} before MEDIA_START")
        if self._json:
            body = {"command": command}
            if argument is not None:
                body["correlation_id"] = argument
            text = dumps(body)
        else:
            text = command if argument is None else f"{command} {argument}"
        if len(text.encode()) > MAX_COMMAND_BYTES or "\n" in text:
            raise ValueError(f"Asterisk command {text!r} is over {MAX_COMMAND_BYTES} bytes")
        return text

    def encode_audio(self, data: bytes) -> list[Frame]:
        started = self._started
        if started is None:
            raise out_of_order(_NAME, "cannot send media before MEDIA_START")
        size = self._frame_bytes
        data = pad_to_multiple(data, size, SILENCE_BYTE[started.encoding])
        return list(chunked(data, MAX_MEDIA_BYTES // size * size))

    def encode_mark(self, name: str) -> list[Frame]:
        if not name or name != name.strip():
            raise ValueError(f"mark name {name!r} must be non-empty without outer spaces")
        return [self._command("MARK_MEDIA", name)]

    def encode_clear(self) -> list[Frame]:
        return [self._command("FLUSH_MEDIA")]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return [self._command("HANGUP")]
