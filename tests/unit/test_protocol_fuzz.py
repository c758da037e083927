"""Fuzzing the native protocol, provider detection, marks, close reasons and the session.

The native decoder raises only ProtocolError (a 44xx close) on arbitrary or
mutated text, ``detect_provider`` never raises, ``parse_mark`` answers None for
what it did not name, ``close_reason`` fits the websocket limit, and a
:class:`Session` fed any frame, or a mutated provider call, answers with
commands.  The provider codecs: test_codec_fuzz.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fuzz_helpers import DEEP, FUZZ, NATIVE, TRACE_FRAMES, mutate
from tests.unit.test_telephony import TRACES
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
)
from voicebot.testing import SessionDriver

__all__: list[str] = []


# --------------------------------------------------------------------- native protocol


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
