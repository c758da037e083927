"""The opt-in ``turn`` event (voicebot/protocol_turn.py, server/turn_events.py): ``start``'s
``events`` parsed and round-tripped, the wire unchanged for clients that do not ask, the
event round-tripped, and built from the turn's (masked) log record only when asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.turn_events import turn_events
from voicebot import protocol as p
from voicebot.commands import ReplyKind, ReplyStarted
from voicebot.errors import ProtocolError

__all__: list[str] = []

START = p.Start(call_id="c", encoding="pcm16", sample_rate_hz=16000)
NAMES = st.text(st.sampled_from("abcXYZ019_-"), min_size=1, max_size=32)


def test_a_start_without_events_is_encoded_as_before() -> None:
    assert "events" not in json.loads(p.encode_client_message(START))
    assert p.decode_client_message(p.encode_client_message(START)) == START


@given(st.lists(NAMES, max_size=16))
def test_start_events_round_trip(names: list[str]) -> None:
    start = p.Start(call_id="c", encoding="mulaw", sample_rate_hz=8000, events=tuple(names))
    decoded = p.decode_client_message(p.encode_client_message(start))
    assert isinstance(decoded, p.Start)
    assert decoded.events == tuple(dict.fromkeys(names))  # duplicates dropped, order kept


@pytest.mark.parametrize("events", ["turn", {"turn": 1}, [1], [""], ["a b"], ["é"], [None],
                                    ["x" * 33], ["t"] * 17, [["turn"]]])
def test_bad_events_are_malformed(events: Any) -> None:
    text = json.dumps({"type": "start", "call_id": "c", "encoding": "pcm16",
                       "sample_rate_hz": 16000, "events": events})
    with pytest.raises(ProtocolError) as caught:
        p.decode_client_message(text)
    assert caught.value.close_code == 4400


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=20)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=30))
def test_any_events_value_is_accepted_or_malformed(events: Any) -> None:
    text = json.dumps({"type": "start", "call_id": "c", "encoding": "pcm16",
                       "sample_rate_hz": 16000, "events": events})
    try:
        start = p.decode_client_message(text)
    except ProtocolError as exc:
        assert exc.close_code == 4400
    else:
        assert isinstance(start, p.Start) and all(isinstance(n, str) for n in start.events)


def test_unknown_names_are_accepted() -> None:  # a newer client, an older server
    start = p.decode_client_message(json.dumps(
        {"type": "start", "call_id": "c", "encoding": "pcm16", "sample_rate_hz": 16000,
         "events": ["turn", "future-thing"]}))
    assert isinstance(start, p.Start) and start.events == ("turn", "future-thing")


TEXT = st.text(max_size=30)


@given(st.builds(
    p.TurnEvent, turn=st.integers(0, 10**6), reply=st.integers(1, 10**6), source=TEXT,
    heard=TEXT, intent=st.none() | TEXT, confidence=st.floats(0, 1), state=TEXT, text=TEXT,
    kind=st.sampled_from([k.value for k in ReplyKind]),
    slots=st.dictionaries(TEXT, TEXT, max_size=4), sensitive=st.booleans(),
    end_rule=st.none() | TEXT, turn_score=st.none() | st.floats(0, 1),
    latency_ms=st.integers(0, 10**6),
    parts_ms=st.dictionaries(TEXT, st.integers(0, 10**6), max_size=6)))
def test_turn_events_round_trip(event: p.TurnEvent) -> None:
    decoded = p.decode_server_event(p.encode_server_event(event))
    assert isinstance(decoded, p.TurnEvent)
    assert decoded.confidence == pytest.approx(event.confidence, abs=1e-4)
    assert decoded.turn_score == pytest.approx(event.turn_score, abs=1e-4)
    assert (decoded.turn, decoded.heard, decoded.slots, decoded.parts_ms, decoded.end_rule) == (
        event.turn, event.heard, event.slots, event.parts_ms, event.end_rule)


REPLY = ReplyStarted(reply=3, turn=2, transcript="#### ####", intent="fallback",
                     confidence=0.31, state="balance", text="Card ending in ****.",
                     source="speech", slots={"card_last4": "****", "block_confirm": "True"},
                     sensitive=True, kind=ReplyKind.REPROMPT, end_rule="silence",
                     turn_score=None)


def test_only_a_call_that_asked_gets_turn_events() -> None:
    parts = {"endpoint_wait": 512.0, "asr": 84.4, "nlu": 7.6, "tts_first_audio": 1.2}
    assert turn_events(None, REPLY, latency_ms=600.0, parts_ms=parts) == []
    assert turn_events(START, REPLY, latency_ms=600.0, parts_ms=parts) == []
    asked = p.Start(call_id="c", encoding="pcm16", sample_rate_hz=16000, events=("turn",))
    [event] = turn_events(asked, REPLY, latency_ms=600.4, parts_ms=parts)
    assert event == p.TurnEvent(
        turn=2, reply=3, source="speech", heard="#### ####", intent="fallback",
        confidence=0.31, state="balance", text="Card ending in ****.", kind="reprompt",
        slots={"card_last4": "****", "block_confirm": "True"}, sensitive=True,
        end_rule="silence", turn_score=None, latency_ms=600,
        parts_ms={"endpoint_wait": 512, "asr": 84, "nlu": 8, "tts_first_audio": 1})
    wire = json.loads(p.encode_server_event(event))
    assert wire["type"] == "turn" and wire["end_rule"] == "silence" and wire["turn_score"] is None
