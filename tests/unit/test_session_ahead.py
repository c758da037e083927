"""Speculative replies (voicebot/session_ahead.py) through a whole Session with fake engines.

The invariant: a speculation changes *when* a reply's work is done, never *what* the
caller gets -- the same events and the same audio as without it, whatever the order in
which the speculative jobs come back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot import protocol as p
from voicebot.commands import (
    Command,
    ReplyAhead,
    Synthesize,
    SynthesizeAhead,
    Understand,
    UnderstandAhead,
)
from voicebot.dialog.scenario import Scenario
from voicebot.jobkinds import apply_result, kind_of, run_job
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import SessionDriver, fake_engines, tone

START = p.Start(call_id="a1", encoding="pcm16", sample_rate_hz=16000, scenario="bank_card")
AHEAD = {"speculative_asr_ms": 200, "speculative_replies": True}


class HoldingDriver(SessionDriver):
    """A driver that records every command and can hold jobs of some kinds back (their
    results come later, when the test releases them), or fail them."""

    def __init__(self, session: Session, jobs: CallJobs, *, hold: tuple[type, ...] = (),
                 fail: tuple[type, ...] = ()) -> None:
        super().__init__(session, jobs)
        self.hold, self.fail = hold, fail
        self.held: list[Any] = []
        self.commands: list[Command] = []

    def _one(self, c: Command) -> list[Command]:
        self.commands.append(c)
        if isinstance(c, self.fail):
            return apply_result(self.session, c, kind_of(c).failed(c))  # type: ignore[arg-type]
        if isinstance(c, self.hold):
            self.held.append(c)
            return []
        return super()._one(c)

    def release(self) -> None:
        held, self.held = self.held, []
        for job in held:
            self.run(apply_result(self.session, job, run_job(self.jobs, job)))

    def count(self, cls: type) -> int:
        return sum(isinstance(c, cls) for c in self.commands)


Make = Callable[..., HoldingDriver]


def _make(bank_card: Scenario) -> Make:
    def make(*transcripts: str, hold: tuple[type, ...] = (), fail: tuple[type, ...] = (),
             **config: Any) -> HoldingDriver:
        engines, _ = fake_engines(*transcripts)
        engines.prepare(bank_card)
        session = Session(scenarios={bank_card.name: bank_card}, config=SessionConfig(**config))
        return HoldingDriver(session, CallJobs(engines), hold=hold, fail=fail)
    return make


def _greeted(d: HoldingDriver) -> None:
    d.text(START)
    d.silence(6000)  # the greeting plays out (fake TTS: 40 ms per character)


def _heard(d: HoldingDriver) -> tuple[list[p.ServerEvent], bytes]:
    return d.events, b"".join(d.audio)


def _replies_ahead(d: HoldingDriver) -> list[bool]:
    return [c.used for c in d.commands if isinstance(c, ReplyAhead)]


def test_a_used_speculation_sends_what_the_ordinary_path_sends(bank_card: Scenario) -> None:
    make = _make(bank_card)
    runs = []
    for config in ({"speculative_asr_ms": 200}, AHEAD):
        d = make("I lost my card", "yes", **config)
        _greeted(d)
        for _ in range(2):
            d.audio_in(tone(800))
            d.silence(5000)
        runs.append(d)
    plain, ahead = runs
    assert _heard(ahead) == _heard(plain)
    assert len(ahead.of_type(p.BotSpeechStart)) == 3  # greeting, lost card, confirmed
    assert _replies_ahead(ahead) == [True, True] and not _replies_ahead(plain)
    # The turns' NLU and their replies' first sentences ran ahead, not again after the end.
    assert ahead.count(Understand) == 0 and plain.count(Understand) == 2
    assert ahead.count(UnderstandAhead) == 2 and ahead.count(SynthesizeAhead) == 2
    first = [c for c in ahead.commands if isinstance(c, Synthesize) and c.index == 0]
    assert len(first) == 1  # the greeting's only


def test_nothing_is_sent_before_the_turn_ends(bank_card: Scenario) -> None:
    d = _make(bank_card)("I lost my card", **AHEAD)
    _greeted(d)
    before = (len(d.events), len(d.audio))
    d.audio_in(tone(800))
    d.silence(300)  # past the 200 ms speculation, before the 500 ms endpoint
    assert d.count(SynthesizeAhead) == 1  # the reply is ready ...
    assert not [e for e in d.events[before[0]:]
                if isinstance(e, p.TranscriptEvent | p.IntentEvent | p.BotSpeechStart)]
    assert len(d.audio) == before[1]  # ... and held
    d.silence(400)
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card" and len(d.audio) > before[1]


def test_a_caller_who_goes_on_discards_the_speculation(bank_card: Scenario) -> None:
    make = _make(bank_card)
    d = make("I lost my card", **AHEAD)
    _greeted(d)
    d.audio_in(tone(600))
    d.silence(350)  # a speculation, reply ready
    d.audio_in(tone(400))  # "... my card": the caller goes on
    d.silence(5000)
    assert _replies_ahead(d) == [False, True]
    plain = make("I lost my card", speculative_asr_ms=200)
    _greeted(plain)
    plain.audio_in(tone(600))
    plain.silence(350)
    plain.audio_in(tone(400))
    plain.silence(5000)
    assert _heard(d) == _heard(plain)


def test_nlu_still_running_at_the_end_of_the_turn_answers_it(bank_card: Scenario) -> None:
    d = _make(bank_card)("I lost my card", hold=(UnderstandAhead,), **AHEAD)
    _greeted(d)
    d.audio_in(tone(800))
    d.silence(700)  # the turn ends while its NLU is held
    assert d.of_type(p.TranscriptEvent) and not d.of_type(p.IntentEvent)
    assert d.count(Understand) == 0  # not asked twice
    d.release()
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card"
    assert d.of_type(p.BotSpeechStart)[-1].text.startswith("I am sorry")
    assert d.count(Understand) == 0


def test_first_sentence_still_synthesizing_is_awaited(bank_card: Scenario) -> None:
    d = _make(bank_card)("I lost my card", hold=(SynthesizeAhead,), **AHEAD)
    _greeted(d)
    starts = len(d.of_type(p.BotSpeechStart))
    d.audio_in(tone(800))
    d.silence(700)
    assert d.of_type(p.IntentEvent)[-1].intent == "lost_card"
    assert len(d.of_type(p.BotSpeechStart)) == starts  # waits on the held sentence
    d.release()
    assert len(d.of_type(p.BotSpeechStart)) == starts + 1
    assert not [c for c in d.commands[-40:] if isinstance(c, Synthesize) and c.index == 0]


def test_failed_speculative_jobs_fall_back_to_the_ordinary_ones(bank_card: Scenario) -> None:
    make = _make(bank_card)
    d = make("I lost my card", fail=(UnderstandAhead,), **AHEAD)
    _greeted(d)
    d.audio_in(tone(800))
    d.silence(700)
    assert d.count(Understand) == 1 and d.of_type(p.IntentEvent)[-1].intent == "lost_card"
    d = make("I lost my card", hold=(SynthesizeAhead,), **AHEAD)
    _greeted(d)
    d.audio_in(tone(800))
    d.silence(700)  # the reply waits on the held sentence ...
    d.fail = (SynthesizeAhead,)
    job = d.held.pop()
    d.run(apply_result(d.session, job, kind_of(job).failed(job)))  # ... which failed
    assert [c for c in d.commands if isinstance(c, Synthesize) and c.index == 0][-1].reply == 2
    assert d.of_type(p.BotSpeechStart)[-1].text.startswith("I am sorry")


def test_off_without_speculative_asr(bank_card: Scenario) -> None:
    d = _make(bank_card)("I lost my card", speculative_replies=True)
    _greeted(d)
    d.audio_in(tone(800))
    d.silence(700)
    assert d.count(UnderstandAhead) == 0 and d.count(Understand) == 1


@settings(max_examples=25, deadline=None)
@given(pieces=st.lists(st.tuples(st.integers(2, 9), st.integers(1, 8)), min_size=1, max_size=3),
       hold=st.sampled_from([(), (UnderstandAhead,), (SynthesizeAhead,),
                             (UnderstandAhead, SynthesizeAhead)]))
def test_speculation_never_changes_what_the_caller_gets(
        bank_card: Scenario, pieces: list[tuple[int, int]], hold: tuple[type, ...]) -> None:
    """Speech and pauses of any length (100 ms units), speculative jobs answered at once
    or only once more audio has come (then the reply may start later, as after a slow
    job): the same transcripts, intents, replies and audio as without."""
    make = _make(bank_card)
    plain = make("I lost my card", "yes", speculative_asr_ms=200)
    ahead = make("I lost my card", "yes", hold=hold, **AHEAD)
    for d in (plain, ahead):
        _greeted(d)
        for speech, pause in pieces:
            d.audio_in(tone(speech * 100))
            d.silence(pause * 100)
            d.release()
        d.silence(5000)
        d.release()
        d.silence(3000)
    assert _said(ahead) == _said(plain)


def _said(d: HoldingDriver) -> tuple[list[p.ServerEvent], bytes]:
    kinds = (p.TranscriptEvent, p.IntentEvent, p.BotSpeechStart, p.Hangup, p.Transfer)
    return [e for e in d.events if isinstance(e, kinds)], b"".join(d.audio)
