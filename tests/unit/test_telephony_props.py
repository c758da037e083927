"""Property tests of the telephony codecs: framing, Telnyx re-ordering, round trips.

Where a provider's outbound and inbound formats mirror each other (Twilio and
Telnyx ``media`` payloads, Exotel chunks, binary frames, Twilio and Asterisk
marks), what a codec encodes decodes back to the same audio or mark.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.telephony import AudioIn, CallStopped, DtmfIn, MarkPlayed, codec_for
from voicebot.telephony.base import Inbound, ProviderCodec
from voicebot.telephony.exotel import CHUNK_BYTES
from voicebot.telephony.telnyx import MAX_REORDER

__all__: list[str] = []

STARTS: dict[str, str] = {
    "twilio": json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1",
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
    "telnyx": json.dumps({"event": "start", "sequence_number": "1", "stream_id": "S1", "start": {
        "call_control_id": "v3:1", "media_format": {"encoding": "PCMU", "sample_rate": 8000}}}),
    "telnyx-l16": json.dumps({"event": "start", "sequence_number": "1", "stream_id": "S1",
                              "start": {"call_control_id": "v3:1", "media_format": {
                                  "encoding": "L16", "sample_rate": 16000}}}),
    "exotel": json.dumps({"event": "start", "stream_sid": "MZ1", "start": {"call_sid": "CA1"}}),
    "vonage": json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}),
    "vonage-8k": json.dumps({"event": "websocket:connected",
                             "content-type": "audio/l16; rate=8000"}),
    "jambonz": json.dumps({"callSid": "c1", "sampleRate": 16000, "mixType": "mono"}),
    "asterisk": json.dumps({"event": "MEDIA_START", "connection_id": "x", "channel_id": "c",
                            "format": "ulaw", "optimal_frame_size": 160}),
    "asterisk-plain": "MEDIA_START connection_id:x channel_id:c format:slin16 "
                      "optimal_frame_size:640",
}


def started(key: str) -> ProviderCodec:
    codec = codec_for(key.split("-")[0])
    codec.decode(STARTS[key])
    return codec


def audio(events: list[Inbound]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, AudioIn))


# --------------------------------------------------------------------- framing


@given(st.binary(max_size=5000), st.sampled_from([("vonage", 640), ("vonage-8k", 320),
                                                  ("jambonz", 640)]))
def test_binary_20ms_framing(data: bytes, case: tuple[str, int]) -> None:
    key, size = case
    frames = started(key).encode_audio(data)
    assert all(isinstance(f, bytes) and len(f) == size for f in frames)
    joined = b"".join(f for f in frames if isinstance(f, bytes))
    assert len(frames) == -(-len(data) // size)
    assert joined[: len(data)] == data and set(joined[len(data):]) <= {0}


@given(st.lists(st.binary(max_size=5000), max_size=6), st.text(min_size=1, max_size=20))
def test_exotel_chunks_round_trip(parts: list[bytes], mark: str) -> None:
    codec = started("exotel")
    frames = [f for part in parts for f in codec.encode_audio(part)] + codec.encode_mark(mark)
    media = [json.loads(f) for f in frames if isinstance(f, str)][:-1]
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(p) == CHUNK_BYTES for p in payloads)
    data = b"".join(parts)
    assert audio([e for f in frames[:-1] for e in started("exotel").decode(f)])[: len(data)] \
        == data
    assert json.loads(frames[-1]) == {"event": "mark", "stream_sid": "MZ1", "mark": {"name": mark}}


@given(st.binary(max_size=200_000))
@settings(max_examples=30)
def test_asterisk_media_is_whole_frames_under_the_message_limit(data: bytes) -> None:
    frames = started("asterisk").encode_audio(data)
    assert all(isinstance(f, bytes) and len(f) % 160 == 0 and len(f) <= 65500 for f in frames)
    joined = b"".join(f for f in frames if isinstance(f, bytes))
    assert joined[: len(data)] == data and set(joined[len(data):]) <= {0xFF}


# --------------------------------------------------------------------- round trips


@given(st.binary(max_size=3000), st.sampled_from(["twilio", "telnyx", "telnyx-l16", "vonage",
                                                  "jambonz", "asterisk", "asterisk-plain"]))
def test_outbound_media_decodes_back(data: bytes, key: str) -> None:
    """Outbound media messages have the same shape as inbound ones: they decode back."""
    if key.endswith("l16") or key in ("vonage", "jambonz", "asterisk-plain"):
        data = data[: len(data) // 2 * 2]
    frames = started(key).encode_audio(data)
    decoded = audio([event for frame in frames for event in started(key).decode(frame)])
    assert decoded[: len(data)] == data
    assert len(decoded) - len(data) < 640


@given(st.text(min_size=1, max_size=60))
def test_twilio_mark_round_trip(name: str) -> None:
    (frame,) = started("twilio").encode_mark(name)
    assert started("twilio").decode(frame) == [MarkPlayed(name)]


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       st.sampled_from(["asterisk", "asterisk-plain"]))
def test_asterisk_mark_is_answered_with_its_name(name: str, key: str) -> None:
    codec = started(key)
    (command,) = codec.encode_mark(name)
    assert isinstance(command, str)
    if key == "asterisk":
        body = json.loads(command)
        assert body == {"command": "MARK_MEDIA", "correlation_id": name}
        reply = json.dumps({"event": "MEDIA_MARK_PROCESSED", "correlation_id": name})
    else:
        assert command == f"MARK_MEDIA {name}"
        reply = f"MEDIA_MARK_PROCESSED {name}"
    assert codec.decode(reply) == [MarkPlayed(name)]


# --------------------------------------------------------------------- Telnyx re-ordering


def telnyx_media(seq: int) -> str:
    payload = base64.b64encode(bytes([seq % 256]) * 160).decode()
    return json.dumps({"event": "media", "sequence_number": str(seq),
                       "media": {"track": "inbound", "chunk": str(seq - 1),
                                 "timestamp": str(20 * seq), "payload": payload}})


@given(st.data())
def test_telnyx_reorders_bounded_jitter_and_drops_duplicates(data: Any) -> None:
    count = data.draw(st.integers(1, 60))
    seqs = list(range(2, count + 2))
    delay = [data.draw(st.integers(0, MAX_REORDER - 1)) for _ in seqs]
    arrival = sorted(seqs, key=lambda s: (s + delay[s - 2], s))
    dups = data.draw(st.lists(st.sampled_from(seqs), max_size=10))
    for dup in dups:  # a duplicate arrives some time after the original
        first = arrival.index(dup)
        arrival.insert(data.draw(st.integers(first + 1, len(arrival))), dup)
    codec = started("telnyx")
    events = [e for seq in arrival for e in codec.decode(telnyx_media(seq))]
    events += codec.decode(json.dumps({"event": "stop", "sequence_number": str(count + 2)}))
    assert events[-1] == CallStopped("stop")
    assert audio(events) == b"".join(bytes([s % 256]) * 160 for s in seqs)


def test_telnyx_skips_a_lost_frame_once_the_window_is_full() -> None:
    codec = started("telnyx")
    assert audio(codec.decode(telnyx_media(2))) == bytes([2]) * 160
    held = [codec.decode(telnyx_media(s)) for s in range(4, 4 + MAX_REORDER)]
    assert held == [[]] * MAX_REORDER
    released = audio(codec.decode(telnyx_media(4 + MAX_REORDER)))
    assert released == b"".join(bytes([s]) * 160 for s in range(4, 5 + MAX_REORDER))
    assert codec.decode(telnyx_media(3)) == []  # too late: its slot was skipped


def test_telnyx_control_messages_take_their_sequence_slot() -> None:
    codec = started("telnyx")
    assert audio(codec.decode(telnyx_media(2)))
    dtmf = json.dumps({"event": "dtmf", "sequence_number": "3", "dtmf": {"digit": "9"}})
    assert codec.decode(dtmf) == [DtmfIn("9")]
    assert audio(codec.decode(telnyx_media(4))) == bytes([4]) * 160  # not held behind 3


def test_telnyx_delivers_dtmf_and_media_in_sequence_order() -> None:
    codec = started("telnyx")
    assert codec.decode(telnyx_media(3)) == []
    dtmf = json.dumps({"event": "dtmf", "sequence_number": "2", "dtmf": {"digit": "#"}})
    assert codec.decode(dtmf) == [DtmfIn("#"), AudioIn(bytes([3]) * 160)]
    assert codec.decode(dtmf) == []  # duplicate


def test_telnyx_stop_flushes_held_media() -> None:
    codec = started("telnyx")
    assert codec.decode(telnyx_media(3)) == []
    stop = json.dumps({"event": "stop", "sequence_number": "5"})
    assert codec.decode(stop) == [AudioIn(bytes([3]) * 160), CallStopped("stop")]
