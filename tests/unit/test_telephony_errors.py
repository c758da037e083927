"""Telephony codecs reject malformed input with ProtocolError naming the problem.

Close codes: 4400 malformed (missing field, bad base64, not JSON or nested too
deep, wrong type, a counter over 19 digits, a frame size out of bounds),
4409 out of order (media before start, a second start), 4415 audio voicebot
does not serve (wrong codec, rate or channel layout).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicebot.errors import ProtocolError
from voicebot.telephony import codec_for
from voicebot.telephony.base import Frame

__all__: list[str] = []


def j(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


TWILIO_START: dict[str, Any] = {
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
    "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
              "customParameters": {},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
}
TELNYX_START: dict[str, Any] = {
    "event": "start", "sequence_number": "1", "stream_id": "S1",
    "start": {"call_control_id": "v3:1",
              "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}},
}
EXOTEL_START: dict[str, Any] = {
    "event": "start", "sequence_number": "1", "stream_sid": "MZ1",
    "start": {"stream_sid": "MZ1", "call_sid": "CA1", "account_sid": "AC1",
              "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000"}},
}
VONAGE_START = j({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})
FS_START = j({"callid": "c1", "sampleRate": 8000})
JAMBONZ_START = j({"callSid": "c1", "sampleRate": 8000, "mixType": "mono"})
AST_START = j({"event": "MEDIA_START", "connection_id": "x", "channel_id": "c1",
               "format": "ulaw", "optimal_frame_size": 160})


def with_(base: dict[str, Any], path: str, value: Any) -> str:
    """``base`` as JSON with the dotted ``path`` set to ``value`` (removed when ``...``)."""
    obj = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return json.dumps(obj)


def media(provider: str, payload: str) -> str:
    body = {"event": "media", "media": {"payload": payload}}
    keys = {"twilio": "sequenceNumber", "telnyx": "sequence_number", "exotel": "sequence_number"}
    return j({**body, keys[provider]: "2"})


CASES: list[tuple[str, list[Frame], Frame, int, str]] = [
    # provider, prelude, bad frame, close code, text in the message
    ("twilio", [], media("twilio", "AAAA"), 4409, "'media' message before 'start'"),
    ("twilio", [], j({"event": "dtmf", "dtmf": {"digit": "1"}}), 4409, "before 'start'"),
    ("twilio", [], with_(TWILIO_START, "start.callSid", ...), 4400, "'start.callSid'"),
    ("twilio", [], with_(TWILIO_START, "start.mediaFormat.encoding", "audio/x-alaw"), 4415,
     "audio/x-alaw"),
    ("twilio", [], with_(TWILIO_START, "start.mediaFormat.sampleRate", 16000), 4415, "16000"),
    ("twilio", [], with_(TWILIO_START, "start.mediaFormat.sampleRate", "8000"), 4400,
     "'start.mediaFormat.sampleRate'"),
    ("twilio", [j(TWILIO_START)], j(TWILIO_START), 4409, "second 'start'"),
    ("twilio", [j(TWILIO_START)], media("twilio", "not base64!"), 4400, "'media.payload'"),
    ("twilio", [j(TWILIO_START)], j({"event": "media", "media": {}}), 4400, "'media.payload'"),
    ("twilio", [j(TWILIO_START)], j({"event": "dtmf", "dtmf": {"digit": "X"}}), 4400,
     "'dtmf.digit'"),
    ("twilio", [j(TWILIO_START)], j({"event": "mark", "mark": {}}), 4400, "'mark.name'"),
    ("twilio", [], "not json", 4400, "not valid JSON"),
    ("twilio", [], "[1]", 4400, "JSON object"),
    ("twilio", [], j({"type": "start"}), 4400, "'event'"),
    ("twilio", [], b"\x00\x01", 4400, "binary frame"),
    ("telnyx", [], media("telnyx", "AAAA"), 4409, "before 'start'"),
    ("telnyx", [], with_(TELNYX_START, "stream_id", ...), 4400, "'stream_id'"),
    ("telnyx", [], with_(TELNYX_START, "start.media_format.encoding", "G722"), 4415, "G722"),
    ("telnyx", [], with_(TELNYX_START, "start.media_format.encoding", "OPUS"), 4415, "OPUS"),
    ("telnyx", [], with_(TELNYX_START, "start.media_format", ...), 4400,
     "'start.media_format.encoding'"),
    ("telnyx", [], with_(TELNYX_START, "sequence_number", "one"), 4400, "'sequence_number'"),
    ("telnyx", [j(TELNYX_START)], media("telnyx", "%%%%"), 4400, "'media.payload'"),
    ("telnyx", [j(TELNYX_START)], j({"event": "media", "sequence_number": "-2",
                                     "media": {"payload": "AAAA"}}), 4400, "'sequence_number'"),
    ("exotel", [], media("exotel", "AAAA"), 4409, "before 'start'"),
    ("exotel", [], with_(EXOTEL_START, "start.call_sid", ...), 4400, "'start.call_sid'"),
    ("exotel", [], with_(EXOTEL_START, "start.media_format.sample_rate", "24000"), 4415, "24000"),
    ("exotel", [], with_(EXOTEL_START, "start.media_format.encoding", "audio/ogg"), 4415,
     "audio/ogg"),
    ("exotel", [j(EXOTEL_START)], media("exotel", "AAA"), 4400, "'media.payload'"),
    ("exotel", [j(EXOTEL_START)], j({"event": "dtmf", "dtmf": {}}), 4400, "'dtmf.digit'"),
    ("vonage", [], b"\x00\x00", 4409, "audio before 'websocket:connected'"),
    ("vonage", [], j({"event": "websocket:connected", "content-type": "audio/l16;rate=24000"}),
     4415, "24000"),
    ("vonage", [], j({"event": "websocket:connected", "content-type": "audio/pcmu;rate=8000"}),
     4415, "audio/pcmu"),
    ("vonage", [], j({"event": "websocket:connected", "content-type": "audio/l16"}), 4400,
     "'rate'"),
    ("vonage", [], j({"event": "websocket:connected"}), 4400, "'content-type'"),
    ("vonage", [], j({"event": "websocket:dtmf", "digit": "5"}), 4409, "before"),
    ("vonage", [VONAGE_START], j({"event": "websocket:dtmf", "duration": 260}), 4400,
     "'digit'"),
    ("vonage", [VONAGE_START], VONAGE_START, 4409, "second 'websocket:connected'"),
    ("vonage", [VONAGE_START], "hello", 4400, "not valid JSON"),
    ("freeswitch", [], b"\x00\x00", 4409, "audio before the metadata"),
    ("freeswitch", [], "callid=c1", 4400, "not valid JSON"),
    ("freeswitch", [], j({"callid": "c1", "sampleRate": 44100}), 4415, "44100"),
    ("freeswitch", [], j({"callid": "c1", "mixType": "stereo"}), 4415, "stereo"),
    ("freeswitch", [FS_START], j({"event": "dtmf"}), 4400, "'digit'"),
    ("freeswitch", [FS_START], j({"event": "dtmf", "digit": "Z"}), 4400, "'digit'"),
    ("jambonz", [], b"\x00\x00", 4409, "audio before the metadata"),
    ("jambonz", [], j({"sampleRate": 8000, "mixType": "mono"}), 4400, "'callSid'"),
    ("jambonz", [], j({"callSid": "c1", "mixType": "mono"}), 4400, "'sampleRate'"),
    ("jambonz", [], j({"callSid": "c1", "sampleRate": 24000}), 4415, "24000"),
    ("jambonz", [], j({"callSid": "c1", "sampleRate": 8000, "mixType": "stereo"}), 4415,
     "stereo"),
    ("jambonz", [JAMBONZ_START], j({"event": "dtmf", "dtmf": 5}), 4400, "'dtmf'"),
    ("asterisk", [], b"\xff" * 160, 4409, "media before MEDIA_START"),
    ("asterisk", [], "DTMF_END digit:5", 4409, "DTMF_END before MEDIA_START"),
    ("asterisk", [], j({"event": "MEDIA_START", "connection_id": "x", "format": "opus"}), 4415,
     "opus"),
    ("asterisk", [], "MEDIA_START connection_id:x channel:c", 4400, "'format'"),
    ("asterisk", [], "MEDIA_START connection_id:x format:ulaw optimal_frame_size:big", 4400,
     "'optimal_frame_size'"),
    ("asterisk", [], "MEDIA_START format:ulaw", 4400, "'connection_id'"),
    ("asterisk", [], "{not json", 4400, "not valid JSON"),
    ("asterisk", [AST_START], AST_START, 4409, "second MEDIA_START"),
    ("asterisk", [AST_START], j({"event": "DTMF_END", "digit": "Q"}), 4400, "'digit'"),
    ("asterisk", [], j({"event": "MEDIA_START", "connection_id": "x", "format": "ulaw",
                        "optimal_frame_size": 100_000_000}), 4400,
     "'optimal_frame_size' must be 1..8000 bytes"),
    ("asterisk", [], "MEDIA_START connection_id:x format:slin16 optimal_frame_size:641", 4400,
     "'optimal_frame_size' must be 2..32000 bytes"),
    ("telnyx", [], with_(TELNYX_START, "sequence_number", "9" * 5000), 4400,
     "'sequence_number' must be a non-negative decimal string of at most 19 digits"),
    ("jambonz", [], j({"callSid": "c1", "sampleRate": "1" * 20}), 4400, "'sampleRate'"),
    ("twilio", [], '{"event":' * 5000, 4400, "nested deeper than 32 levels"),
    ("freeswitch", [], "[" * 5000, 4400, "nested deeper than 32 levels"),
]


@pytest.mark.parametrize(
    ("provider", "prelude", "frame", "code", "text"), CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_malformed_input_raises(
    provider: str, prelude: list[Frame], frame: Frame, code: int, text: str
) -> None:
    codec = codec_for(provider)
    for good in prelude:
        codec.decode(good)
    with pytest.raises(ProtocolError) as info:
        codec.decode(frame)
    assert info.value.close_code == code
    assert text in str(info.value)


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "exotel", "vonage", "freeswitch",
                                      "jambonz", "asterisk"])
def test_sending_media_before_the_call_started_is_out_of_order(provider: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec_for(provider).encode_audio(b"\x00" * 320)
    assert info.value.close_code == 4409


@pytest.mark.parametrize(
    ("provider", "start", "harmless"),
    [
        ("twilio", j(TWILIO_START), j({"event": "someday-new", "x": 1})),
        ("twilio", j(TWILIO_START), j({"event": "media", "media": {"track": "outbound",
                                                                    "payload": "AAAA"}})),
        ("telnyx", j(TELNYX_START), j({"event": "error", "sequence_number": "2",
                                       "payload": {"code": "100005"}})),
        ("exotel", j(EXOTEL_START), j({"event": "someday-new"})),
        ("vonage", VONAGE_START, j({"event": "websocket:cleared"})),
        ("vonage", VONAGE_START, j({"event": "websocket:notify", "payload": {}})),
        ("freeswitch", FS_START, "free text from send_text"),
        ("freeswitch", FS_START, j({"type": "transcription", "data": {}})),
        ("jambonz", JAMBONZ_START, j({"type": "playDone"})),
        ("asterisk", AST_START, j({"event": "QUEUE_DRAINED", "channel_id": "c1"})),
        ("asterisk", AST_START, j({"event": "ERROR", "error_text": "MARK_MEDIA unsupported"})),
        ("asterisk", AST_START, j({"event": "MEDIA_BUFFERING_COMPLETED", "correlation_id": ""})),
    ],
)
def test_harmless_messages_decode_to_nothing(provider: str, start: Frame, harmless: Frame) -> None:
    codec = codec_for(provider)
    codec.decode(start)
    assert codec.decode(harmless) == []
