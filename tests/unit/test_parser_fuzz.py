"""Fuzzing every parser of caller input: only ProtocolError (a 44xx close) ever escapes.

Each provider codec and the native protocol get arbitrary text and binary frames,
and golden-trace calls (``tests/conformance``) with values mutated into huge or
negative numbers, long digit strings, unicode digits, control characters, deep
nesting, wrong types and missing keys.  ``detect_provider`` never raises,
``parse_mark`` answers None for what it did not name, ``close_reason`` fits the
websocket limit, and a :class:`Session` fed any frame answers with commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_telephony import TRACES, inbound_frame, load_trace
from voicebot import protocol as p
from voicebot.errors import ProtocolError
from voicebot.playback import mark_name, parse_mark
from voicebot.telephony import PROVIDERS, codec_for, detect_provider
from voicebot.telephony.base import (
    AudioIn,
    CallStarted,
    CallStopped,
    DtmfIn,
    Frame,
    Inbound,
    MarkPlayed,
    ProviderCodec,
    parse_counter,
)
from voicebot.testing import SessionDriver

__all__: list[str] = []

FUZZ = settings(deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRACE_FRAMES = {path: [inbound_frame(s) for s in load_trace(path) if s["step"] == "in"]
                for path in TRACES}
DEEP = ["[" * 5000, '{"a":' * 5000, '{"event":' * 5000, "[" * 100 + "]" * 100,
        '{"event":"start","x":' + "[" * 40 + "]" * 40 + "}"]


@dataclass(frozen=True)
class Raw:
    """A value spliced into the JSON text as is (deep nesting, 5000-digit literals)."""

    text: str


NASTY_TEXT = ["9" * 5000, "9" * 20, "100000000", "-1", "0", "²", "٣", "1e3", " 8000", "8000\n",
              "\x00", "\x1b[2J", "a\r\nb", "\ud800", "\u2028", "x" * 20_000, "", "vb-²-0",
              "vb-" + "9" * 5000 + "-0", "MEDIA_START"]
NASTY: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([*NASTY_TEXT, 10**30, -1, -(10**30), 2**63, 2**64, 0, 1.5, -0.0, 1e308,
                     None, True, False, [], {}, {"a": {"b": "c"}}, [1, "2", None],
                     Raw("9" * 5000), Raw("[" * 5000), Raw("[" * 40 + "]" * 40), Raw("NaN"),
                     Raw("1e999"), Raw('{"a":' * 100 + "1" + "}" * 100)]),
    st.integers(), st.floats(), st.text(max_size=30),
)
DELETE = object()


def dumps_raw(obj: Any) -> str:
    """``json.dumps`` with every :class:`Raw` value spliced in verbatim."""
    raws: list[str] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(node.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    text = json.dumps(swap(obj))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into a JSON value (not the root)."""
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else [])
    out: list[tuple[Any, ...]] = []
    for key, child in items:
        out += [(*prefix, key), *paths(child, (*prefix, key))]
    return out


def mutate(frame: Frame, data: st.DataObject) -> Frame:
    """``frame`` with one value replaced by a nasty one, or removed."""
    if isinstance(frame, bytes):
        return data.draw(st.binary(max_size=200))
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):  # Asterisk's plain "EVENT key:value" text
        tokens = frame.split(" ")
        i = data.draw(st.integers(0, len(tokens) - 1))
        key, _, _ = tokens[i].partition(":")
        tokens[i] = f"{key}:{data.draw(st.sampled_from(NASTY_TEXT))}"
        return " ".join(tokens)
    options = paths(obj)
    if not options:
        return dumps_raw(data.draw(NASTY))
    *parents, last = data.draw(st.sampled_from(options))
    node = obj
    for key in parents:
        node = node[key]
    value = data.draw(NASTY | st.just(DELETE))
    if value is DELETE and isinstance(node, dict):
        del node[last]
    else:
        node[last] = None if value is DELETE else value
    return dumps_raw(obj)


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


# --------------------------------------------------------------------- native protocol


