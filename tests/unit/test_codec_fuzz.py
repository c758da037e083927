"""Fuzzing the provider codecs: only ProtocolError (a 44xx close) ever escapes.

Each provider codec gets arbitrary text and binary frames, and golden-trace
calls (``tests/conformance``) with values mutated into huge or negative numbers,
long digit strings, unicode digits, control characters, deep nesting, wrong
types and missing keys; what a decoded start declares cannot blow up the
outbound audio, and ids and counters are bounded.  The native protocol,
detection, marks, close reasons and the session: test_protocol_fuzz.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.fuzz_helpers import DEEP, FUZZ, TRACE_FRAMES, mutate
from tests.unit.test_telephony import TRACES
from voicebot import protocol as p
from voicebot.errors import ProtocolError
from voicebot.telephony import PROVIDERS, codec_for
from voicebot.telephony.base import CallStarted, Frame, Inbound, ProviderCodec, parse_counter

__all__: list[str] = []


def decode(codec: ProviderCodec, frame: Frame) -> list[Inbound] | None:
    """Events, or None for a ProtocolError; any other exception fails the test."""
    try:
        return codec.decode(frame)
    except ProtocolError as exc:
        assert 4400 <= exc.close_code < 4500
        return None


def check_outbound_is_bounded(codec: ProviderCodec) -> None:
    """A declared size or rate cannot blow up what 20 ms of bot audio is sent as."""
    try:
        frames = codec.encode_audio(b"\x00" * 640) + codec.encode_mark("vb-1-0")
    except ProtocolError as exc:
        assert exc.close_code == p.CloseCode.OUT_OF_ORDER  # no start was decoded
        return
    assert sum(len(frame) for frame in frames) < 64_000


frames_st = st.lists(st.text(max_size=200) | st.binary(max_size=700) | st.sampled_from(DEEP),
                     max_size=6)


# --------------------------------------------------------------------- provider codecs


@FUZZ
@given(st.sampled_from(sorted(PROVIDERS)), frames_st, st.booleans())
def test_codecs_raise_only_protocol_errors_on_arbitrary_frames(
    provider: str, frames: list[Frame], started: bool
) -> None:
    codec = codec_for(provider)
    if started:  # the trace's messages up to its start, then garbage
        path = next(path for path in TRACES if path.parent.name == provider)
        for frame in TRACE_FRAMES[path]:
            if any(isinstance(e, CallStarted) for e in decode(codec, frame) or []):
                break
    for frame in frames:
        decode(codec, frame)
    check_outbound_is_bounded(codec)


@settings(FUZZ, max_examples=250)
@given(st.sampled_from(TRACES), st.data())
def test_codecs_raise_only_protocol_errors_on_mutated_calls(path: Any, data: Any) -> None:
    frames = TRACE_FRAMES[path]
    chosen = data.draw(st.sets(st.integers(0, len(frames) - 1), min_size=1, max_size=3))
    codec = codec_for(path.parent.name)
    for i, frame in enumerate(frames):
        decode(codec, mutate(frame, data) if i in chosen else frame)
    check_outbound_is_bounded(codec)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("deep", DEEP)
def test_deep_json_is_a_protocol_error(provider: str, deep: str) -> None:
    path = next(path for path in TRACES if path.parent.name == provider)
    started = codec_for(provider)
    started.decode(TRACE_FRAMES[path][0])
    for codec in (codec_for(provider), started):
        try:
            codec.decode(deep)
        except ProtocolError as exc:
            assert exc.close_code in (4400, 4409)
    with pytest.raises(ProtocolError) as info:  # a first message must be understood
        codec_for(provider).decode(deep)
    assert info.value.close_code in (4400, 4409)


@pytest.mark.parametrize("size", ["100000000", "9" * 5000, "0", "8001", "-160"])
@pytest.mark.parametrize("plain", [True, False])
def test_asterisk_absurd_optimal_frame_size_is_rejected(size: str, plain: bool) -> None:
    frame = (f"MEDIA_START connection_id:x channel_id:c format:ulaw optimal_frame_size:{size}"
             if plain else
             f'{{"event":"MEDIA_START","connection_id":"x","channel_id":"c","format":"ulaw",'
             f'"optimal_frame_size":{size}}}')
    with pytest.raises(ProtocolError) as info:
        codec_for("asterisk").decode(frame)
    assert info.value.close_code == 4400
    assert "optimal_frame_size" in str(info.value) or "JSON" in str(info.value)


@pytest.mark.parametrize(("fmt", "size", "ok"), [
    ("ulaw", 1, True), ("ulaw", 8000, True), ("ulaw", 8001, False),
    ("slin16", 32000, True), ("slin16", 32002, False), ("slin16", 641, False),
    ("slin", 2, True), ("slin", 16000, True),
])
def test_asterisk_frame_size_bounds(fmt: str, size: int, ok: bool) -> None:
    codec = codec_for("asterisk")
    frame = f"MEDIA_START connection_id:x format:{fmt} optimal_frame_size:{size}"
    if not ok:
        with pytest.raises(ProtocolError, match="optimal_frame_size"):
            codec.decode(frame)
        return
    codec.decode(frame)
    frames = codec.encode_audio(b"\x00" * 64_000)
    assert all(isinstance(f, bytes) and len(f) % size == 0 and len(f) <= 65_500 for f in frames)


def test_freeswitch_ignores_deep_control_frames_after_the_metadata() -> None:
    codec = codec_for("freeswitch")
    codec.decode(json.dumps({"callid": "c1", "sampleRate": 8000}))
    assert codec.decode('{"event":' * 5000) == []
    assert codec.decode("[" * 5000) == []


@pytest.mark.parametrize(("provider", "frame"), [
    ("twilio", {"event": "start", "streamSid": "M" * 5000,
                "start": {"callSid": "CA1", "mediaFormat": {"encoding": "audio/x-mulaw",
                                                             "sampleRate": 8000}}}),
    ("exotel", {"event": "start", "stream_sid": "\ud800", "start": {"call_sid": "CA1"}}),
    ("jambonz", {"callSid": "c\ud800", "sampleRate": 8000}),
    ("telnyx", {"event": "start", "sequence_number": "9" * 20, "stream_id": "S",
                "start": {"call_control_id": "v3", "media_format": {"encoding": "PCMU",
                                                                    "sample_rate": 8000}}}),
    ("vonage", {"event": "websocket:connected", "content-type": "audio/l16;rate=" + "1" * 5000}),
    ("exotel", {"event": "start", "stream_sid": "M", "start": {
        "call_sid": "CA1", "media_format": {"sample_rate": "\uff18\uff10\uff10\uff10"}}}),
])
def test_ids_and_counters_are_bounded(provider: str, frame: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        codec_for(provider).decode(json.dumps(frame))
    assert info.value.close_code == 4400
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 20, "²", "٣", "-1", "", " 1", 2**63, -1,
                                   True, 1.0, None])
def test_parse_counter_rejects_what_does_not_fit(value: Any) -> None:
    with pytest.raises(ProtocolError, match="'seq'"):
        parse_counter(value, path="seq", where="x")


@given(st.integers(0, 2**63 - 1))
def test_parse_counter_accepts_int64(value: int) -> None:
    assert parse_counter(value, path="seq", where="x") == value
    assert parse_counter(str(value), path="seq", where="x") == value
