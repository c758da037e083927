"""Exotel AgentStream (Voicebot applet, bidirectional) codec.

Checked against https://developer.exotel.com/docs/agentstream/websocket-protocol and
https://developer.exotel.com/docs/agentstream/stream-voicebot-applet.

Exotel → us, JSON text frames with a snake_case ``event``; counters are strings:

* ``connected`` — ignored.
* ``start`` ``{sequence_number, stream_sid, start: {stream_sid, call_sid,
  account_sid, from, to, custom_parameters, media_format: {encoding:
  "audio/x-raw", sample_rate: "8000", bit_rate: "16"}}}`` → :class:`CallStarted`
  (call id = ``call_sid``; ``custom_parameters`` plus ``from``/``to`` → metadata).
  Audio is raw/slin: 16-bit little-endian mono PCM (8000, or 16000 with
  ``?sample-rate=16000``); 24000 → 4415.
* ``media`` ``{media: {chunk, timestamp, payload}}`` → :class:`AudioIn`.
* ``dtmf`` ``{dtmf: {digit, duration}}`` → :class:`DtmfIn`.
* ``mark`` ``{mark: {name}}`` → :class:`MarkPlayed`.
* ``stop`` ``{stop: {call_sid, account_sid, reason}}`` → :class:`CallStopped`
  with ``reason`` (``stopped`` / ``callended``; made a valid close reason by
  :func:`voicebot.protocol.close_reason`).
* Unknown events are ignored (``[]``).

Us → Exotel: ``media`` ``{event, stream_sid, media: {payload}}``, ``mark``
``{event, stream_sid, mark: {name}}``, ``clear`` ``{event, stream_sid}``.
Exotel wants outbound chunks of 3.2 KB ("100 ms") to 100 KB in multiples of
320 bytes, so bot audio is coalesced into :data:`CHUNK_BYTES` chunks (200 ms of
8 kHz PCM16, 100 ms at 16 kHz); :meth:`ExotelCodec.encode_mark` first flushes
the remainder (padded with silence to a whole chunk), so the server must send a
mark at the end of each reply.  There is no hang-up message:
closing the socket hands the call to the flow's next applet.
"""

from __future__ import annotations

from typing import Any

from voicebot.errors import UnsupportedAudioError
from voicebot.jsonsafe import shown
from voicebot.protocol import close_reason
from voicebot.telephony.base import (
    SILENCE_BYTE,
    AudioIn,
    CallStarted,
    CallStopped,
    DtmfIn,
    EventHandler,
    Frame,
    Inbound,
    MarkPlayed,
    Pacing,
    check_audio,
    check_call_id,
    check_digits,
    decode_base64,
    dispatch_event,
    dumps,
    encode_base64,
    get_field,
    ignore,
    opt_field,
    out_of_order,
    pad_to_multiple,
    parse_counter,
    string_map,
)

__all__ = ["CHUNK_BYTES", "ExotelCodec"]

_NAME = "exotel"
_ENCODINGS = {
    "audio/x-raw": "pcm16",
    "raw/slin": "pcm16",
    "slin": "pcm16",
    "base64": "pcm16",
    "audio/x-mulaw": "mulaw",
    "audio/x-alaw": "alaw",
}
CHUNK_BYTES = 3200
"""Outbound chunk size: Exotel's documented minimum, a multiple of 320 and of 640 bytes."""


