"""The Session state machine driven by fake engines (no sockets, no clock)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from voicebot import protocol as p
from voicebot.commands import CloseConnection
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ProtocolError
from voicebot.jobs import CallJobs
from voicebot.playback import mark_name, parse_mark
from voicebot.session import Session, SessionConfig
from voicebot.testing import FakeTranscriber, SessionDriver, fake_engines, tone

START = p.Start(call_id="t1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card")

Make = Callable[..., SessionDriver]


def _answer_greeting(d: SessionDriver) -> None:
    d.text(START)
    d.silence(6000)  # the greeting plays out (fake TTS: 40 ms per character)


def _speak(d: SessionDriver, ms: int = 800) -> None:
    d.audio_in(tone(ms))
    d.silence(700)


def _wait_reply(d: SessionDriver, max_ms: int = 15000) -> None:
    """Stream silence until the bot's current reply has finished playing."""
    ends = len(d.of_type(p.BotSpeechEnd))
    for _ in range(max_ms // 100):
        if len(d.of_type(p.BotSpeechEnd)) > ends or d.close is not None:
            return
        d.silence(100)


def test_start_sends_ready_and_greeting(make_driver: Make) -> None:
    d = make_driver()
    d.text(START)
    ready = d.of_type(p.Ready)[0]
    assert (ready.call_id, ready.scenario, ready.sample_rate_hz) == ("t1", "bank_card", 16000)
    assert d.of_type(p.BotSpeechStart)[0].text.startswith("Hello, thank you for calling")
    assert d.audio and all(len(frame) <= 640 for frame in d.audio)
    assert d.replies[0].turn == 0
    assert not d.of_type(p.BotSpeechEnd)  # no caller time has passed: still playing
    d.silence(6000)
    assert d.of_type(p.BotSpeechEnd)[0].interrupted is False


def test_lost_card_flow_to_hangup(make_driver: Make) -> None:
    d = make_driver("I lost my card", "yes", "goodbye")
    _answer_greeting(d)
    _speak(d)
    assert d.of_type(p.TranscriptEvent)[-1].text == "I lost my card"
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card"
    assert "Shall I block it now?" in d.of_type(p.BotSpeechStart)[-1].text
    _wait_reply(d)
    _speak(d, 400)
    assert d.of_type(p.IntentEvent)[-1].entities == {"yes_no": True}
    assert d.of_type(p.BotSpeechStart)[-1].text.startswith("Your card is now blocked.")
    _wait_reply(d)
    _speak(d, 500)
    assert d.of_type(p.IntentEvent)[-1].intent == "goodbye"
    _wait_reply(d)
    assert d.of_type(p.Hangup)[-1].reason == "completed"
    assert d.close == CloseConnection(1000, "hangup")
    assert [r.turn for r in d.replies] == [0, 1, 2, 3]


def test_operator_transfers(make_driver: Make) -> None:
    d = make_driver("I want to speak to an agent")
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)
    assert d.of_type(p.Transfer)[-1].target == "card_services_agents"
    assert d.close is not None and d.close.code == 1000


def test_balance_with_dtmf_digits(make_driver: Make) -> None:
    d = make_driver("what is my balance")
    _answer_greeting(d)
    _speak(d)
    assert "last four digits" in d.of_type(p.BotSpeechStart)[-1].text
    _wait_reply(d)
    d.text(p.Dtmf("42"))
    d.text(p.Dtmf("17"))
    intent = d.of_type(p.IntentEvent)[-1]
    assert (intent.source, intent.entities["digits"]) == ("dtmf", "4217")
    assert "1,250.40 dollars" in d.of_type(p.BotSpeechStart)[-1].text


def test_slot_questions_listen_with_the_slot_domain(make_driver: Make) -> None:
    d = make_driver("what is my balance", "four two one seven", "I lost my card", "yes")
    _answer_greeting(d)
    for _ in range(4):
        _speak(d)
        _wait_reply(d)
    asr = d.jobs._engines.transcriber
    assert isinstance(asr, FakeTranscriber)
    assert asr.opened == ["bank_card", "bank_card/digits", "bank_card", "bank_card/yes_no"]
    assert set(asr.domains) == {"bank_card", "bank_card/digits", "bank_card/yes_no"}
    assert "agent" in " ".join(asr.domains["bank_card/digits"])  # global intents still heard


