"""The Session under ``turn_policy: model``: the end-of-turn policy ends the caller's turns
(fake engines, a scripted end-of-turn model; no sockets, no clock)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from voicebot import protocol as p
from voicebot.commands import Command, DetectTurnEnd, FinishTranscription
from voicebot.dialog.scenario import Scenario
from voicebot.engines.fakes import _ScriptedStream
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import FakeTranscriber, FakeTurnDetector, SessionDriver, fake_engines, tone
from voicebot.types import Pcm, Transcript
from voicebot.vad.turn_records import TurnPolicyConfig, TurnRule

__all__: list[str] = []

START = p.Start(call_id="t1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card")
MODEL = TurnPolicyConfig(turn_policy=TurnRule.MODEL, speculate=False)
DIGIT_MS = 300  # the growing transcriber hears one digit per 300 ms of voice


class _Driver(SessionDriver):
    """A SessionDriver that also keeps the FinishTranscription commands (endpoint waits)."""

    def __init__(self, session: Session, jobs: CallJobs) -> None:
        super().__init__(session, jobs)
        self.finished: list[FinishTranscription] = []

    def _one(self, c: Command) -> list[Command]:
        if isinstance(c, FinishTranscription):
            self.finished.append(c)
        return super()._one(c)

    def transcripts(self) -> list[str]:
        return [e.text for e in self.of_type(p.TranscriptEvent)]


class _GrowingStream(_ScriptedStream):
    """A card number said digit by digit: the transcript so far holds one digit per
    ``DIGIT_MS`` of voiced audio fed (as a real ASR hears "four two", then the rest)."""

    WORDS = ("four", "two", "one", "seven")

    def __init__(self, owner: FakeTranscriber) -> None:
        super().__init__(owner)
        self.voiced = 0

    def feed(self, pcm: Pcm) -> None:
        super().feed(pcm)
        frames = pcm[: len(pcm) // 32 * 32].reshape(-1, 32).astype(np.float64)
        self.voiced += 32 * int(np.sum(np.sqrt(np.mean(frames * frames, axis=1)) > 500))

    def transcribe_so_far(self) -> Transcript:
        words = self.WORDS[: self.voiced * 1000 // 16000 // DIGIT_MS]
        return Transcript(" ".join(words), 1.0, self.voiced * 1000 // 16000)


class _CardTranscriber(FakeTranscriber):
    def open_stream(self, *, domain: str | None = None) -> _ScriptedStream:
        if domain is not None and domain.endswith("/digits"):
            self.opened.append(domain)
            return _GrowingStream(self)
        return super().open_stream(domain=domain)


def _driver(bank_card: Scenario, *transcripts: str, probs: tuple[float, ...] = (),
            default_prob: float = 1.0, scenario: Scenario | None = None,
            **config: Any) -> _Driver:
    engines, _ = fake_engines()
    asr = _CardTranscriber(transcripts)
    engines = replace(engines, transcriber=asr,
                      turn=FakeTurnDetector(probs=probs, default_prob=default_prob))
    scenario = scenario or bank_card
    engines.prepare(scenario)
    config.setdefault("turn", MODEL)
    session = Session(scenarios={scenario.name: scenario}, config=SessionConfig(**config))
    return _Driver(session, CallJobs(engines))


def _greeted(d: _Driver) -> _Driver:
    d.text(START)
    d.silence(6000)  # the greeting plays out (fake TTS: 40 ms per character)
    return d


def _wait_reply(d: _Driver) -> None:
    ends = len(d.of_type(p.BotSpeechEnd))
    for _ in range(150):
        if len(d.of_type(p.BotSpeechEnd)) > ends:
            return
        d.silence(100)
    raise AssertionError("the bot's reply did not end")


def _silent_until_transcript(d: _Driver, max_ms: int = 4000) -> int:
    """Silence in 20 ms frames until a new transcript comes; how long it took."""
    heard = len(d.transcripts())
    for waited in range(0, max_ms, 20):
        if len(d.transcripts()) > heard:
            return waited
        d.silence(20)
    raise AssertionError(f"no transcript within {max_ms} ms of silence")


def test_a_free_turn_ends_at_the_short_pause_when_the_model_says_complete(
        bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "I lost my card"))
    d.audio_in(tone(800))
    waited = _silent_until_transcript(d)
    assert d.transcripts() == ["I lost my card"]
    assert 200 <= waited < 300  # the short pause and a VAD window, not the 500 ms endpoint
    [ask] = d.turn_requests
    # The model heard the turn and its pause so far: 800 ms of tone, the 300 ms pad, the
    # short pause and the VAD windows it took to notice it, at most.
    assert 800 * 16 <= len(ask.pcm) <= (1100 + 200 + 3 * 32) * 16 and np.abs(ask.pcm).max() > 1000
    assert not np.abs(ask.pcm[-200 * 16:]).any()  # it ends in the pause
    assert 200 <= d.finished[-1].endpoint_delay_ms < 300
    reply = d.replies[-1]
    assert (reply.turn, reply.end_rule, reply.turn_score) == (1, "model", 1.0)
    assert "Shall I block it now?" in d.of_type(p.BotSpeechStart)[-1].text


def test_incomplete_keeps_listening_and_the_next_pause_asks_again(bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "I lost my card", probs=(0.2, 0.9)))
    d.audio_in(tone(600))
    d.silence(900)  # "incomplete": past the silence rule's 500 ms, the turn stays open
    assert d.transcripts() == [] and len(d.turn_requests) == 1
    d.audio_in(tone(500))
    waited = _silent_until_transcript(d)
    assert waited < 300 and d.transcripts() == ["I lost my card"]
    assert [r.request_id for r in d.turn_requests] == [1, 2]
    # The second question heard the whole turn, both stretches of speech.
    assert len(d.turn_requests[1].pcm) > len(d.turn_requests[0].pcm) + 1300 * 16
    assert (d.replies[-1].end_rule, d.replies[-1].turn_score) == ("model", 0.9)


def test_max_silence_always_ends_the_turn(bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "I lost my card", default_prob=0.1))
    d.audio_in(tone(800))
    waited = _silent_until_transcript(d)
    assert 1500 <= waited < 1600  # max_silence_ms
    assert (d.replies[-1].end_rule, d.replies[-1].turn_score) == ("max_silence", 0.1)
    assert 1500 <= d.finished[-1].endpoint_delay_ms < 1600


def test_a_yes_no_answer_ends_the_turn_on_the_speculative_transcript(
        bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "I lost my card", "yes", probs=(1.0,), default_prob=0.0,
                         speculative_asr_ms=200))
    d.audio_in(tone(800))
    _silent_until_transcript(d)
    _wait_reply(d)  # "... Shall I block it now?": a yes/no slot
    d.audio_in(tone(400))
    waited = _silent_until_transcript(d)
    assert waited < 300 and d.transcripts()[-1] == "yes"  # the model said "incomplete"
    assert d.replies[-1].end_rule == "expectation" and d.replies[-1].turn_score == 0.0
    assert d.of_type(p.BotSpeechStart)[-1].text.startswith("Your card is now blocked.")


def test_a_card_number_paused_between_groups_is_not_cut(bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "what is my balance", speculative_asr_ms=200))
    d.audio_in(tone(800))
    _silent_until_transcript(d)
    _wait_reply(d)  # "... the last four digits of your card": digits of length 4
    asked = len(d.turn_requests)
    d.audio_in(tone(2 * DIGIT_MS))  # "four two"
    d.silence(1800)  # past the model rule's max_silence_ms: digits wait longer
    assert d.transcripts() == ["what is my balance"]
    d.audio_in(tone(2 * DIGIT_MS))  # "one seven"
    waited = _silent_until_transcript(d)
    assert waited < 300 and d.transcripts()[-1] == "four two one seven"
    assert len(d.turn_requests) == asked  # a digit string is not the model's to judge
    assert d.replies[-1].end_rule == "expectation"
    assert "1,250.40 dollars" in d.of_type(p.BotSpeechStart)[-1].text


def test_an_unfinished_card_number_ends_at_the_digits_max_silence(bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "what is my balance", speculative_asr_ms=200))
    d.audio_in(tone(800))
    _silent_until_transcript(d)
    _wait_reply(d)
    d.audio_in(tone(2 * DIGIT_MS))
    waited = _silent_until_transcript(d)
    assert 2500 <= waited < 2600 and d.transcripts()[-1] == "four two"
    assert d.replies[-1].end_rule == "max_silence"


def test_an_utterance_cut_at_its_longest_length_closes_the_turn(bank_card: Scenario) -> None:
    scenario = replace(bank_card, settings=replace(
        bank_card.settings, endpointing={**bank_card.settings.endpointing,
                                         "max_utterance_s": 3.0}))
    d = _greeted(_driver(bank_card, "I lost my card", "goodbye", scenario=scenario))
    d.audio_in(tone(3100))  # the last 100 ms are too short to open an utterance
    assert d.transcripts() == ["I lost my card"]  # cut at 3 s, while still speaking
    assert d.replies[-1].end_rule == "max_length" and not d.turn_requests
    _wait_reply(d)
    d.audio_in(tone(600))  # the next turn is the policy's again
    assert _silent_until_transcript(d) < 300 and d.replies[-1].end_rule == "model"


@pytest.mark.parametrize("speculative_asr_ms", [0, 200])
def test_the_silence_policy_ends_turns_as_before(bank_card: Scenario,
                                                 speculative_asr_ms: int) -> None:
    d = _greeted(_driver(bank_card, "I lost my card", turn=SessionConfig().turn,
                         speculative_asr_ms=speculative_asr_ms))
    d.audio_in(tone(800))
    waited = _silent_until_transcript(d)
    assert 500 <= waited < 600 and not d.turn_requests
    assert (d.replies[-1].end_rule, d.replies[-1].turn_score) == ("silence", None)


def test_a_scenario_may_choose_the_model_policy(bank_card: Scenario) -> None:
    scenario = replace(bank_card, settings=replace(
        bank_card.settings, turn_taking={"turn_policy": "model", "short_pause_ms": 300}))
    d = _greeted(_driver(bank_card, "I lost my card", scenario=scenario,
                         turn=SessionConfig().turn))
    d.audio_in(tone(800))
    assert 300 <= _silent_until_transcript(d) < 400
    assert d.replies[-1].end_rule == "model"


def test_a_late_verdict_is_ignored(bank_card: Scenario) -> None:
    """The caller went on before the model answered: its verdict ends nothing."""
    d = _greeted(_driver(bank_card, "I lost my card", default_prob=0.0))
    d.audio_in(tone(600))
    d.silence(300)
    [ask] = d.turn_requests
    d.audio_in(tone(600))  # speech resumed: the question is void
    assert d.session.turn_verdict(ask.request_id, 1.0) == []
    assert d.transcripts() == []
    assert d.session.turn_verdict(99, 1.0) == []  # never asked


def test_a_hang_up_mid_turn_releases_it(bank_card: Scenario) -> None:
    d = _greeted(_driver(bank_card, "I lost my card", default_prob=0.0))
    d.audio_in(tone(600))
    d.silence(300)
    d.text(p.Stop(reason="bye"))
    assert d.close is not None and d.transcripts() == []
    assert d.session.turn_verdict(d.turn_requests[0].request_id, 1.0) == []


def test_detect_turn_end_jobs_need_an_end_of_turn_model() -> None:
    engines, _ = fake_engines()
    jobs = CallJobs(replace(engines, turn=None))
    with pytest.raises(Exception, match="no end-of-turn model"):
        jobs.detect_turn_end(np.zeros(1600, dtype=np.int16))
    scripted = CallJobs(replace(engines, turn=FakeTurnDetector(probs=(0.25,))))
    assert scripted.detect_turn_end(np.zeros(1600, dtype=np.int16)) == 0.25
    assert isinstance(DetectTurnEnd(1, 1, np.zeros(1, dtype=np.int16)), DetectTurnEnd)