class ExotelCodec:
    """Per-call Exotel codec; keeps ``stream_sid`` and coalesces outbound audio."""

    name: str = _NAME
    subprotocol: str | None = None
    pacing: Pacing = "buffered"
    has_marks: bool = True

    def __init__(self) -> None:
        self._stream_sid: str | None = None
        self._chunk_bytes = CHUNK_BYTES
        self._silence = b"\x00"
        self._pending = b""
        self._handlers: dict[str, EventHandler] = {
            "connected": ignore,
            "start": self._on_start,
            "media": self._on_media,
            "dtmf": self._on_dtmf,
            "mark": self._on_mark,
            "stop": self._on_stop,
        }

    # ----------------------------------------------------------------- inbound

    def decode(self, frame: Frame) -> list[Inbound]:
        return dispatch_event(frame, self._handlers, provider=_NAME)

    def _on_start(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'start' message"
        if self._stream_sid is not None:
            raise out_of_order(_NAME, "a second 'start' message")
        stream_sid = opt_field(obj, "stream_sid", str, None, where=where)
        stream_sid = stream_sid or get_field(obj, "start.stream_sid", str, where=where)
        check_call_id(stream_sid, path="stream_sid", where=where)  # echoed in every message
        call_id = get_field(obj, "start.call_sid", str, where=where)
        check_call_id(call_id, path="start.call_sid", where=where)
        mime = opt_field(obj, "start.media_format.encoding", str, "audio/x-raw", where=where)
        raw_rate = opt_field(obj, "start.media_format.sample_rate", (str, int), "8000",
                             where=where)
        rate = parse_counter(raw_rate, path="start.media_format.sample_rate", where=where)
        encoding = _ENCODINGS.get(mime)
        if encoding is None:
            raise UnsupportedAudioError(
                f"{_NAME}: 'start.media_format.encoding' {shown(mime)} is not supported"
            )
        check_audio(encoding, rate, provider=_NAME)
        start = obj["start"]
        metadata = {k: v for k, v in string_map(start).items() if k in ("from", "to")}
        metadata.update(string_map(start.get("custom_parameters")))
        self._stream_sid = stream_sid
        self._silence = SILENCE_BYTE[encoding]
        return [
            CallStarted(
                call_id=call_id,
                encoding=encoding,
                sample_rate_hz=rate,
                scenario=metadata.get("scenario"),
                metadata=metadata,
            )
        ]

    def _require_start(self, event: str) -> None:
        if self._stream_sid is None:
            raise out_of_order(_NAME, f"'{event}' message before 'start'")

    def _on_media(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'media' message"
        self._require_start("media")
        payload = get_field(obj, "media.payload", str, where=where)
        return [AudioIn(decode_base64(payload, path="media.payload", where=where))]

    def _on_dtmf(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'dtmf' message"
        self._require_start("dtmf")
        digit = get_field(obj, "dtmf.digit", str, where=where)
        return [DtmfIn(check_digits(digit, path="dtmf.digit", where=where))]

    def _on_mark(self, obj: dict[str, Any]) -> list[Inbound]:
        self._require_start("mark")
        return [MarkPlayed(get_field(obj, "mark.name", str, where=f"{_NAME} 'mark' message"))]

    def _on_stop(self, obj: dict[str, Any]) -> list[Inbound]:
        self._require_start("stop")
        reason = opt_field(obj, "stop.reason", str, "stop", where=f"{_NAME} 'stop' message")
        return [CallStopped(close_reason(reason) or "stop")]

    # ----------------------------------------------------------------- outbound

    def _sid(self) -> str:
        if self._stream_sid is None:
            raise out_of_order(_NAME, "cannot send to Exotel before its 'start' message")
        return self._stream_sid

    def _media(self, chunk: bytes) -> str:
        payload = encode_base64(chunk)
        return dumps({"event": "media", "stream_sid": self._sid(), "media": {"payload": payload}})

    def encode_audio(self, data: bytes) -> list[Frame]:
        self._sid()
        buffered = self._pending + data
        whole = len(buffered) - len(buffered) % self._chunk_bytes
        self._pending = buffered[whole:]
        size = self._chunk_bytes
        return [self._media(buffered[i : i + size]) for i in range(0, whole, size)]

    def encode_mark(self, name: str) -> list[Frame]:
        if not name:
            raise ValueError("a mark needs a name")
        out: list[Frame] = []
        if self._pending:
            out.append(self._media(pad_to_multiple(self._pending, self._chunk_bytes,
                                                   self._silence)))
            self._pending = b""
        out.append(dumps({"event": "mark", "stream_sid": self._sid(), "mark": {"name": name}}))
        return out

    def encode_clear(self) -> list[Frame]:
        self._pending = b""
        return [dumps({"event": "clear", "stream_sid": self._sid()})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        self._pending = b""
        return []
