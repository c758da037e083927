"""jambonz ``listen`` verb codec (websocket subprotocol ``audio.jambonz.org``).

Checked against https://docs.jambonz.org/verbs/verbs/listen, the 0.9.0
"bidirectional (streaming) audio" article (jambonz/next-static-site sources) and
jambonz-feature-server ``lib/tasks/listen.js``.

jambonz → us:

* One text frame right after connecting: a JSON object with the call's
  attributes (``callSid``, ``from``, ``to``, ``direction``, …), ``sampleRate``,
  ``mixType`` and the verb's ``metadata`` merged in → :class:`CallStarted`
  (call id = ``callSid``; string attributes → metadata; ``scenario`` from the
  metadata).  ``mixType`` ``stereo`` → 4415; rates other than 8000/16000 → 4415.
* Binary frames: 16-bit little-endian PCM at ``sampleRate`` → :class:`AudioIn`.
* With ``passDtmf: true``: ``{"event": "dtmf", "dtmf": "5", "duration": ...}`` →
  :class:`DtmfIn`.
* ``{"type": "playDone"}`` (end of a non-streamed ``playAudio``) and any other
  JSON are ignored (``[]``).

Us → jambonz (``bidirectionalAudio: {enabled: true, streaming: true,
sampleRate: <the listen sampleRate>}``): binary frames of linear-16 PCM, exact
20 ms frames sent in real time; ``{"type": "killAudio"}`` stops playout
(barge-in); ``{"type": "disconnect"}`` ends the ``listen`` verb (the
application's next verb, or the end of the call, follows).  No marks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicebot.errors import UnsupportedAudioError
from voicebot.jsonsafe import shown
from voicebot.telephony.base import (
    AudioIn,
    CallStarted,
    DtmfIn,
    Frame,
    Inbound,
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

__all__ = ["JambonzCodec"]

_NAME = "jambonz"


class JambonzCodec:
    """Per-call jambonz ``listen`` codec with streaming bidirectional audio."""

    name: str = _NAME
    subprotocol: str | None = "audio.jambonz.org"
    pacing: Pacing = "realtime"
    has_marks: bool = False

    def __init__(self) -> None:
        self._started: CallStarted | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Inbound]]] = {
            "dtmf": self._on_dtmf,
        }

    def decode(self, frame: Frame) -> list[Inbound]:
        if isinstance(frame, bytes):
            if self._started is None:
                raise out_of_order(_NAME, "audio before the metadata text frame")
            return [AudioIn(frame)]
        obj = parse_json_object(frame, provider=_NAME)
        if self._started is None:
            return [self._on_metadata(obj)]
        event = obj.get("event")
        handler = self._handlers.get(event) if isinstance(event, str) else None
        return handler(obj) if handler is not None else []

    def _on_metadata(self, obj: dict[str, Any]) -> CallStarted:
        where = f"{_NAME} metadata"
        call_id = get_field(obj, "callSid", str, where=where)
        check_call_id(call_id, path="callSid", where=where)
        rate = parse_counter(get_field(obj, "sampleRate", (int, str), where=where),
                             path="sampleRate", where=where)
        mix = opt_field(obj, "mixType", str, "mono", where=where)
        if mix not in ("mono", "mixed"):
            raise UnsupportedAudioError(f"{_NAME}: mixType {shown(mix)} is not supported (mono)")
        check_audio("pcm16", rate, provider=_NAME)
        fields = string_map(obj)
        self._started = CallStarted(
            call_id=call_id,
            encoding="pcm16",
            sample_rate_hz=rate,
            scenario=fields.get("scenario"),
            metadata=fields,
        )
        return self._started

    def _on_dtmf(self, obj: dict[str, Any]) -> list[Inbound]:
        where = f"{_NAME} 'dtmf' message"
        digits = get_field(obj, "dtmf", str, where=where)
        return [DtmfIn(check_digits(digits, path="dtmf", where=where))]

    # ----------------------------------------------------------------- outbound

    def encode_audio(self, data: bytes) -> list[Frame]:
        if self._started is None:
            raise out_of_order(_NAME, "cannot send audio before the metadata text frame")
        if not data:
            return []
        size = frame_bytes_20ms("pcm16", self._started.sample_rate_hz)
        return list(chunked(pad_to_multiple(data, size, b"\x00"), size))

    def encode_mark(self, name: str) -> list[Frame]:
        return []

    def encode_clear(self) -> list[Frame]:
        return [dumps({"type": "killAudio"})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return [dumps({"type": "disconnect"})]