NATIVE = [p.encode_client_message(m) for m in (
    p.Start(call_id="c1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card",
            metadata={"a": "b"}),
    p.Dtmf("12#"), p.Stop("caller_hangup"))]


@FUZZ
@given(st.text(max_size=300) | st.sampled_from(DEEP) | st.sampled_from(NATIVE), st.data())
def test_native_decoder_raises_only_protocol_errors(text: str, data: Any) -> None:
    for frame in (text, mutate(text, data)):
        assert isinstance(frame, str)
        try:
            message = p.decode_client_message(frame)
        except ProtocolError as exc:
            assert exc.close_code in (4400, 4406, 4415)
        else:
            if isinstance(message, p.Stop):
                assert message.reason == p.close_reason(message.reason)


# --------------------------------------------------------------------- detection, marks


@settings(FUZZ, max_examples=150)
@given(st.text(max_size=300) | st.binary(max_size=300) | st.sampled_from(DEEP),
       st.none() | st.text(max_size=20))
def test_detect_provider_never_raises(frame: Frame, subprotocol: str | None) -> None:
    assert detect_provider(frame, subprotocol=subprotocol) in {*PROVIDERS, "native", None}


@pytest.mark.parametrize("deep", DEEP)
def test_detect_provider_on_deep_json_is_unsure(deep: str) -> None:
    assert detect_provider(deep) is None


@pytest.mark.parametrize("name", ["vb-²-0", "vb-0-²", "vb-" + "9" * 5000 + "-0", "vb-1-٣",
                                  "vb--0", "vb-1-", "vb-1-2-3", "vb-+1-0", "vb- 1-0", ""])
def test_parse_mark_rejects_garbage_as_not_ours(name: str) -> None:
    assert parse_mark(name) is None


@given(st.integers(0, 10**18 - 1), st.integers(0, 10**18 - 1))
def test_parse_mark_round_trips(reply: int, index: int) -> None:
    assert parse_mark(mark_name(reply, index)) == (reply, index)


@given(st.text(max_size=300))
def test_parse_mark_never_raises(name: str) -> None:
    parse_mark(name)


# --------------------------------------------------------------------- close reasons


CONTROL = {chr(c) for c in [*range(32), *range(0x7F, 0xA0), 0x2028, 0x2029]}


@given(st.text(max_size=400))
def test_close_reason_fits_and_is_a_cleaned_prefix(text: str) -> None:
    reason = p.close_reason(text)
    data = reason.encode("utf-8")  # no lone surrogate left: this would raise
    assert len(data) <= 123
    cleaned = "".join(" " if ch in CONTROL else "\ufffd" if "\ud800" <= ch <= "\udfff" else ch
                      for ch in text)
    assert cleaned.startswith(reason)
    assert len(reason) == len(cleaned) or len((reason + cleaned[len(reason)]).encode()) > 123
    assert p.close_reason(reason) == reason


@pytest.mark.parametrize(("text", "expected"), [
    ("é" * 100, "é" * 61), ("€" * 50, "€" * 41), ("a" + "😀" * 40, "a" + "😀" * 30),
    ("line\nbreak\r\x1b[2J", "line break  [2J"), ("\ud800x", "\ufffdx"), ("ok", "ok"),
])
def test_close_reason_examples(text: str, expected: str) -> None:
    assert p.close_reason(text) == expected


# --------------------------------------------------------------------- the session


Make = Callable[..., SessionDriver]
SESSION_FRAMES = st.lists(
    st.text(max_size=200) | st.binary(max_size=1000) | st.sampled_from([*DEEP, *NATIVE]),
    max_size=8,
)


