"""Telnyx Media Streaming (Call Control ``stream_url``, bidirectional RTP mode) codec.

Checked against https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming
and the AsyncAPI page .../api-reference/websockets/stream-call-media-over-websocket.

Telnyx → us, JSON text frames with a snake_case ``event``; counters are strings:

* ``connected`` ``{version}`` — ignored.
* ``start`` ``{sequence_number, stream_id, start: {call_control_id, call_session_id,
  from, to, client_state, custom_parameters, media_format: {encoding, sample_rate,
  channels}}}`` → :class:`CallStarted` (call id = ``call_control_id``).  Encodings:
  ``PCMU`` → mulaw, ``PCMA`` → alaw, ``L16`` → pcm16 (RTP payload, network byte
  order: swapped to little-endian both ways); G722/OPUS/AMR-WB → 4415.
* ``media`` ``{sequence_number, media: {track, chunk, timestamp, payload}}`` →
  :class:`AudioIn`; ``dtmf`` ``{dtmf: {digit}}`` → :class:`DtmfIn`; ``mark``
  ``{mark: {name}}`` → :class:`MarkPlayed`.  Telnyx does not guarantee order,
  so these are delivered in ``sequence_number`` order (every message takes a
  number): a message waits for the earlier ones, at most :data:`MAX_REORDER`
  messages are held (then the gap is skipped), duplicates and stragglers whose
  number was skipped are dropped.  ``outbound``-track media only takes its number.
* ``stop`` → everything held, in order, then :class:`CallStopped` ``"stop"``.
* ``error`` ``{payload|error: {code, title, detail}}`` (Telnyx rejecting a frame
  we sent) and unknown events are ignored (``[]``).

Us → Telnyx: ``media`` ``{event, media: {payload}}`` in 20 ms chunks (the last
padded with silence: chunks must hold 20 ms to 30 s); ``mark`` ``{event, mark:
{name}}``; ``clear`` ``{event}``.  No hang-up message (Call Control REST hangs up).
"""

from __future__ import annotations

from typing import Any

from voicebot.errors import ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import shown
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
    pad_to_multiple,
    parse_counter,
    string_map,
)

__all__ = ["MAX_REORDER", "TelnyxCodec"]

_NAME = "telnyx"
_ENCODINGS = {
    "PCMU": "mulaw",
    "audio/x-mulaw": "mulaw",
    "PCMA": "alaw",
    "audio/x-alaw": "alaw",
    "L16": "pcm16",
}
MAX_REORDER = 8
"""Messages held while waiting for a missing ``sequence_number`` (≈160 ms of media)."""


def _swap16(data: bytes) -> bytes:
    """Swap the bytes of every 16-bit sample (big-endian ↔ little-endian)."""
    out = bytearray(len(data))
    out[0::2] = data[1::2]
    out[1::2] = data[0::2]
    return bytes(out)


