"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``) codec.

Checked against https://www.twilio.com/docs/voice/media-streams/websocket-messages.

Twilio → us, JSON text frames with a camelCase ``event``:

* ``connected`` ``{protocol, version}`` — first message; ignored.
* ``start`` ``{sequenceNumber, streamSid, start: {streamSid, accountSid, callSid,
  tracks, customParameters, mediaFormat: {encoding: "audio/x-mulaw",
  sampleRate: 8000, channels: 1}}}`` → :class:`CallStarted` (call id = ``callSid``;
  ``customParameters`` → metadata, its ``scenario`` entry → scenario).
* ``media`` ``{media: {track, chunk, timestamp, payload}}`` (counters are strings)
  → :class:`AudioIn`; ``outbound``-track media (``both_tracks``) is ignored.
* ``dtmf`` ``{dtmf: {track: "inbound_track", digit}}`` → :class:`DtmfIn`.
* ``mark`` ``{mark: {name}}`` → :class:`MarkPlayed` (also sent for marks a
  ``clear`` dropped).
* ``stop`` ``{stop: {accountSid, callSid}}`` → :class:`CallStopped` ``"stop"``.
* Any other ``event`` is ignored (``[]``) for forward compatibility.

Us → Twilio: ``media`` ``{event, streamSid, media: {payload}}`` with base64
μ-law 8 kHz, one message per 20 ms (what Twilio itself sends); ``mark``
``{event, streamSid, mark: {name}}``; ``clear`` ``{event, streamSid}``.  Twilio
has no hang-up message: closing the socket ends ``<Connect><Stream>`` and the
call continues with the next TwiML verb (none: the call ends).
"""

from __future__ import annotations

from typing import Any

from voicebot.errors import UnsupportedAudioError
from voicebot.jsonsafe import shown
from voicebot.telephony.base import (
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
    chunked,
    decode_base64,
    dispatch_event,
    dumps,
    encode_base64,
    frame_bytes_20ms,
    get_field,
    ignore,
    opt_field,
    out_of_order,
    string_map,
)

__all__ = ["TwilioCodec"]

_NAME = "twilio"
_ENCODINGS = {"audio/x-mulaw": "mulaw"}


class TwilioCodec:
    """Per-call Twilio Media Streams codec (keeps the ``streamSid`` for replies)."""

    name: str = _NAME
    subprotocol: str | None = None
    pacing: Pacing = "buffered"
    has_marks: bool = True

    def __init__(self) -> None:
        self._stream_sid: str | None = None
        self._frame_bytes = frame_bytes_20ms("mulaw", 8000)
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
        stream_sid = opt_field(obj, "start.streamSid", str, None, where=where)
        stream_sid = stream_sid or get_field(obj, "streamSid", str, where=where)
        check_call_id(stream_sid, path="streamSid", where=where)  # echoed in every message
        call_sid = check_call_id(
            get_field(obj, "start.callSid", str, where=where), path="start.callSid", where=where
        )
        mime = get_field(obj, "start.mediaFormat.encoding", str, where=where)
        rate = get_field(obj, "start.mediaFormat.sampleRate", int, where=where)
        channels = opt_field(obj, "start.mediaFormat.channels", int, 1, where=where)
        encoding = _ENCODINGS.get(mime)
        if encoding is None or channels != 1 or rate != 8000:
            raise UnsupportedAudioError(
                f"{_NAME}: 'start.mediaFormat' {shown(mime)} {shown(rate)} Hz "
                f"x{shown(channels)} is not supported (Twilio streams audio/x-mulaw, 8000 Hz, mono)"
            )
        check_audio(encoding, rate, provider=_NAME)
        params = string_map(opt_field(obj, "start.customParameters", dict, {}, where=where))
        self._stream_sid = stream_sid
        return [
            CallStarted(
                call_id=call_sid,
                encoding=encoding,
                sample_rate_hz=rate,
                scenario=params.get("scenario"),
                metadata=params,
            )
        ]

    def _require_start(self, event: str) -> None:
        if self._stream_sid is None:
            raise out_of_order(_NAME, f"'{event}' message before 'start'")

    def _on_media(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'media' message"
        self._require_start("media")
        if opt_field(obj, "media.track", str, "inbound", where=where) == "outbound":
            return []
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
        return [CallStopped("stop")]

    # ----------------------------------------------------------------- outbound

    def _sid(self) -> str:
        if self._stream_sid is None:
            raise out_of_order(_NAME, "cannot send to Twilio before its 'start' message")
        return self._stream_sid

    def encode_audio(self, data: bytes) -> list[Frame]:
        sid = self._sid()
        return [
            dumps({"event": "media", "streamSid": sid, "media": {"payload": encode_base64(part)}})
            for part in chunked(data, self._frame_bytes)
        ]

    def encode_mark(self, name: str) -> list[Frame]:
        if not name:
            raise ValueError("a mark needs a name")
        return [dumps({"event": "mark", "streamSid": self._sid(), "mark": {"name": name}})]

    def encode_clear(self) -> list[Frame]:
        return [dumps({"event": "clear", "streamSid": self._sid()})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return []