def test_a_spoken_card_number_may_pause_between_groups(make_driver: Make) -> None:
    d = make_driver("what is my balance", "four two one seven")
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)  # "... the last four digits of your card"
    d.audio_in(tone(600))  # "four two"
    d.silence(700)  # a pause that ends any other turn
    assert len(d.of_type(p.TranscriptEvent)) == 1  # the card number's turn is still open
    d.audio_in(tone(600))  # "one seven"
    d.silence(1100)
    assert [e.text for e in d.of_type(p.TranscriptEvent)] == ["what is my balance",
                                                             "four two one seven"]
    assert "1,250.40 dollars" in d.of_type(p.BotSpeechStart)[-1].text


def test_a_complete_card_number_ends_its_turn_at_the_speculation(make_driver: Make) -> None:
    d = make_driver("what is my balance", "four two one seven", speculative_asr_ms=200)
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)
    d.audio_in(tone(1200))
    d.silence(300)  # past the 200 ms speculation, long before the 800 ms digits endpoint
    assert [e.text for e in d.of_type(p.TranscriptEvent)][-1] == "four two one seven"
    assert d.jobs.speculations_kept == 2  # the balance request's and the card's
    assert "1,250.40 dollars" in d.of_type(p.BotSpeechStart)[-1].text


def test_part_of_a_card_number_waits_for_the_rest(make_driver: Make) -> None:
    d = make_driver("what is my balance", "four two", speculative_asr_ms=200)
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)
    d.audio_in(tone(600))
    d.silence(600)  # two digits so far: the speculation does not end the turn
    assert len(d.of_type(p.TranscriptEvent)) == 1
    d.silence(300)  # the digits endpoint (800 ms) does
    assert [e.text for e in d.of_type(p.TranscriptEvent)][-1] == "four two"


def test_unknown_card_reads_not_found(make_driver: Make) -> None:
    d = make_driver("check my balance")
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)
    d.text(p.Dtmf("1111#"))
    assert "could not find a card ending in 1111" in d.of_type(p.BotSpeechStart)[-1].text


def test_unknown_intent_reprompts_twice_then_transfers(make_driver: Make) -> None:
    d = make_driver("purple elephants", "banana bread", "quantum physics")
    _answer_greeting(d)
    for expected in ("Sorry, I did not catch that.", "Sorry, I did not catch that."):
        _speak(d)
        assert d.of_type(p.IntentEvent)[-1].intent == "fallback"
        assert d.of_type(p.BotSpeechStart)[-1].text.startswith(expected)
        _wait_reply(d)
    _speak(d)
    _wait_reply(d)
    assert d.of_type(p.Transfer)


def test_barge_in_clears_and_cancels(make_driver: Make) -> None:
    d = make_driver("I lost my card")
    d.text(START)
    d.silence(1000)  # the greeting is playing
    d.audio_in(tone(600))
    clear = d.of_type(p.Clear)
    assert len(clear) == 1 and clear[0].reply == 1
    end = d.of_type(p.BotSpeechEnd)[-1]
    assert end.interrupted and end.reply == 1
    assert 1 in d.cancelled_replies and d.barge_ins == [1]
    d.silence(700)
    # The interrupting utterance is the caller's turn.
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card"


def test_cough_does_not_interrupt(make_driver: Make) -> None:
    d = make_driver("ahem")
    d.text(START)
    d.silence(1000)
    d.audio_in(tone(230))
    d.silence(700)
    assert not d.of_type(p.Clear)
    assert not d.of_type(p.TranscriptEvent)  # cancelled, not transcribed


def test_no_input_timeout_reprompts(make_driver: Make) -> None:
    d = make_driver()
    _answer_greeting(d)
    d.silence(8200)
    assert d.of_type(p.BotSpeechStart)[-1].text.startswith("Sorry, I did not catch that.")


def test_mulaw_8k_call(make_driver: Make) -> None:
    d = make_driver("goodbye")
    d.text(p.Start(call_id="m", encoding="mulaw", sample_rate_hz=8000))
    assert all(len(frame) <= 160 for frame in d.audio)
    d.silence(6000, encoding="mulaw", sample_rate_hz=8000)
    d.audio_in(tone(800, sample_rate_hz=8000), encoding="mulaw", sample_rate_hz=8000)
    for _ in range(100):
        if d.close:
            break
        d.silence(100, encoding="mulaw", sample_rate_hz=8000)
    assert d.of_type(p.Hangup)


