"""FreeSWITCH ``mod_audio_fork`` (drachtio-freeswitch-modules) codec.

Checked against the module's README (github.com/drachtio/drachtio-freeswitch-modules,
``modules/mod_audio_fork/README.md``) and its ``lws_glue.cpp``.

``uuid_audio_fork <uuid> start <wss-url> <mix-type> <sampling-rate> <metadata>``
opens the socket (subprotocol ``audio.drachtio.org`` unless
``MOD_AUDIO_FORK_SUBPROTOCOL_NAME`` overrides it), sends ``<metadata>`` as one
text frame, then L16 audio (host order: little-endian) in binary frames.

FreeSWITCH → us:

* The first text frame: the metadata, which must be a JSON object here →
  :class:`CallStarted`.  The module puts nothing of its own in it, so voicebot
  reads, by convention: the call id from ``callid``/``call_id``/``callSid``/
  ``uuid`` (else a placeholder), the rate from ``sampleRate``/``sample_rate``/
  ``sampling`` (``8000``, ``"16k"``, …; 8000 when absent — pass the same value
  as ``<sampling-rate>``), ``mixType`` (``stereo`` → 4415), ``scenario``;
  string entries → metadata.
* Binary frames → :class:`AudioIn` (pcm16).
* Later text frames are whatever the dialplan sends with ``send_text``/``stop``;
  voicebot understands ``{"event"|"type": "dtmf", "digit"|"digits"|"dtmf": "5"}``
  → :class:`DtmfIn` and ``{"event"|"type": "stop"|"hangup", "reason": ...}`` →
  :class:`CallStopped` (the reason made a valid close reason:
  :func:`voicebot.protocol.close_reason`); anything else (JSON or not, or nested
  too deep) is ignored.

Us → FreeSWITCH: ``{"type": "playAudio", "data": {"audioContentType": "raw",
"sampleRate": N, "audioContent": base64}}`` (the module writes each one to a
temporary file and raises ``mod_audio_fork::play_audio``; the dialplan
application plays it), ``{"type": "killAudio"}`` (stops playback at once) and
``{"type": "disconnect"}`` (raises ``mod_audio_fork::disconnect``; the
application hangs up).  No marks.
"""

from __future__ import annotations

from typing import Any

from voicebot.errors import ProtocolError, UnsupportedAudioError
from voicebot.jsonsafe import load_json, shown
from voicebot.protocol import close_reason
from voicebot.telephony.base import (
    AudioIn,
    CallStarted,
    CallStopped,
    DtmfIn,
    Frame,
    Inbound,
    Pacing,
    check_audio,
    check_call_id,
    check_digits,
    chunked,
    dumps,
    encode_base64,
    out_of_order,
    pad_to_multiple,
    parse_json_object,
    string_map,
)

__all__ = ["MAX_PLAY_MS", "FreeswitchCodec", "parse_rate"]

_NAME = "freeswitch"
_CALL_ID_KEYS = ("callid", "call_id", "callSid", "uuid")
_RATE_KEYS = ("sampleRate", "sample_rate", "sampling")
_RATES = {"8000": 8000, "8k": 8000, "16000": 16000, "16k": 16000}
MAX_PLAY_MS = 10_000
"""Longest audio carried by one ``playAudio`` message."""


def parse_rate(value: Any, *, provider: str) -> int:
    """A sampling rate given as ``8000``, ``"8000"`` or ``"8k"`` (and 16 kHz alike)."""
    rate = _RATES.get(str(value).strip().lower()) if not isinstance(value, bool) else None
    if rate is None:
        raise UnsupportedAudioError(f"{provider}: sample rate {shown(value)} is not supported")
    return rate


def _control(text: str) -> dict[str, Any] | None:
    """A later text frame as a JSON object, or None when it is not one (ignored)."""
    try:
        obj = load_json(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class FreeswitchCodec:
    """Per-call mod_audio_fork codec (file-based playback, no marks)."""

    name: str = _NAME
    subprotocol: str | None = "audio.drachtio.org"
    pacing: Pacing = "buffered"
    has_marks: bool = False

    def __init__(self) -> None:
        self._started: CallStarted | None = None

    def decode(self, frame: Frame) -> list[Inbound]:
        if isinstance(frame, bytes):
            if self._started is None:
                raise out_of_order(_NAME, "audio before the metadata text frame")
            return [AudioIn(frame)]
        if self._started is None:
            return [self._on_metadata(parse_json_object(frame, provider=_NAME))]
        obj = _control(frame)
        return self._on_control(obj) if obj is not None else []

    def _on_metadata(self, obj: dict[str, Any]) -> CallStarted:
        where = f"{_NAME} metadata"
        raw_rate = next((obj[k] for k in _RATE_KEYS if k in obj), 8000)
        rate = parse_rate(raw_rate, provider=_NAME)
        mix = str(obj.get("mixType", obj.get("mix_type", "mono")))
        if mix not in ("mono", "mixed"):
            raise UnsupportedAudioError(f"{_NAME}: mixType {shown(mix)} is not supported (mono)")
        check_audio("pcm16", rate, provider=_NAME)
        fields = string_map(obj)
        call_id = next((fields[k] for k in _CALL_ID_KEYS if fields.get(k)), None)
        call_id = check_call_id(call_id or f"freeswitch-{id(self):x}", path="callid",
                                where=where)
        self._started = CallStarted(
            call_id=call_id,
            encoding="pcm16",
            sample_rate_hz=rate,
            scenario=fields.get("scenario"),
            metadata=fields,
        )
        return self._started

    def _on_control(self, obj: dict[str, Any]) -> list[Inbound]:
        kind = obj.get("event", obj.get("type"))
        if kind == "dtmf":
            where = f"{_NAME} 'dtmf' message"
            digits = next((obj[k] for k in ("digits", "digit", "dtmf") if k in obj), None)
            if not isinstance(digits, str):
                raise ProtocolError(f"{where} lacks 'digit'")
            return [DtmfIn(check_digits(digits, path="digit", where=where))]
        if kind in ("stop", "hangup"):
            reason = obj.get("reason")
            text = reason if isinstance(reason, str) and reason else str(kind)
            return [CallStopped(close_reason(text))]
        return []

    # ----------------------------------------------------------------- outbound

    def encode_audio(self, data: bytes) -> list[Frame]:
        if self._started is None:
            raise out_of_order(_NAME, "cannot send audio before the metadata text frame")
        rate = self._started.sample_rate_hz
        data = pad_to_multiple(data, 2, b"\x00")
        return [
            dumps({
                "type": "playAudio",
                "data": {
                    "audioContentType": "raw",
                    "sampleRate": rate,
                    "audioContent": encode_base64(part),
                },
            })
            for part in chunked(data, rate * 2 * MAX_PLAY_MS // 1000)
        ]

    def encode_mark(self, name: str) -> list[Frame]:
        return []

    def encode_clear(self) -> list[Frame]:
        return [dumps({"type": "killAudio"})]

    def encode_hangup(self, reason: str) -> list[Frame]:
        return [dumps({"type": "disconnect"})]
