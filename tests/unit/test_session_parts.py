"""The Session's parts alone: key entry, turn taking, replies (pure state machines)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.audio.codecs import AudioEncoding
from voicebot.commands import (
    CancelReply,
    CancelTranscription,
    Command,
    DiscardSpeculation,
    FeedTranscription,
    FinishTranscription,
    Mark,
    ReplyStarted,
    SendAudio,
    SpeculateTranscription,
    StartTranscription,
    Synthesize,
)
from voicebot.session_keys import MAX_KEYS, KeyEntry, KeyPressKind
from voicebot.session_replies import Replies
from voicebot.session_turns import TurnState, TurnTaking
from voicebot.vad.endpointer import EndpointConfig, Endpointer

__all__: list[str] = []

SR = 16_000
W = 512  # 32 ms windows, as Silero's
SPEECH, QUIET = 0.9, 0.05


# ---------------------------------------------------------------------- key entry

@given(st.integers(min_value=1, max_value=12), st.data())
def test_a_key_entry_is_complete_at_the_slot_length(length: int, data: st.DataObject) -> None:
    keys = KeyEntry()
    digits = data.draw(st.text("0123456789", min_size=length, max_size=length))
    presses = [keys.press(d, expected_length=length) for d in digits]
    assert [p.kind for p in presses[:-1]] == [KeyPressKind.PENDING] * (length - 1)
    assert (presses[-1].kind, presses[-1].digits) == (KeyPressKind.COMPLETE, digits)
    assert presses[-1].entities() == {"digits": digits, "number": int(digits)}
    # The '#' that confirms it is not a new (empty) entry; a second '#' is.
    assert keys.press("#", expected_length=length).kind is KeyPressKind.CONFIRMATION
    assert keys.press("#", expected_length=length).kind is KeyPressKind.COMPLETE


def test_hash_ends_an_entry_and_a_spoken_turn_forgets_the_confirmation() -> None:
    keys = KeyEntry()
    assert keys.press("12", expected_length=None).kind is KeyPressKind.PENDING
    done = keys.press("3#", expected_length=None)
    assert (done.kind, done.digits) == (KeyPressKind.COMPLETE, "123")
    assert keys.press("1234", expected_length=4).kind is KeyPressKind.COMPLETE
    keys.spoken_turn()
    empty = keys.press("#", expected_length=4)
    assert (empty.kind, empty.digits, empty.entities()) == (KeyPressKind.COMPLETE, "", {})


def test_an_entry_without_end_stops_at_max_keys() -> None:
    keys = KeyEntry()
    kinds = [keys.press("1", expected_length=None).kind for _ in range(MAX_KEYS)]
    assert kinds[-1] is KeyPressKind.COMPLETE and KeyPressKind.COMPLETE not in kinds[:-1]


# ---------------------------------------------------------------------- turn taking

def _turns(*, barge_in_ms: int = 200, speculate_ms: int = 0) -> TurnTaking:
    endpointer = Endpointer(EndpointConfig(), sample_rate_hz=SR, window_samples=W)
    return TurnTaking(endpointer, asr_rate_hz=SR, barge_in_samples=barge_in_ms * SR // 1000,
                      speculate_samples=speculate_ms * SR // 1000,
                      domain_for=lambda slot: f"domain:{slot}")


def _state(turns: TurnTaking) -> TurnState:
    return turns.state


def _hear(turns: TurnTaking, probabilities: list[float], *, bot_speaking: bool = False,
          slot_type: str | None = None) -> tuple[list[Command], int]:
    """Feed windows one at a time as the Session does; returns commands and barge-ins."""
    out: list[Command] = []
    barges = 0
    for prob in probabilities:
        for event in turns.hear(np.zeros(W, dtype=np.int16), [prob]):
            step = turns.on_event(event, bot_speaking=bot_speaking and not barges,
                                  slot_type=slot_type)
            out += step.commands
            barges += step.barge_in
        out += turns.speculate()
    return out, barges


def test_an_utterance_is_started_fed_and_finished() -> None:
    turns = _turns()
    out, barges = _hear(turns, [SPEECH] * 12 + [QUIET] * 25, slot_type="digits")
    kinds = [type(c) for c in out]
    assert kinds[0] is StartTranscription and kinds[-1] is FinishTranscription
    assert set(kinds[1:-1]) == {FeedTranscription} and barges == 0
    start = out[0]
    assert isinstance(start, StartTranscription) and start.domain == "domain:digits"
    assert turns.endpointer.expect_digits and turns.state is TurnState.LISTENING
    assert {getattr(c, "utterance", 1) for c in out} == {1}


def test_speech_over_the_bot_barges_in_once_and_a_cough_does_not() -> None:
    turns = _turns(barge_in_ms=400)
    cough, barges = _hear(turns, [SPEECH] * 8 + [QUIET] * 20, bot_speaking=True)
    assert barges == 0 and isinstance(cough[-1], CancelTranscription)  # too short: not a turn
    words, barges = _hear(turns, [SPEECH] * 20 + [QUIET] * 20, bot_speaking=True)
    assert barges == 1 and isinstance(words[-1], FinishTranscription)


def test_a_pause_is_speculated_and_discarded_when_the_caller_goes_on() -> None:
    turns = _turns(speculate_ms=200)
    out, _ = _hear(turns, [SPEECH] * 10 + [QUIET] * 8 + [SPEECH] * 5)
    kinds = [type(c) for c in out]
    assert kinds.count(SpeculateTranscription) == 1 and kinds.count(DiscardSpeculation) == 1
    assert kinds.index(SpeculateTranscription) < kinds.index(DiscardSpeculation)
    assert turns.state is TurnState.SPEAKING
    out, _ = _hear(turns, [QUIET] * 8)
    assert any(isinstance(c, SpeculateTranscription) for c in out)
    assert _state(turns) is TurnState.PAUSING
    assert not turns.speculation_back(turns.utterance)  # the discarded one: a later one is out
    assert turns.speculation_back(turns.utterance)  # the caller still pauses
    end = turns.end_now(bot_speaking=False)
    assert isinstance(end.commands[-1], FinishTranscription)
    assert _state(turns) is TurnState.LISTENING and not turns.speculation_back(turns.utterance)


@given(st.lists(st.tuples(st.sampled_from([SPEECH, 0.4, QUIET]), st.integers(1, 30)),
                max_size=12), st.booleans())
def test_every_started_utterance_ends_exactly_once(runs: list[tuple[float, int]],
                                                   release: bool) -> None:
    turns = _turns(speculate_ms=100)
    out, _ = _hear(turns, [p for p, n in runs for _ in range(n)], bot_speaking=True)
    if release:
        out += turns.release()
    started = [c.utterance for c in out if isinstance(c, StartTranscription)]
    ended = [c.utterance for c in out if isinstance(c, FinishTranscription | CancelTranscription)]
    assert started == list(range(1, len(started) + 1))
    assert ended == started[: len(ended)] and len(started) - len(ended) == int(turns.open)
    assert not (release and turns.open)


# ---------------------------------------------------------------------- replies

def _log(reply: int) -> ReplyStarted:
    return ReplyStarted(reply, 0, "", None, 0.0, "greeting", "Hello. How are you?")


def _replies() -> Replies:
    return Replies(encoding=AudioEncoding.PCM16, rate_hz=8000, frame_bytes=320, marks=False)


def test_sentences_go_out_in_order_and_play_out_by_the_clock() -> None:
    replies = _replies()
    synth = replies.start(text="Hello. How are you?", final=None, log_record=_log(1))
    assert [(c.reply, c.index) for c in synth if isinstance(c, Synthesize)] == [(1, 0), (1, 1)]
    one_second = np.zeros(8000, dtype=np.int16)
    assert replies.synthesized(1, 1, one_second, 0.0) == []  # waits for sentence 0
    out = replies.synthesized(1, 0, one_second, 0.0)
    assert isinstance(out[0], ReplyStarted)
    assert [c.index for c in out if isinstance(c, Mark)] == [0, 1]
    assert sum(isinstance(c, SendAudio) for c in out) == 100  # 2 s in 20 ms frames
    assert replies.speaking(1999.0) and replies.finished(1999.0) is None
    done = replies.finished(2000.0)
    assert done is not None and done[0].id == 1 and replies.current is None


def test_a_barge_in_says_what_was_heard_and_late_audio_is_dropped() -> None:
    replies = _replies()
    replies.start(text="Hello. How are you?", final=None, log_record=_log(1))
    replies.synthesized(1, 0, np.zeros(8000, dtype=np.int16), 0.0)
    out, heard = replies.barge_in(500.0)
    assert isinstance(out[0], CancelReply) and heard.ms == 500 and heard.sentences == 0
    assert replies.synthesized(1, 1, np.zeros(800, dtype=np.int16), 600.0) == []
    assert not replies.speaking(600.0) and replies.next_id() == 2
    with pytest.raises(RuntimeError):
        replies.start(text="a", final=None, log_record=_log(2))
        replies.start(text="b", final=None, log_record=_log(3))
