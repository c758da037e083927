"""Properties of voicebot.vad.turn_policy over arbitrary event sequences (hypothesis).

A test-side watch (:class:`_Watch`) follows the events it feeds and checks every
decision as it comes: at most one end per turn, never before speech or while the
caller speaks, never a pause past its longest silence (plus one 32 ms window), one
question to the turn model per pause, stale verdicts ignored, and every speculated
reply either used by its turn's end or discarded.  The turn model and the
speculative ASR answer at random windows, late answers included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.vad.turn_policy import EndOfTurnPolicy, TurnPhase
from voicebot.vad.turn_records import (
    AskTurnModel,
    DiscardReply,
    Expect,
    Expectation,
    ExpectKind,
    Partial,
    Silence,
    SpeculateReply,
    Speech,
    Tick,
    TurnDecision,
    TurnEvent,
    TurnPolicyConfig,
    TurnRule,
    Verdict,
)

__all__: list[str] = []

TICK_MS = 32

TEXTS = ("yes", "no", "four two", "four two one seven", "double seven one two", "um", "")
_DIGITS4 = Expectation.for_slot("digits", 4)
EXPECTATIONS = (Expectation(), Expectation.for_slot("yes_no"), _DIGITS4,
                Expectation.for_slot("digits"))

_KINDS = ("speak", "silence") * 4 + ("tick",) * 2 + ("partial", "verdict", "expect", "close")
_actions = st.lists(st.tuples(
    st.sampled_from(_KINDS),
    st.sampled_from([8, 25, 3, 50, 12, 1, 90, 5]),  # windows to let go by: around each threshold
    st.sampled_from(TEXTS), st.booleans(),  # a partial: its text, whether it is up to date
    st.sampled_from([0, 1, 5]), st.sampled_from([0.0, 0.5, 1.0]),  # a verdict: which ask back
    st.sampled_from(EXPECTATIONS),
), min_size=8, max_size=60)

_configs = st.builds(
    TurnPolicyConfig, turn_policy=st.sampled_from(TurnRule),
    short_pause_ms=st.sampled_from([100, 200, 300]), expectations=st.booleans(),
    speculate=st.booleans(), turn_threshold=st.sampled_from([0.3, 0.5, 0.9]),
)


def _limit_ms(config: TurnPolicyConfig, expectation: Expectation) -> int:
    digits = config.expectations and expectation.kind is ExpectKind.DIGITS
    if config.turn_policy is TurnRule.MODEL:
        return config.digits_max_silence_ms if digits else config.max_silence_ms
    return config.digits_min_silence_ms if digits else config.min_silence_ms


class _Watch:
    """The invariants, checked on each decision as it comes (a test-side model)."""

    def __init__(self, config: TurnPolicyConfig, policy: EndOfTurnPolicy) -> None:
        self.config, self.policy = config, policy
        self.now_ms, self.voiced = 0, False
        self.pause_start_ms: int | None = None
        self.asks: list[int] = []
        self.pending_ask: int | None = None
        self.asks_this_pause = 0
        self.live: dict[int, int] = {}  # speculation id → the pause start it speculates on
        self.ended_turns: set[int] = set()
        self.unanswered: list[int] = []  # asks the turn model has not answered yet
        self.untranscribed: list[int] = []  # speculations whose transcript is not back

    def feed(self, event: TurnEvent) -> list[TurnDecision]:
        before = self.policy.phase
        limit_before_ms = _limit_ms(self.config, self.policy.expectation)
        if isinstance(event, Speech):
            self.voiced, self.pause_start_ms = True, None
            self.asks_this_pause, self.pending_ask = 0, None
        elif isinstance(event, Silence) and before is TurnPhase.SPEAKING:
            self.voiced, self.pause_start_ms = False, event.at_ms
        got = self.policy.feed(event)
        if isinstance(event, Verdict):
            if event.request_id != self.pending_ask:
                assert got == [], "a stale verdict decided something"
            self.pending_ask = None if event.request_id == self.pending_ask else self.pending_ask
        for decision in got:
            self._check(decision, event, before, limit_before_ms)
        if self.policy.phase is TurnPhase.PAUSED:
            assert self.pause_start_ms is not None
            assert self.now_ms - self.pause_start_ms < _limit_ms(
                self.config, self.policy.expectation), "the pause outlived its longest silence"
        return got

    def _check(self, decision: TurnDecision, event: TurnEvent | None, before: TurnPhase,
               limit_before_ms: int) -> None:
        """One decision taken on ``event`` (None: the turn was closed)."""
        config, pause_start_ms = self.config, self.pause_start_ms
        if isinstance(decision, AskTurnModel):
            self.asks_this_pause += 1
            assert self.asks_this_pause == 1 and config.turn_policy is TurnRule.MODEL
            assert not (config.expectations and self.policy.expectation == _DIGITS4)
            assert pause_start_ms is not None and decision.audio_end_ms == pause_start_ms
            assert self.now_ms - pause_start_ms >= config.short_pause_ms
            self.asks.append(decision.request_id)
            self.unanswered.append(decision.request_id)
            self.pending_ask = decision.request_id
        elif isinstance(decision, SpeculateReply):
            assert config.speculate and pause_start_ms is not None
            assert decision.audio_end_ms == pause_start_ms
            assert self.now_ms - pause_start_ms >= config.short_pause_ms
            self.live[decision.speculation_id] = pause_start_ms
            self.untranscribed.append(pause_start_ms)
        elif isinstance(decision, DiscardReply):
            assert event is None or isinstance(event, Speech), "discarded while silent"
            assert self.live.pop(decision.speculation_id, None) is not None, "unknown speculation"
        else:
            assert before is not TurnPhase.IDLE and not self.voiced, "ended while speaking"
            assert pause_start_ms is not None and decision.speech_end_ms == pause_start_ms
            assert decision.turn == self.policy.turn and decision.turn not in self.ended_turns
            self.ended_turns.add(decision.turn)
            assert decision.decided_at_ms == self.now_ms
            assert decision.waited_ms == self.now_ms - pause_start_ms
            limit_ms = max(limit_before_ms, _limit_ms(config, self.policy.expectation))
            assert decision.waited_ms < limit_ms + TICK_MS, "waited past the longest pause"
            if decision.speculation_id is not None:
                assert self.live.pop(decision.speculation_id) == pause_start_ms
            assert not self.live, "a speculation of the ended turn was left out"
            self.pause_start_ms, self.pending_ask = None, None

    def close_turn(self) -> None:
        got = self.policy.close_turn()
        for decision in got:
            assert isinstance(decision, DiscardReply)
            self._check(decision, None, self.policy.phase, 0)
        assert not self.live, "a speculation was neither used nor discarded"
        self.voiced, self.pause_start_ms, self.pending_ask = False, None, None


def _engines_answer(watch: _Watch, data: st.DataObject) -> None:
    """At a tick, the turn model and the speculative ASR may answer (late answers too)."""
    for request in list(watch.unanswered):
        if data.draw(st.booleans()):
            watch.unanswered.remove(request)
            score = data.draw(st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]))
            watch.feed(Verdict(request_id=request, complete_probability=score))
    for audio_end_ms in list(watch.untranscribed):
        if data.draw(st.booleans()):
            watch.untranscribed.remove(audio_end_ms)
            watch.feed(Partial(text=data.draw(st.sampled_from(TEXTS)), audio_end_ms=audio_end_ms))


@settings(max_examples=300, deadline=None)
@given(config=_configs, actions=_actions, data=st.data())
def test_any_event_sequence_keeps_the_invariants(
    config: TurnPolicyConfig, actions: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    policy = EndOfTurnPolicy(config)
    watch = _Watch(config, policy)
    for kind, windows, text, up_to_date, back, score, expectation in actions:
        now_ms = watch.now_ms
        if kind in ("speak", "silence", "tick"):
            if kind != "tick":
                watch.feed(Speech(at_ms=now_ms) if kind == "speak" else Silence(at_ms=now_ms))
            for _ in range(windows):
                watch.now_ms += TICK_MS
                watch.feed(Tick(at_ms=watch.now_ms))
                _engines_answer(watch, data)
        elif kind == "partial":
            watch.feed(Partial(text=text, audio_end_ms=now_ms if up_to_date else 0))
        elif kind == "verdict":  # a repeated, late or unknown answer
            request = watch.asks[-1 - back] if back < len(watch.asks) else 10_000
            watch.feed(Verdict(request_id=request, complete_probability=score))
        elif kind == "expect":
            watch.feed(Expect(expectation=expectation))
        else:
            watch.close_turn()
    watch.close_turn()
    assert policy.phase is TurnPhase.IDLE
    assert len(watch.ended_turns) <= policy.turn
