"""The scripted caller under any server: hypothesis throws any order and timing of
server inputs at it (tests/unit/test_caller.py has the examples and the helpers)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_caller import SECOND, Clock, _caller, _event, _speech
from voicebot import protocol as p
from voicebot.caller import Actions, CallerState
from voicebot.caller_script import ReplyEnd, Turn
from voicebot.telephony.dialects import Event

__all__: list[str] = []

# Weighted: mostly time and audio; the inputs that end a call come once at most.
_KINDS = ("wake", "wake", "reply", "reply", "reply", "audio", "audio", "speech_end", "mark",
          "clear", "intent", "warning", "hangup")
_ENDS = ("close", "garbage", "fatal")


def _server_input(kind: str, size: int) -> list[Event]:
    table: dict[str, list[Event]] = {
        "audio": [("audio", bytes(size * 2))], "mark": [("mark", f"m{size}")],
        "reply": [("audio", bytes(size * 2)), _event(p.BotSpeechEnd(reply=1, text="x"))],
        "clear": [("clear", None)], "hangup": [("hangup", None)],
        "speech_end": [_event(p.BotSpeechEnd(reply=1, text="x", interrupted=size % 2 == 0))],
        "intent": [_event(p.IntentEvent(turn=1, intent="i", confidence=0.5))],
        "warning": [_event(p.ErrorEvent(code=1, message="w", fatal=False))],
        "fatal": [_event(p.ErrorEvent(code=2, message="f"))],
    }
    return table.get(kind, [])


_turns = st.lists(st.one_of(
    st.builds(lambda n, a, b, barge, pause: _speech(n, min(a, b), max(a, b) + 1,
                                                      barge_in_after_s=barge, pause_s=pause),
              st.integers(1, 15), st.integers(0, 300), st.integers(0, 300),
              st.none() | st.floats(0, 2), st.floats(0, 1)),
    st.builds(lambda keys, pause: Turn(keys=keys, pause_s=pause),
              st.text("0123456789#*", min_size=1, max_size=4), st.floats(0, 1))), max_size=3)
_input = st.tuples(st.sampled_from(_KINDS), st.floats(0, 0.7), st.integers(1, 9000))
_inputs = st.builds(lambda inputs, end, at: [*inputs[:at], *end, *inputs[at:]],
                    st.lists(_input, max_size=60),
                    st.lists(st.tuples(st.sampled_from(_ENDS), st.floats(0, 0.7),
                                       st.integers(1, 9000)), max_size=1),
                    st.integers(0, 60))


def _is_media(dialect: str, message: str | bytes) -> bool:
    return isinstance(message, bytes) if dialect == "native" \
        else json.loads(message).get("event") == "media"


@settings(max_examples=300, deadline=None)
@given(turns=_turns, inputs=_inputs, before=_inputs, dialect=st.sampled_from(["native", "twilio"]),
       mode=st.sampled_from(ReplyEnd), quiet=st.floats(0, 1))
def test_any_server_inputs_keep_the_caller_in_order(
        turns: list[Turn], inputs: list[tuple[str, float, int]],
        before: list[tuple[str, float, int]], dialect: str, mode: ReplyEnd,
        quiet: float) -> None:
    caller = _caller(*turns, dialect=dialect, reply_end=mode, quiet_s=quiet, turn_timeout_s=5.0)
    for kind, _, size in before:  # before the start: nothing at all
        events = [] if kind == "mark" and dialect == "native" else _server_input(kind, size)
        assert caller.hear(events, 0.0) == Actions() and caller.wake(0.0) == Actions()
    clock = Clock(caller, now=1.0)
    opening = caller.dialect.opening(None) if dialect == "native" else []
    assert not _is_media(dialect, clock.sent[0][1])
    assert dialect != "native" or clock.sent[0][1] == opening[0]
    for kind, dt, size in inputs:
        clock.until(clock.now + dt)
        if kind == "close":
            clock.take(caller.closed(1000 + size % 4, "bye", clock.now))
        elif kind == "garbage":
            clock.take(caller.receive("{garbage", clock.now))
        elif not (kind == "mark" and dialect == "native"):  # native: no marks
            clock.take(caller.hear(_server_input(kind, size), clock.now))
    clock.until(clock.now + 40.0)  # long enough for any script to end: timeouts of 5 s
    assert clock.wake_at is None and caller.state is CallerState.ENDED
    # Every turn reported once, in order; the end on the last one only.
    numbers = [r.turn for r in clock.records]
    assert numbers == list(range(len(numbers))) and 1 <= len(numbers) <= len(turns) + 1
    assert clock.records == caller.records
    # A reply's start is told once, as it comes, with the latency the turn ends with.
    assert [h.turn for h in clock.heard] == sorted({h.turn for h in clock.heard})
    for heard in clock.heard:
        assert heard.first_audio_at == clock.records[heard.turn].first_audio_at
        assert heard.end is None
    assert all(r.end is None for r in clock.records[:-1])
    assert clock.records[-1].end == caller.end
    # A reply is timed from the end of the caller's input, never before it.
    for record in clock.records:
        if record.first_audio_at is not None:
            assert record.spoke_until is not None and record.first_audio_at >= record.spoke_until
    # The line never runs ahead of real time.
    media = [t for t, m in clock.sent if _is_media(dialect, m)]
    assert len(media) <= (clock.now - 1.0) / 0.02 + 2
    # Keys go out in the script's order.
    keys = "".join(t.keys for t in turns[: len(numbers) - 1])
    if dialect == "native":
        sent = [p.decode_client_message(m) for _, m in clock.sent if isinstance(m, str)]
        assert "".join(m.digits for m in sent if isinstance(m, p.Dtmf)) == keys
    assert caller.wake(clock.now + 1) == Actions()
    assert caller.hear(_server_input("audio", 10), clock.now + 1) == Actions()


_BYTES_PER_S = {"native": SECOND, "twilio": 8000}


def _stops(dialect: str, sent: Sequence[tuple[float, str | bytes]]) -> int:
    texts = [json.loads(m) for _, m in sent if isinstance(m, str)]
    return sum(1 for m in texts if m.get("type", m.get("event")) == "stop")


@settings(max_examples=150, deadline=None)
@given(turns=_turns, delays=st.lists(st.floats(0.05, 3), min_size=4, max_size=4),
       lengths=st.lists(st.floats(0.02, 4), min_size=4, max_size=4),
       dialect=st.sampled_from(["native", "twilio"]), mode=st.sampled_from(ReplyEnd),
       quiet=st.floats(0, 1))
def test_a_server_that_answers_hears_every_turn_once_in_order(
        turns: list[Turn], delays: list[float], lengths: list[float], dialect: str,
        mode: ReplyEnd, quiet: float) -> None:
    caller = _caller(*turns, dialect=dialect, reply_end=mode, quiet_s=quiet, turn_timeout_s=5.0)
    clock = Clock(caller)
    answer_at: dict[int, float] = {}
    while clock.wake_at is not None and clock.now < 120:
        k = len(caller.records)  # the turn going on
        if caller.state is CallerState.WAITING and k not in answer_at:
            answer_at[k] = clock.now + delays[k]  # the caller's input ended just now
        due = answer_at.get(k)
        if due is not None and due <= clock.wake_at and caller.state is not CallerState.REPLYING:
            reply = bytes(round(_BYTES_PER_S[dialect] * lengths[k]) // 2 * 2 or 2)
            clock.hear(due, ("clear", None), ("audio", reply),
                       _event(p.BotSpeechEnd(reply=k, text="x")))
        else:
            clock.until(clock.wake_at)
    assert caller.state is CallerState.ENDED and caller.end is None
    assert [r.turn for r in clock.records] == list(range(len(turns) + 1))
    assert _stops(dialect, clock.sent) == 1
    assert [(h.turn, h.latency_ms) for h in clock.heard] == \
        [(r.turn, r.latency_ms) for r in clock.records]
    for record, delay in zip(clock.records, delays, strict=False):
        assert record.latency_ms == pytest.approx(delay * 1000)
        assert record.end is None
    for record, turn in zip(clock.records[1:], turns, strict=True):
        assert record.kind == turn.kind
        if record.barge_in:  # talked over the reply: the clear came after the onset
            assert turn.barge_in_after_s is not None and record.barge_in_ms is not None
            assert record.barge_in_ms >= 0
    if dialect == "native":
        sent = [p.decode_client_message(m) for _, m in clock.sent if isinstance(m, str)]
        assert "".join(m.digits for m in sent if isinstance(m, p.Dtmf)) == \
            "".join(t.keys for t in turns)
    media = [t for t, m in clock.sent if _is_media(dialect, m)]
    assert len(media) == round(clock.now / 0.02) + 1  # a frame every 20 ms, none more