def _start_twice(d: SessionDriver) -> None:
    d.text(START)
    d.text(START)


def test_protocol_errors_close_with_codes(make_driver: Make) -> None:
    cases: list[tuple[Callable[[SessionDriver], object], int]] = [
        (lambda d: d.run(d.session.receive_bytes(b"\0" * 640)), 4409),
        (lambda d: d.text("{not json"), 4400),
        (lambda d: d.text('{"type":"start","call_id":"x","encoding":"opus",'
                          '"sample_rate_hz":16000}'), 4415),
        (lambda d: d.text('{"type":"start","call_id":"x","encoding":"pcm16",'
                          '"sample_rate_hz":44100}'), 4415),
        (lambda d: d.text(p.Start(call_id="x", encoding="pcm16", sample_rate_hz=16000,
                                  scenario="nope")), 4404),
        (lambda d: d.text('{"type":"start","version":9,"call_id":"x","encoding":"pcm16",'
                          '"sample_rate_hz":16000}'), 4406),
        (lambda d: d.text(p.Dtmf("1")), 4409),
        (_start_twice, 4409),
        (lambda d: d.text('{"type":"dance"}'), 4400),
    ]
    for act, code in cases:
        d = make_driver()
        act(d)
        assert d.close is not None and d.close.code == code, (code, d.close)
        assert d.of_type(p.ErrorEvent)[-1].fatal
        # A closed session ignores anything that still arrives.
        d.run(d.session.receive_bytes(b"\0" * 640))
        assert len(d.of_type(p.ErrorEvent)) == 1


def test_close_reason_fits_the_websocket_limit(make_driver: Make) -> None:
    d = make_driver()
    d.text(p.Start(call_id="x", encoding="pcm16", sample_rate_hz=16000, scenario="ü" * 100))
    assert d.close is not None and d.close.code == 4404
    assert len(d.close.reason.encode()) <= 123


def test_odd_audio_frame_is_reported_not_fatal(make_driver: Make) -> None:
    d = make_driver()
    d.text(START)
    d.run(d.session.receive_bytes(b"\0" * 641))
    error = d.of_type(p.ErrorEvent)[-1]
    assert not error.fatal and d.close is None
    d.silence(100)  # the call goes on


def test_stop_and_connection_lost_release_asr(make_driver: Make) -> None:
    d = make_driver()
    _answer_greeting(d)
    d.audio_in(tone(500))  # utterance open, ASR stream open
    d.run(d.session.connection_lost())
    assert d.jobs._asr == {}
    d2 = make_driver()
    d2.text(START)
    d2.text(p.Stop())
    assert d2.close == CloseConnection(1000, "caller_hangup")


def test_speculative_asr_kept_when_caller_stays_silent(make_driver: Make) -> None:
    d = make_driver("I lost my card", speculative_asr_ms=200)
    _answer_greeting(d)
    d.audio_in(tone(800))
    d.silence(300)  # past 200 ms of silence, before the 500 ms endpoint
    assert d.speculations == [1] and not d.of_type(p.TranscriptEvent)
    d.silence(400)
    assert d.jobs.speculations_kept == 1 and d.jobs.speculations_discarded == 0
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card"


def test_speculative_asr_discarded_when_speech_resumes(make_driver: Make) -> None:
    d = make_driver("I lost my card", speculative_asr_ms=200)
    _answer_greeting(d)
    d.audio_in(tone(600))
    d.silence(350)
    d.audio_in(tone(400))  # "... my card": the caller goes on
    d.silence(700)
    assert d.speculations == [1, 1]
    assert (d.jobs.speculations_discarded, d.jobs.speculations_kept) == (1, 1)
    assert len(d.of_type(p.TranscriptEvent)) == 1


def test_no_speculation_by_default(make_driver: Make) -> None:
    d = make_driver("goodbye")
    _answer_greeting(d)
    _speak(d)
    assert d.speculations == [] and d.of_type(p.IntentEvent)[-1].intent == "goodbye"


def test_clock_is_audio_time_only(make_driver: Make) -> None:
    d = make_driver()
    d.text(START)
    assert d.session.now_ms == 0
    d.audio_in(np.zeros(16000, dtype=np.int16))
    assert d.session.now_ms == 1000


