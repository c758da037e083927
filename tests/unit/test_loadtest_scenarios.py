"""Load-test callers for any scenario: the phrases a caller needs, slot values that obey
the slot's constraints, scripts that walk the scenario's dialog, the caller audio built
for a scenario (real espeak-ng), and intent mismatches counted.

Two scenarios: the demo (bank_card) and a pizza shop written for these tests
(``loadtest_pizza.yaml``: other intents, a number slot with a range, a six-digit code
looked up in a table, yes/no deciding a branch, free text)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.caller_audio import build_caller_audio, default_out
from loadtests.caller import _intent_check
from loadtests.phrases import (
    AUDIO_DIR,
    Phrase,
    PhraseBook,
    Script,
    Step,
    audio_dir,
    make_script,
    scenario_file,
)
from loadtests.results import CallResult, Sample, sample_row, summarize
from loadtests.scripts import CallPlanner, load_planner
from loadtests.slot_values import (
    MIN_ANSWERS,
    PlannedPhrase,
    answer_text,
    digit_words,
    fits,
    number_words,
    phrase_plan,
    random_value,
)
from voicebot.audio.codecs import AudioEncoding
from voicebot.caller_script import TurnRecord
from voicebot.dialog.engine import DialogEngine, EndCall, UserInput
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Scenario, SlotSpec
from voicebot.errors import VoicebotError
from voicebot.nlu.entities import extract_entities

PIZZA_FILE = Path(__file__).with_name("loadtest_pizza.yaml")
PIZZA = load_scenario(PIZZA_FILE)
BANK = load_scenario(scenario_file("bank_card"))


def _book(plan: Sequence[PlannedPhrase], scenario: str | None) -> PhraseBook:
    """A phrasebook of ``plan`` without audio (scripts only read what phrases mean)."""
    nowhere = Path("/nonexistent")
    return PhraseBook([Phrase(id=f"{n:02d}", text=p.text, intent=p.intent,
                              slot_type=p.slot_type, value=p.value, speech_start_ms=0,
                              speech_end_ms=1000, wav=nowhere, ulaw=nowhere)
                       for n, p in enumerate(plan, start=1)], scenario=scenario)


PIZZA_PLANNER = CallPlanner(PIZZA, _book(phrase_plan(PIZZA), "pizza_shop"))
BANK_PLANNER = load_planner("bank_card")  # the committed loadtests/audio


# --- the phrases a caller needs ----------------------------------------------------------


def test_the_demo_plan_is_the_committed_caller_audio() -> None:
    manifest = json.loads((AUDIO_DIR / "manifest.json").read_text())
    committed = [(p["text"], p.get("intent"), p.get("slot_type"), p.get("value"))
                 for p in manifest["phrases"]]
    assert committed == [(p.text, p.intent, p.slot_type, p.value) for p in phrase_plan(BANK)]
    assert audio_dir("bank_card") == AUDIO_DIR
    assert audio_dir("pizza_shop").parts[-2:] == ("caller-audio", "pizza_shop")
    assert default_out(scenario_file("bank_card")) == AUDIO_DIR
    assert default_out(PIZZA_FILE) == audio_dir("pizza_shop")


def test_every_slot_of_another_scenario_gets_valid_answers() -> None:
    plan = phrase_plan(PIZZA)
    assert [p.text for p in plan[:len(PIZZA.phrases())]] == list(dict.fromkeys(PIZZA.phrases()))
    for spec in PIZZA.slots.values():
        values = {p.value for p in plan if p.slot_type == spec.type and fits(spec, p.value)}
        assert len(values) >= (2 if spec.type == "yes_no" else MIN_ANSWERS), spec.name
    codes = {p.value for p in plan if p.slot_type == "digits" and fits(PIZZA.slots["order_code"],
                                                                       p.value)}
    assert {"250117", "318842"} <= codes  # the orders table's keys: lookups find a row
    assert all(isinstance(v, str) and len(v) == 6 for v in codes)
    counts = {p.value for p in plan if p.slot_type == "number" and fits(PIZZA.slots["pizzas"],
                                                                        p.value)}
    assert counts and all(isinstance(v, int) and 1 <= v <= 9 for v in counts)
    assert len({p.text for p in plan}) == len(plan)


@pytest.mark.parametrize("scenario", [BANK, PIZZA], ids=["bank_card", "pizza_shop"])
def test_each_answer_means_what_the_server_hears_in_it(scenario: Scenario) -> None:
    for phrase in phrase_plan(scenario):
        if phrase.slot_type in ("digits", "number", "yes_no"):
            assert extract_entities(phrase.text)[phrase.slot_type] == phrase.value, phrase
        if phrase.intent is not None:
            assert phrase.text in scenario.intents[phrase.intent]


@given(st.integers(0, 999_999_999_999))
def test_numbers_in_words_read_back(n: int) -> None:
    assert extract_entities(number_words(n))["number"] == n


@given(st.text("0123456789", min_size=1, max_size=24))
def test_digit_strings_in_words_read_back(digits: str) -> None:
    assert extract_entities(digit_words(digits))["digits"] == digits


def _slot_specs() -> st.SearchStrategy[SlotSpec]:
    bound = st.none() | st.integers(-50, 10**6)
    return st.one_of(
        st.builds(lambda n: SlotSpec(name="s", type="digits", prompt="?", reprompt="?",
                                     length=n), st.none() | st.integers(1, 20)),
        st.builds(lambda lo, hi: SlotSpec(name="s", type="number", prompt="?", reprompt="?",
                                          min_value=lo, max_value=hi), bound, bound),
        st.just(SlotSpec(name="s", type="yes_no", prompt="?", reprompt="?")),
        st.just(SlotSpec(name="s", type="text", prompt="?", reprompt="?")))


@given(_slot_specs(), st.integers(0, 2**32 - 1))
def test_generated_values_obey_the_slot_and_are_heard_as_such(spec: SlotSpec, seed: int) -> None:
    value = random_value(spec, random.Random(seed))
    if value is None:  # only a number slot whose range holds no number a caller says
        assert spec.type == "number" and spec.max_value is not None
        assert spec.max_value < 0 or (spec.min_value or 0) > spec.max_value
        return
    assert fits(spec, value)
    if spec.type == "digits":
        assert isinstance(value, str) and len(value) == (spec.length or 4)
    if spec.type == "number":
        assert isinstance(value, int)
        assert (spec.min_value is None or value >= spec.min_value) and \
            (spec.max_value is None or value <= spec.max_value)
    text = answer_text(spec.type, value)
    heard = extract_entities(text).get(spec.type) if spec.type != "text" else text
    assert heard == value


# --- scripts that walk the dialog ---------------------------------------------------------


def _replay(scenario: Scenario, script: Script) -> tuple[DialogEngine, list[str]]:
    """The script's steps through a fresh dialog, heard perfectly; every intent said must
    be one the state takes and every answer must fill the slot asked."""
    engine = DialogEngine(scenario)
    outputs: list[Any] = engine.start()
    for step in script.steps:
        assert engine.listening and not engine.finished, f"{script.name}: the call is over"
        spec = engine.expected_slot
        if step.phrase is None:
            assert step.dtmf is not None and spec is not None and spec.type == "digits"
            digits = step.dtmf.rstrip("#")
            user = UserInput(text=digits, entities={"digits": digits}, source="dtmf")
        elif step.expected_intent is not None:
            assert spec is None, f"{script.name}: said an intent while {spec} was asked"
            assert step.expected_intent in {**scenario.global_on, **engine.state.on}
            user = UserInput(text=step.phrase.text, intent=step.expected_intent,
                             confidence=1.0, entities=extract_entities(step.phrase.text))
        else:
            assert spec is not None and step.phrase.slot_type == spec.type
            assert fits(spec, step.phrase.value)
            user = UserInput(text=step.phrase.text, entities=extract_entities(step.phrase.text))
        outputs = engine.handle(user)
        if spec is not None:
            assert spec.name in engine.slots, f"{script.name}: {step.label} did not fill it"
    return engine, [o.kind for o in outputs if isinstance(o, EndCall)]


@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_scripts_follow_the_demo_flows(seed: int, barge_in: bool, keypad: bool) -> None:
    script = BANK_PLANNER.script(random.Random(seed), barge_in=barge_in, keypad_digits=keypad)
    first = script.steps[0]
    assert first.barge_in == barge_in and first.phrase is not None
    assert all(not s.barge_in for s in script.steps[1:])
    said = [s.expected_intent for s in script.steps if s.expected_intent is not None]
    assert script.name == ">".join(said) + ("+barge-in" if barge_in else "")
    assert said[0] in ("check_balance", "lost_card", "operator")
    if said[0] == "operator":
        assert len(script.steps) == 1  # the bot transfers: the call ends there
    else:
        assert said[-1] == "goodbye" and script.steps[-1].expected_intent == "goodbye"
    seen: set[str | None] = set()  # a slot once filled is not asked again
    for before, step in zip(script.steps, script.steps[1:], strict=False):
        first_time = before.expected_intent not in seen
        seen.add(before.expected_intent)
        if before.expected_intent == "check_balance" and first_time:  # the card's digits
            if keypad:  # four card digits, then '#' so the entry ends whatever the bot asked
                assert step.dtmf is not None and len(step.dtmf) == 5 and step.dtmf.endswith("#")
                assert step.dtmf[:4] in ("4217", "9031", "5566")  # cards the bank has
            elif step.phrase is not None and step.phrase.slot_type == "digits":
                assert step.phrase.value in ("4217", "9031", "5566")
        if before.expected_intent == "lost_card" and first_time:
            assert step.phrase is not None and step.phrase.slot_type == "yes_no"


def test_make_script_walks_the_demo_by_default() -> None:
    made = make_script(BANK_PLANNER.book, random.Random(4), barge_in=True, keypad_digits=True)
    assert made == BANK_PLANNER.script(random.Random(4), barge_in=True, keypad_digits=True)


@settings(max_examples=60)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_scripts_of_any_scenario_are_paths_of_its_dialog(seed: int, barge_in: bool,
                                                          keypad: bool) -> None:
    for scenario, planner in ((BANK, BANK_PLANNER), (PIZZA, PIZZA_PLANNER)):
        script = planner.script(random.Random(seed), barge_in=barge_in, keypad_digits=keypad)
        engine, ends = _replay(scenario, script)
        assert len(script.steps) <= planner.policy.max_turns
        assert engine.finished or len(script.steps) == planner.policy.max_turns
        if engine.finished:  # the last step ended the call: a goodbye or an agent
            assert ends and ends[-1] in ("hangup", "transfer")
        assert script.steps[0].barge_in == barge_in
        assert not any(step.barge_in for step in script.steps[1:])
        if keypad:
            assert all(s.phrase is None or s.phrase.slot_type != "digits" for s in script.steps)


def test_pizza_callers_cover_its_flows_and_slot_types() -> None:
    rng = random.Random(7)
    scripts = [PIZZA_PLANNER.script(rng) for _ in range(300)]
    first = {s.steps[0].expected_intent for s in scripts}
    assert first == {"order_pizza", "track_order", "opening_hours", "human"}
    answers = [step.phrase for s in scripts for step in s.steps
               if step.phrase is not None and step.phrase.slot_type is not None]
    assert {p.slot_type for p in answers} == {"number", "yes_no", "digits", "text"}
    assert {p.value for p in answers if p.slot_type == "yes_no"} == {True, False}
    # the code asked for is one the orders table has (the lookup finds it)
    assert {p.value for p in answers if p.slot_type == "digits"} <= {"250117", "318842"}
    assert all(1 <= int(p.value or 0) <= 9 for p in answers if p.slot_type == "number")
    ends = {s.steps[-1].expected_intent for s in scripts}
    assert ends == {"bye", "human"}
    keyed = PIZZA_PLANNER.script(random.Random(3), keypad_digits=True)
    assert keyed.name  # a script whatever the line


def test_a_phrasebook_that_lacks_phrases_is_refused_with_what_it_lacks() -> None:
    plan = [p for p in phrase_plan(PIZZA) if p.intent != "track_order"
            and p.slot_type != "number"]
    problems = CallPlanner(PIZZA, _book(plan, "pizza_shop")).problems()
    assert problems == ["no phrase says intent 'track_order'",
                        "no phrase answers slot 'pizzas' (number)"]
    other = CallPlanner(PIZZA, _book(phrase_plan(PIZZA), "bank_card")).problems()
    assert other == ["the caller audio is bank_card's, not pizza_shop's"]
    assert CallPlanner(PIZZA, BANK_PLANNER.book).problems()  # the demo's audio


def test_load_planner_names_the_command_that_makes_missing_audio(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m bench caller-audio --scenario "
                       f"{PIZZA_FILE} --out {tmp_path}"):
        load_planner(str(PIZZA_FILE), tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        load_planner(str(PIZZA_FILE), AUDIO_DIR)
    with pytest.raises(FileNotFoundError, match="no scenario 'nope'"):
        scenario_file("nope")


# --- the caller audio of a scenario (real espeak-ng) --------------------------------------


def test_caller_audio_for_another_scenario_is_built_once_and_walked(tmp_path: Path) -> None:
    out = tmp_path / "pizza"
    manifest = build_caller_audio(PIZZA_FILE, out)
    assert manifest["scenario"] == "pizza_shop"
    assert [p["text"] for p in manifest["phrases"]] == [p.text for p in phrase_plan(PIZZA)]
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert build_caller_audio(PIZZA_FILE, out) == manifest  # cached by content
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamps
    planner = load_planner(str(PIZZA_FILE), out)
    script = planner.script(random.Random(1), barge_in=True)
    for step in script.steps:
        if step.phrase is not None:
            frames = step.phrase.frames(AudioEncoding.MULAW, 8000)
            assert len(frames) * 20 >= step.phrase.speech_end_ms > step.phrase.speech_start_ms
            assert frames and {len(f) for f in frames} == {160}
    with pytest.raises(VoicebotError, match="holds the caller audio of pizza_shop"):
        build_caller_audio(scenario_file("bank_card"), out)


# --- intents that were not what the caller meant -------------------------------------------


def test_intent_checks_are_counted_in_rows_summary_and_entries() -> None:
    base = CallResult("c1", "native", "order_pizza>bye", 100.0).base(worker="w")
    order, bye = (PIZZA_PLANNER.book.saying(intent)[0] for intent in ("order_pizza", "bye"))
    answer = PIZZA_PLANNER.book.answering("yes_no")[0]
    records = [TurnRecord(1, "turn", spoke_until=1.0, intent="order_pizza"),
               TurnRecord(2, "turn", spoke_until=3.0, intent="fallback"),  # a slot answer
               TurnRecord(3, "turn", spoke_until=4.0, intent="fallback"),
               TurnRecord(4, "turn", spoke_until=5.0)]  # no intent event: Twilio...
    steps = [Step(order), Step(answer), Step(bye), Step(bye)]
    made = [_intent_check(r, s, 100.0) for r, s in zip(records, steps, strict=True)]
    assert [c is not None for c in made] == [True, False, True, False]
    checks = [c for c in made if c is not None]
    assert [(c.turn, c.time_unix, c.expected_intent, c.intent) for c in checks] == \
        [(1, 101.0, "order_pizza", "order_pizza"), (3, 104.0, "bye", "fallback")]
    turns = [Sample("turn", s.time_unix, 600.0, turn=s.turn, phrase=s.phrase,
                    expected_intent=s.expected_intent, intent=s.intent) for s in checks]
    rows = [sample_row(s, **base) for s in (*turns, *checks)]
    assert [r["outcome"] for r in rows] == ["ok", "ok", "ok", "mismatch"]
    summary = summarize(rows)
    assert summary["intents"] == {"checked": 2, "as_expected": 1, "mismatches": 1,
                                  "mismatched": {"bye→fallback": 1}}
    assert summary["turn_errors"] == 0 and summary["turn"]["n"] == 2

    # Locust's entries (loadtests/locustfile.py fires them; request type "intent")
    assert [s.intent_entry() for s in checks] == [
        ("order_pizza", None), ("mismatch:bye→fallback", "meant bye, heard fallback")]