@settings(FUZZ, suppress_health_check=list(HealthCheck))
@given(SESSION_FRAMES, st.sampled_from(["pcm16", "mulaw"]), st.booleans())
def test_session_never_raises_on_native_frames(
    make_driver: Make, frames: list[Frame], encoding: str, start: bool
) -> None:
    d = make_driver()
    if start:
        d.text(p.Start(call_id="f", encoding=encoding, sample_rate_hz=8000))
    for frame in frames:
        if isinstance(frame, str):
            d.run(d.session.receive_text(frame))
        else:
            d.run(d.session.receive_bytes(frame))
            d.run(d.session.receive_audio(frame))
    if d.close is not None:
        assert len(d.close.reason.encode()) <= 123
        assert d.close.reason == p.close_reason(d.close.reason)


def provider_to_session(d: SessionDriver, events: list[Inbound]) -> None:
    """What server/transports.py does with decoded provider events."""
    for event in events:
        if isinstance(event, CallStarted):
            d.run(d.session.receive_message(p.Start(
                call_id=event.call_id, encoding=event.encoding,
                sample_rate_hz=event.sample_rate_hz, scenario=event.scenario,
                metadata=dict(event.metadata))))
        elif isinstance(event, AudioIn):
            d.run(d.session.receive_audio(event.data))
        elif isinstance(event, DtmfIn):
            d.run(d.session.receive_message(p.Dtmf(event.digits)))
        elif isinstance(event, MarkPlayed):
            d.run(d.session.mark_played(event.name))
        elif isinstance(event, CallStopped):
            d.run(d.session.receive_message(p.Stop(event.reason)))


@settings(FUZZ, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TRACES), st.data())
def test_session_never_raises_on_mutated_provider_calls(
    make_driver: Make, path: Any, data: Any
) -> None:
    d = make_driver()
    frames = TRACE_FRAMES[path]
    chosen = data.draw(st.sets(st.integers(0, len(frames) - 1), max_size=3))
    codec = codec_for(path.parent.name)
    for i, frame in enumerate(frames):
        try:
            events = codec.decode(mutate(frame, data) if i in chosen else frame)
        except ProtocolError as exc:
            d.run(d.session.protocol_error(exc))
            continue
        provider_to_session(d, events)
    if d.close is not None:
        assert len(d.close.reason.encode()) <= 123


def test_session_stop_reason_becomes_a_valid_close_reason(make_driver: Make) -> None:
    d = make_driver()
    d.text(p.Start(call_id="f", encoding="pcm16", sample_rate_hz=16000))
    d.run(d.session.receive_message(p.Stop("é\n" * 200)))
    assert d.close is not None and d.close.code == 1000
    assert d.close.reason == "é " * 41  # 123 bytes: 41 * (2 + 1)


def test_session_survives_a_flood_of_keys_without_a_hash(make_driver: Make) -> None:
    """Keys pile up while no '#' ends the entry: an entry ends at 64 keys (int() of a
    5000-digit entry used to raise ValueError out of the session)."""
    d = make_driver()
    d.text(p.Start(call_id="f", encoding="pcm16", sample_rate_hz=16000))
    for _ in range(80):
        d.text(p.Dtmf("1" * 64))
    d.text(p.Dtmf("#"))
    numbers = [e.entities.get("number") for e in d.of_type(p.IntentEvent)]
    assert numbers and all(n == int("1" * 64) for n in numbers)
    assert d.close is None or d.close.code == 1000


def test_control_characters_in_ids_are_kept_for_the_log_layer_to_escape() -> None:
    """Call ids keep control characters (server/logsafe.py escapes them in logs; JSON
    escapes them on the wire); only lone surrogates, which have no UTF-8, are refused."""
    start = p.decode_client_message(json.dumps(
        {"type": "start", "call_id": "a\nb\x1b", "encoding": "pcm16", "sample_rate_hz": 8000}))
    assert isinstance(start, p.Start) and start.call_id == "a\nb\x1b"
    (event,) = codec_for("jambonz").decode(json.dumps({"callSid": "c\r\n1", "sampleRate": 8000}))
    assert isinstance(event, CallStarted) and event.call_id == "c\r\n1"
    with pytest.raises(ProtocolError, match="call_id"):
        p.decode_client_message(json.dumps(
            {"type": "start", "call_id": "a\ud800", "encoding": "pcm16", "sample_rate_hz": 8000}))