# ---------------------------------------------------------------- transports' inputs, marks


def _driver(bank_card: Scenario, *transcripts: str, marks: bool) -> SessionDriver:
    engines, _ = fake_engines(*transcripts)
    engines.prepare(bank_card)
    session = Session(scenarios={bank_card.name: bank_card}, config=SessionConfig(), marks=marks)
    return SessionDriver(session, CallJobs(engines))


_FIRST = "Hello, thank you for calling Example Bank card services."
_SECOND = "How can I help you today?"


def test_a_mark_follows_each_sentence(bank_card: Scenario) -> None:
    d = _driver(bank_card, marks=True)
    d.run(d.session.receive_message(START))
    assert [(m.reply, m.index, m.name) for m in d.marks] == [
        (1, 0, mark_name(1, 0)), (1, 1, mark_name(1, 1))]
    assert parse_mark(d.marks[1].name) == (1, 1) and parse_mark("reply-1") is None


def test_barge_in_records_what_was_heard_by_the_audio_clock(bank_card: Scenario) -> None:
    d = _driver(bank_card, "I lost my card", marks=False)
    d.text(START)
    d.silence(len(_FIRST) * 40 + 200)  # the first sentence has played
    d.audio_in(tone(600))
    end = d.of_type(p.BotSpeechEnd)[-1]
    assert end.interrupted and end.heard_sentences == 1
    assert end.heard_ms is not None and len(_FIRST) * 40 < end.heard_ms <= len(_FIRST) * 40 + 800
    assert d.barged[0].heard_sentences == 1 and d.barged[0].unheard == _SECOND
    values = d.session._dialog.values["interrupted"]  # type: ignore[union-attr]
    assert (values["heard"], values["unheard"]) == (_FIRST, _SECOND)
    assert values["text"] == f"{_FIRST} {_SECOND}"


def test_barge_in_trusts_marks_where_the_provider_has_them(bank_card: Scenario) -> None:
    d = _driver(bank_card, "I lost my card", marks=True)
    d.text(START)
    d.silence(len(_FIRST) * 40 + 200)
    d.audio_in(tone(600))  # no mark came back: the provider had not played sentence 0 yet
    end = d.of_type(p.BotSpeechEnd)[-1]
    assert end.heard_sentences == 0 and end.heard_ms == len(_FIRST) * 40

    d = _driver(bank_card, "I lost my card", marks=True)
    d.text(START)
    d.silence(500)
    d.run(d.session.mark_played(mark_name(1, 0)))
    d.run(d.session.mark_played("someone-else's"))
    d.audio_in(tone(600))
    end = d.of_type(p.BotSpeechEnd)[-1]
    assert end.heard_sentences == 1 and end.heard_ms == len(_FIRST) * 40


def test_speech_end_leaves_heard_fields_out_unless_interrupted(make_driver: Make) -> None:
    d = make_driver()
    d.text(START)
    d.silence(6000)
    end = d.of_type(p.BotSpeechEnd)[0]
    assert "heard_ms" not in p.encode_server_event(end) and end.heard_ms is None


def test_hash_after_a_full_key_entry_only_confirms_it(make_driver: Make) -> None:
    d = make_driver("what is my balance", "goodbye")
    _answer_greeting(d)
    _speak(d)
    _wait_reply(d)
    for key in "9031#":  # a provider sends one key per message
        d.run(d.session.receive_message(p.Dtmf(key)))
    assert [e.entities.get("digits") for e in d.of_type(p.IntentEvent)][-1] == "9031"
    assert len(d.of_type(p.IntentEvent)) == 2 and not d.barge_ins


def test_transport_inputs_before_start_and_decoding_errors(make_driver: Make) -> None:
    d = make_driver()
    d.run(d.session.receive_message(p.Dtmf("1")))
    assert d.close is not None and d.close.code == p.CloseCode.OUT_OF_ORDER
    d = make_driver()
    d.text(START)
    d.run(d.session.protocol_error(ProtocolError("twilio: 'media.payload' is not valid base64")))
    assert d.close == CloseConnection(4400, "twilio: 'media.payload' is not valid base64")
    assert d.of_type(p.ErrorEvent)[-1].fatal
    assert d.session.protocol_error(ProtocolError("again")) == []
