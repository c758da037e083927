"""The scripted caller alone (voicebot/caller.py): no socket, no clock, time passed in.

Each test plays the server's side by hand: audio, marks, clears, native events and
closes at chosen times; the caller answers with frames, keys, mark echoes, ``stop``
and a record per turn.  Any order and timing of server inputs: test_caller_props.py.
At the end: what the three drivers (``voicebot call``, ``voicebot simulate``, the Locust
caller) report from the records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from loadtests.caller import Caller, CallerOptions, CallFailed, CallRefused, _samples
from loadtests.phrases import PhraseBook, Step
from server.client import TurnReport
from server.simulate import SimReport
from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding
from voicebot.caller import Actions, CallerState, ScriptedCaller
from voicebot.caller_script import (
    CallEnd,
    CallScript,
    ReplyEnd,
    Turn,
    TurnRecord,
    line_frames,
    speech_end_ms,
    speech_turn,
)
from voicebot.telephony.dialects import DIALECTS, Event

__all__: list[str] = []

FRAME = bytes(640)  # 20 ms of native (16 kHz PCM16) line audio
SECOND = 32_000  # bytes of native audio in a second


def _speech(frames: int = 10, start_ms: float = 40, end_ms: float = 150, **kw: Any) -> Turn:
    return Turn((FRAME,) * frames, speech_start_ms=start_ms, speech_end_ms=end_ms, **kw)


def _caller(*turns: Turn, dialect: str = "native", **kw: Any) -> ScriptedCaller:
    return ScriptedCaller(DIALECTS[dialect]("call-1"), CallScript(turns, **kw))


class Clock:
    """Runs a caller: wakes it when it asks, gathers what it sends and records."""

    def __init__(self, caller: ScriptedCaller, now: float = 0.0) -> None:
        self.caller, self.now = caller, now
        self.sent: list[tuple[float, str | bytes]] = []
        self.records: list[TurnRecord] = []
        self.heard: list[TurnRecord] = []
        self.wake_at: float | None = None
        self.take(caller.start(now))

    def take(self, actions: Actions) -> Actions:
        self.sent += [(self.now, m) for m in actions.send]
        self.records += actions.records
        self.heard += actions.heard
        self.wake_at = actions.wake_at
        return actions

    def until(self, t: float) -> None:
        """Wake the caller whenever it asked, up to ``t``."""
        while self.wake_at is not None and self.wake_at <= t:
            self.now = max(self.now, self.wake_at)
            self.take(self.caller.wake(self.now))
        self.now = max(self.now, t)

    def hear(self, t: float, *events: Event) -> None:
        self.until(t)
        self.take(self.caller.hear(events, t))

    def state(self) -> CallerState:
        return self.caller.state

    def texts(self) -> list[str]:
        return [m for _, m in self.sent if isinstance(m, str)]

    def first_sent(self, message: str | bytes) -> float:
        return next(t for t, m in self.sent if m == message)


def _audio(seconds: float, per_second: int = SECOND) -> Event:
    return ("audio", bytes(round(per_second * seconds) // 2 * 2))


def _event(event: p.ServerEvent) -> Event:
    return ("event", event)


# ------------------------------------------------------------------ the line


def test_nothing_is_sent_before_the_start_then_the_opening_comes_first() -> None:
    caller = _caller(_speech())
    assert caller.wake(1.0) == Actions() and caller.hear([_audio(1)], 1.0) == Actions()
    assert caller.receive(b"\x00" * 640, 1.0) == Actions()
    assert caller.state is CallerState.IDLE
    actions = caller.start(2.0)
    start = p.decode_client_message(str(actions.send[0]))
    assert isinstance(start, p.Start) and start.call_id == "call-1"
    assert actions.send[1:] == (FRAME,) and actions.wake_at == pytest.approx(2.02)
    with pytest.raises(RuntimeError):
        caller.start(3.0)


def test_the_line_sends_a_frame_every_20_ms_and_catches_up_a_late_driver() -> None:
    caller = _caller(_speech())
    clock = Clock(caller)
    clock.until(0.1)
    assert [round(t, 2) for t, m in clock.sent if isinstance(m, bytes)] == \
        [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    late = caller.wake(0.2)  # the driver overslept: the missed frames go out at once
    assert len(late.send) == 5 and late.wake_at == pytest.approx(0.22)
    assert caller.line.max_lag_s == pytest.approx(0.08)
    starved = caller.wake(5.0)  # starved for over a second: a new clock, the lag kept
    assert len(starved.send) == 2 and starved.wake_at == pytest.approx(5.02)
    assert caller.line.max_lag_s == pytest.approx(4.78)


def test_line_frames_pad_with_encoded_silence_and_speech_turns_find_the_speech() -> None:
    pcm = np.zeros(250, np.int16)
    pcm[100:180] = 5000
    frames = line_frames(pcm, AudioEncoding.MULAW, 8000)
    assert [len(f) for f in frames] == [160, 160] and frames[1][-1] == 0xFF  # μ-law silence
    assert line_frames(np.zeros(0, np.int16), AudioEncoding.PCM16, 16000) == (bytes(640),)
    assert speech_end_ms(pcm, 8000) == 22.5
    turn = speech_turn(pcm, AudioEncoding.MULAW, 8000, speech_start_ms=12.5, pause_s=0.1)
    assert turn.marks() == (0, 1) and turn.kind == "turn" and turn.pause_s == 0.1
    assert Turn(keys="12#").kind == "dtmf"
    with pytest.raises(ValueError, match="either speech"):
        Turn()
    with pytest.raises(ValueError, match="either speech"):
        Turn((FRAME,), keys="1")


# ------------------------------------------------------------------ turns


def test_greeting_then_a_turn_after_the_quiet_and_the_pause_then_stop() -> None:
    clock = Clock(_caller(_speech(pause_s=0.4), quiet_s=0.8))
    clock.hear(0.3, _audio(1.0))  # the greeting: playout until 1.3
    assert clock.state() is CallerState.REPLYING
    [heard] = clock.heard  # told as the reply begins; the record comes when the turn ends
    assert heard.turn == 0 and heard.latency_ms == pytest.approx(300) and not clock.records
    clock.until(2.49)  # 1.3 + quiet 0.8 + pause 0.4 = 2.5: still silence
    assert clock.state() is CallerState.REPLYING
    clock.until(2.51)
    assert clock.state() is CallerState.SPEAKING
    [greeting] = clock.records
    assert greeting.kind == "greeting" and greeting.latency_ms == pytest.approx(300)
    assert greeting.bot_audio_s == pytest.approx(1.0) and greeting.end is None
    # The speech's frames from the next tick: its onset in frame 2, its end in frame 7.
    clock.until(2.65)
    assert clock.state() is CallerState.SPEAKING
    clock.until(2.67)
    assert clock.state() is CallerState.WAITING
    clock.hear(3.3, _audio(0.5))
    clock.until(4.59)  # 3.8 + quiet 0.8 + final pause 0
    assert clock.state() is CallerState.REPLYING and len(clock.texts()) == 1
    clock.until(4.61)
    assert [json.loads(m)["type"] for m in clock.texts()] == ["start", "stop"]
    assert clock.wake_at is None and clock.caller.end is None
    turn = clock.records[1]
    assert turn.onset_at == pytest.approx(2.56) and turn.spoke_until == pytest.approx(2.66)
    assert turn.latency_ms == pytest.approx(640) and turn.bot_audio_s == pytest.approx(0.5)
    assert [r.turn for r in clock.records] == [0, 1]


def test_native_events_end_the_reply_and_fill_the_record() -> None:
    clock = Clock(_caller(Turn(keys="42#", pause_s=0.2), reply_end=ReplyEnd.EVENTS))
    clock.hear(0.1, _event(p.BotSpeechStart(reply=1, text="Hello")), _audio(0.5))
    clock.until(2.0)
    assert clock.state() is CallerState.WAITING  # audio alone does not end a reply
    clock.hear(2.0, _event(p.BotSpeechEnd(reply=1, text="Hello")))
    clock.until(2.34)  # speech_end + grace 0.15, + pause 0.2
    assert clock.state() is CallerState.REPLYING
    clock.until(2.37)
    keys = [p.decode_client_message(m) for m in clock.texts()[1:]]
    assert keys == [p.Dtmf("4"), p.Dtmf("2"), p.Dtmf("#")]  # one message a key
    clock.hear(2.5, _event(p.IntentEvent(turn=1, intent="dtmf", confidence=1.0)),
               _event(p.BotSpeechStart(reply=2, text="Thanks")), _audio(0.2))
    clock.hear(2.9, _event(p.BotSpeechEnd(reply=2, text="Thanks")),
               ("hangup", None), _event(p.Hangup(reason="completed")))
    clock.until(3.1)  # the hang-up: no stop, the call is over once the reply has played
    assert clock.wake_at is None and not [m for m in clock.texts() if "stop" in m]
    greeting, keyed = clock.records
    assert greeting.bot_text == "Hello" and greeting.latency_ms == pytest.approx(100)
    assert (keyed.kind, keyed.intent, keyed.confidence, keyed.bot_text) == \
        ("dtmf", "dtmf", 1.0, "Thanks")
    assert keyed.spoke_until == pytest.approx(2.36) and keyed.latency_ms == pytest.approx(140)
    assert keyed.end is not None and keyed.end.how == "hangup"
    assert keyed.end.event == p.Hangup(reason="completed")


def test_native_messages_are_read_by_the_dialect() -> None:
    caller = _caller(_speech(), reply_end=ReplyEnd.EVENTS)
    caller.start(0.0)
    caller.receive(p.encode_server_event(p.TranscriptEvent(turn=0, text="hi")), 0.1)
    caller.receive(bytes(3200), 0.1)
    assert caller.receive("{not json", 0.2).wake_at is None
    assert caller.end is not None and caller.end.how == "error"
    assert caller.end.detail.startswith("bad message from the server")
    [greeting] = caller.records
    assert greeting.transcript == "hi" and greeting.first_audio_at == 0.1
    assert len(caller.line.bot_audio()) == 1600


def test_marks_are_echoed_once_played_and_a_clear_echoes_them_at_once() -> None:
    clock = Clock(_caller(_speech(), dialect="twilio"))  # 8 kHz μ-law
    clock.hear(0.1, _audio(0.25, 8000), ("mark", "m1"), _audio(0.25, 8000), ("mark", "m2"),
               _audio(0.25, 8000), ("mark", "m3"))
    echoes = [json.loads(m)["mark"]["name"] for m in clock.texts() if "mark" in m]
    assert echoes == []
    clock.until(0.36)
    [(at, echo)] = [(t, m) for t, m in clock.sent if isinstance(m, str) and '"mark"' in m]
    assert at == pytest.approx(0.36) and json.loads(echo)["mark"]["name"] == "m1"
    clock.hear(0.4, ("clear", None))
    names = [json.loads(m)["mark"]["name"] for m in clock.texts() if '"mark"' in m]
    assert names == ["m1", "m2", "m3"] and clock.caller.line.marks_echoed == 3
    assert clock.caller.line.clears == 1


def test_a_barge_in_talks_over_the_reply_and_listens_after_the_clear() -> None:
    barge = _speech(20, start_ms=100, end_ms=300, barge_in_after_s=1.0)
    clock = Clock(_caller(barge, quiet_s=0.0))
    clock.hear(0.1, _audio(5.0))  # a long greeting, playing until 5.1
    clock.until(1.09)
    assert clock.state() is CallerState.REPLYING
    clock.until(1.11)
    assert clock.state() is CallerState.SPEAKING  # 1.0 into the reply
    clock.hear(1.2, _audio(0.1))  # the old reply goes on: not the answer
    clock.until(1.3)  # the onset's frame out at 1.22, the last speech sample's at 1.4
    clock.hear(1.5, ("clear", None))
    clock.hear(1.9, _audio(0.5))  # the answer
    clock.until(2.0)
    clock.hear(2.5, ("hangup", None))
    clock.until(3.0)
    turn = clock.records[1]
    assert turn.barge_in and turn.onset_at == pytest.approx(1.22)
    assert turn.barge_in_ms == pytest.approx(280) and turn.spoke_until == pytest.approx(1.4)
    assert turn.first_audio_at == 1.9 and turn.latency_ms == pytest.approx(500)


def test_a_barge_in_without_a_clear_listens_once_the_old_reply_has_played() -> None:
    barge = _speech(20, start_ms=100, end_ms=300, barge_in_after_s=1.0)
    clock = Clock(_caller(barge, quiet_s=0.0))
    clock.hear(0.1, _audio(2.0))  # playing until 2.1
    clock.until(1.5)
    clock.hear(1.6, _audio(0.2))  # the old reply: no answer yet, its end is now 2.3
    clock.until(2.58)
    assert clock.state() is CallerState.WAITING
    clock.hear(2.7, _audio(0.3))  # after 2.3 + 0.3: the answer
    turn = clock.caller._draft
    assert turn.barge_in and turn.clear_at is None and turn.first_audio_at == 2.7


def test_no_barge_in_when_the_bot_is_silent_by_then() -> None:
    clock = Clock(_caller(_speech(barge_in_after_s=1.0, pause_s=0.5), quiet_s=0.0))
    clock.hear(0.1, _audio(0.4))  # over at 0.5: the barge-in time (1.1) finds silence
    clock.until(1.08)
    assert clock.state() is CallerState.REPLYING  # waits for the barge-in time
    clock.until(1.12)
    assert clock.state() is CallerState.SPEAKING
    assert not clock.caller._draft.barge_in


def test_no_reply_in_time_ends_the_call_without_a_stop() -> None:
    clock = Clock(_caller(_speech(), turn_timeout_s=2.0))
    clock.until(1.99)
    assert clock.wake_at is not None
    clock.until(2.01)
    assert clock.wake_at is None and clock.texts() == clock.texts()[:1]  # the opening only
    [greeting] = clock.records
    assert greeting.end is not None and greeting.end.how == "timeout"


def test_a_close_ends_the_call_on_the_turn_it_came_in() -> None:
    clock = Clock(_caller(_speech(), _speech(), dialect="asterisk"))  # 8 kHz μ-law
    clock.hear(0.1, _audio(0.2, 8000))
    clock.until(2.0)  # turn 1 sent, waiting
    clock.hear(2.1, ("hangup", None))
    actions = clock.take(clock.caller.closed(1000, "hangup", 2.2))
    assert actions.done and [r.turn for r in clock.records] == [0, 1]
    end = clock.records[-1].end
    assert end is not None and (end.how, end.close_code, end.close_reason) == \
        ("hangup", 1000, "hangup")
    assert clock.caller.closed(1011, "late", 2.3) == Actions()  # once over, over


def test_a_fatal_server_error_ends_the_call_a_warning_does_not() -> None:
    clock = Clock(_caller(_speech(), reply_end=ReplyEnd.EVENTS))
    clock.hear(0.1, _event(p.ErrorEvent(code=4400, message="hm", fatal=False)))
    assert clock.wake_at is not None
    clock.hear(0.2, _event(p.ErrorEvent(code=4400, message="bad", fatal=True)))
    assert clock.caller.end is not None and clock.caller.end.detail == "server error 4400: bad"


def _playout(records: Sequence[TurnRecord]) -> float:
    return sum(r.bot_audio_s for r in records)


def test_bot_audio_is_counted_per_turn_and_kept_when_asked() -> None:
    kept = Clock(_caller(_speech(), quiet_s=0.1))
    kept.hear(0.1, _audio(0.5))
    kept.until(1.0)
    kept.hear(1.5, _audio(0.25))
    kept.until(3.0)
    assert [r.bot_audio_s for r in kept.records] == [0.5, 0.25]
    assert len(kept.caller.line.bot_audio()) == 12_000 and _playout(kept.records) == 0.75
    dropped = Clock(_caller(_speech(), keep_audio=False))
    dropped.hear(0.1, _audio(0.5))
    assert len(dropped.caller.line.bot_audio()) == 0


# ------------------------------------------------------------------ what the drivers print


@pytest.mark.parametrize(("end", "call", "simulate"), [
    (None, None, None), (CallEnd("timeout"), "timeout", "timeout"),
    (CallEnd("closed", None, 1011, "boom"), "closed", "closed:1011:boom"),
    (CallEnd("hangup", p.Hangup(reason="completed"), 1000, "hangup"), "hangup:completed",
     "hangup:1000:hangup"),
    (CallEnd("hangup", p.Transfer(target="agents")), "transfer:agents", "hangup:None:None"),
    (CallEnd("error", p.ErrorEvent(code=1011, message="cell died")), "error:1011", "error"),
    (CallEnd("error", detail="bad message from the server: x"), "error", "error")])
def test_voicebot_call_and_simulate_report_how_the_call_ended(
        end: CallEnd | None, call: str | None, simulate: str | None) -> None:
    record = TurnRecord(2, "turn", spoke_until=1.0, first_audio_at=1.5, bot_audio_s=2.0, end=end)
    report = TurnReport.of(record)
    assert (report.turn, report.latency_ms, report.end) == (2, 500, call)
    assert SimReport.of(record) == SimReport(2, 2.0, 500, simulate)


def test_the_load_caller_tells_outcomes_and_samples_from_the_records() -> None:
    caller = Caller(CallerOptions(url="ws://127.0.0.1:1", turn_timeout_s=15))
    for fine in (None, CallEnd("hangup"), CallEnd("closed", close_code=1000)):
        assert caller._failure(fine) is None
    timeout, refused, lost = (caller._failure(e) for e in (
        CallEnd("timeout"), CallEnd("closed", close_code=1013, close_reason="full"),
        CallEnd("closed", close_reason="connection lost: reset")))
    assert isinstance(timeout, CallFailed) and str(timeout) == "no bot reply within 15 s"
    assert isinstance(refused, CallRefused) and str(refused) == "closed 1013 full"
    assert isinstance(lost, CallFailed) and str(lost) == "closed None connection lost: reset"
    step = Step(PhraseBook.load().saying("lost_card")[0], barge_in=True)
    record = TurnRecord(1, "turn", onset_at=10.0, spoke_until=11.0, first_audio_at=11.6,
                        intent="lost_card", barge_in=True, clear_at=10.4)
    turn, barge = _samples(record, step, 1000.0)
    assert (turn.kind, turn.time_unix, turn.intent, turn.phrase, turn.error) == \
        ("turn", 1011.0, "lost_card", step.label, None)
    assert (barge.kind, barge.time_unix, barge.error) == ("barge_in", 1010.0, None)
    assert turn.latency_ms == pytest.approx(600) and barge.latency_ms == pytest.approx(400)
    unheard = _samples(replace(record, first_audio_at=None, clear_at=None), step, 0.0)
    assert [s.error for s in unheard] == ["call ended before a reply",
                                          "no clear: barge-in not detected"]
    [greeting] = _samples(TurnRecord(0, "greeting", 5.0, 5.0, first_audio_at=5.2), None, 1e3)
    assert greeting.kind == "greeting" and greeting.latency_ms == pytest.approx(200)
    assert _samples(TurnRecord(2, "turn", onset_at=1.0), step, 0.0) == []  # cut off talking