class TelnyxCodec:
    """Per-call Telnyx media-streaming codec with inbound re-ordering."""

    name: str = _NAME
    subprotocol: str | None = None
    pacing: Pacing = "buffered"
    has_marks: bool = True

    def __init__(self) -> None:
        self._started: CallStarted | None = None
        self._big_endian = False
        self._expected: int | None = None
        self._held: dict[int, list[Inbound]] = {}
        self._handlers: dict[str, EventHandler] = {
            "connected": ignore,
            "start": self._on_start,
            "media": self._on_media,
            "dtmf": self._on_dtmf,
            "mark": self._on_mark,
            "stop": self._on_stop,
            "error": ignore,
        }

    # ----------------------------------------------------------------- inbound

    def decode(self, frame: Frame) -> list[Inbound]:
        return dispatch_event(frame, self._handlers, provider=_NAME)

    def _on_start(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'start' message"
        if self._started is not None:
            raise out_of_order(_NAME, "a second 'start' message")
        get_field(obj, "stream_id", str, where=where)
        call_id = get_field(obj, "start.call_control_id", str, where=where)
        check_call_id(call_id, path="start.call_control_id", where=where)
        codec = get_field(obj, "start.media_format.encoding", str, where=where)
        rate = get_field(obj, "start.media_format.sample_rate", int, where=where)
        channels = opt_field(obj, "start.media_format.channels", int, 1, where=where)
        encoding = _ENCODINGS.get(codec)
        if encoding is None or channels != 1:
            raise UnsupportedAudioError(
                f"{_NAME}: 'start.media_format' {shown(codec)} x{shown(channels)} is not supported "
                "(use PCMU, PCMA or L16, mono)"
            )
        check_audio(encoding, rate, provider=_NAME)
        start = obj["start"]
        metadata = {k: v for k, v in string_map(start).items() if k in ("from", "to")}
        metadata.update(string_map(start.get("custom_parameters")))
        seq = obj.get("sequence_number")
        if seq is not None:
            self._expected = parse_counter(seq, path="sequence_number", where=where) + 1
        self._big_endian = codec == "L16"
        self._started = CallStarted(
            call_id=call_id,
            encoding=encoding,
            sample_rate_hz=rate,
            scenario=metadata.get("scenario"),
            metadata=metadata,
        )
        return [self._started]

    def _require_start(self, event: str) -> CallStarted:
        if self._started is None:
            raise out_of_order(_NAME, f"'{event}' message before 'start'")
        return self._started

    def _on_media(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'media' message"
        self._require_start("media")
        payload = get_field(obj, "media.payload", str, where=where)
        data = decode_base64(payload, path="media.payload", where=where)
        if opt_field(obj, "media.track", str, "inbound", where=where) == "outbound":
            return self._sequenced(obj, where, [])
        if self._big_endian and len(data) % 2:
            raise ProtocolError(f"{where}: 'media.payload' has an odd number of L16 bytes")
        return self._sequenced(obj, where, [AudioIn(_swap16(data) if self._big_endian else data)])

    def _on_dtmf(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'dtmf' message"
        self._require_start("dtmf")
        digit = check_digits(get_field(obj, "dtmf.digit", str, where=where),
                             path="dtmf.digit", where=where)
        return self._sequenced(obj, where, [DtmfIn(digit)])

    def _on_mark(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'mark' message"
        self._require_start("mark")
        name = get_field(obj, "mark.name", str, where=where)
        return self._sequenced(obj, where, [MarkPlayed(name)])

    def _sequenced(self, obj: dict[str, Any], where: str, events: list[Inbound]) -> list[Inbound]:
        """Deliver in ``sequence_number`` order: hold a message until every earlier number
        was seen, or the window overflows; drop duplicates and numbers already skipped."""
        raw = obj.get("sequence_number")
        if raw is None:
            return events
        seq = parse_counter(raw, path="sequence_number", where=where)
        if self._expected is None:
            self._expected = seq
        if seq < self._expected or seq in self._held:
            return []
        self._held[seq] = events
        out = self._drain()
        if len(self._held) > MAX_REORDER:
            self._expected = min(self._held)
            out.extend(self._drain())
        return out

    def _drain(self) -> list[Inbound]:
        out: list[Inbound] = []
        while self._expected is not None and self._expected in self._held:
            out.extend(self._held.pop(self._expected))
            self._expected += 1
        return out

    def _on_stop(self, obj: dict[str, Any]) -> list[Inbound]:
        self._require_start("stop")
        out = [event for seq in sorted(self._held) for event in self._held[seq]]
        self._held.clear()
        self._expected = None
        return [*out, CallStopped("stop")]

    # ----------------------------------------------------------------- outbound

    def encode_audio(self, data: bytes) -> list[Frame]:
        started = self._started
        if started is None:
            raise out_of_order(_NAME, "cannot send media before Telnyx's 'start' message")
        size = frame_bytes_20ms(started.encoding, started.sample_rate_hz)
        if not data:
            return []
        data = pad_to_multiple(data, size, SILENCE_BYTE[started.encoding])
        if self._big_endian:
            data = _swap16(data)
        return [
            dumps({"event": "media", "media": {"payload": encode_base64(part)}})
            for part in chunked(data, size)
        ]

    def encode_mark(self, name: str) -> list[Frame]:
        if not name:
            raise ValueError("a mark needs a name")
        return [dumps({"event": "mark", "mark": {"name": name}})]

    def encode_clear(self) -> list[Frame]:
        return [dumps({"event": "clear"})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return []
