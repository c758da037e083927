"""What a load-test caller says in a scenario: its intent examples and slot answers.

A caller's phrases are spoken once, at set-up (``python -m bench caller-audio``), so
the slot values a script can give are the ones planned here: :func:`phrase_plan`
lists every phrase to speak, each with what it means.  It starts with the scenario's
own phrasebook (``Scenario.phrases()``: the intent examples, then the typical answers
of each slot type it uses, in that order, so the demo's committed audio stays the
same) and adds answers where those do not cover a slot: digits of the slot's
``length``, numbers within its ``min``/``max``, free text, and the values the
scenario tests (the keys of a table it looks the slot up in, the values a
``branch`` compares it with), until each slot has :data:`MIN_ANSWERS` distinct
valid ones.  Whether a value fits a slot is the dialog engine's own
:func:`~voicebot.dialog.engine.slot_value`; what a phrase means is what the
server's entity extractor hears in its text.  Pure: no audio, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, TypeAlias

from voicebot.dialog.engine import UserInput, slot_value
from voicebot.dialog.scenario import Lookup, Scenario, SlotSpec
from voicebot.nlu.entities import extract_entities

__all__ = ["MIN_ANSWERS", "TEXT_ANSWERS", "PlannedPhrase", "SlotValue", "answer_text",
           "digit_words", "fits", "lookup_keys", "number_range", "number_words",
           "phrase_plan", "random_value", "wanted_values"]

SlotValue: TypeAlias = str | int | bool
MIN_ANSWERS = 4
"""Distinct valid answers per slot (yes/no has two)."""
TEXT_ANSWERS = (
    "it is about my last order", "my name is Alex Morgan", "the screen stays black",
    "please call me back tomorrow morning", "I moved to a new address",
)
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
_MAX_NUMBER = 999_999_999_999  # the largest a caller says in words here
_DEFAULT_DIGITS = 4  # a digits slot with no length
_DEFAULT_SPAN = 100  # a number slot open at one end (or both: 1..100)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedPhrase:
    """One phrase to speak: an intent example, a slot answer, or neither (ASR bias)."""

    text: str
    intent: str | None = None
    slot_type: str | None = None
    value: SlotValue | None = None

    def meaning(self) -> dict[str, Any]:
        """The manifest's keys for it: ``intent``, or ``slot_type`` and ``value``."""
        if self.intent is not None:
            return {"intent": self.intent}
        if self.slot_type is not None:
            return {"slot_type": self.slot_type, "value": self.value}
        return {}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_DIGIT_WORDS[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_DIGIT_WORDS[n])
    elif n >= 10:
        words.append(_TEENS[n - 10])
    elif n:
        words.append(_DIGIT_WORDS[n])
    return words


def number_words(n: int) -> str:
    """``n`` as a caller says it: 3500 → "three thousand five hundred"."""
    if not 0 <= n <= _MAX_NUMBER:
        raise ValueError(f"{n} is not a number a caller says here (0..{_MAX_NUMBER})")
    if n == 0:
        return "zero"
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [*_below_thousand(n // scale), name]
            n %= scale
    return " ".join(words + _below_thousand(n))


def digit_words(digits: str) -> str:
    """A digit string as a caller reads it out: "4217" → "four two one seven"."""
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"not a digit string: {digits!r}")
    return " ".join(_DIGIT_WORDS[int(d)] for d in digits)


def answer_text(slot_type: str, value: SlotValue) -> str:
    """What a caller says to give ``value`` to a slot of ``slot_type``."""
    if slot_type == "digits":
        return digit_words(str(value))
    if slot_type == "number":
        return number_words(int(value))
    if slot_type == "yes_no":
        return "yes" if value else "no"
    return str(value)


def fits(spec: SlotSpec, value: SlotValue | None) -> bool:
    """Whether the dialog engine takes ``value`` for ``spec`` (type, length, range)."""
    if value is None:
        return False
    return slot_value(spec, UserInput(text=str(value), entities={spec.type: value})) is not None


def number_range(spec: SlotSpec) -> tuple[int, int] | None:
    """The numbers a caller may say for a number slot (None: none it can say)."""
    low, high = spec.min_value, spec.max_value
    if low is None and high is None:
        low, high = 1, _DEFAULT_SPAN
    elif low is None:
        assert high is not None
        low = high - _DEFAULT_SPAN
    elif high is None:
        high = low + _DEFAULT_SPAN
    low, high = max(low, 0), min(high, _MAX_NUMBER)
    return (low, high) if low <= high else None


def random_value(spec: SlotSpec, rng: random.Random) -> SlotValue | None:
    """A value that fits ``spec``, at random (None when no value can)."""
    if spec.type == "digits":
        return "".join(rng.choice("0123456789") for _ in range(spec.length or _DEFAULT_DIGITS))
    if spec.type == "number":
        span = number_range(spec)
        return None if span is None else rng.randint(*span)
    if spec.type == "yes_no":
        return rng.random() < 0.5
    return rng.choice(TEXT_ANSWERS)


def lookup_keys(scenario: Scenario, slot: str) -> tuple[str, ...]:
    """The keys of the tables the scenario looks ``slot`` up in (a caller who gives one
    finds a row: a card the bank knows)."""
    keys: dict[str, None] = {}
    for state in scenario.states.values():
        for action in state.actions:
            if isinstance(action, Lookup) and action.key.strip() == f"{{{slot}}}":
                keys.update(dict.fromkeys(scenario.tables[action.table].rows))
    return tuple(keys)


def _as_value(slot_type: str, raw: object) -> SlotValue | None:
    if slot_type == "digits":
        text = str(raw)
        return text if text.isdigit() and text.isascii() else None
    if slot_type == "number":
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if slot_type == "yes_no":
        return raw if isinstance(raw, bool) else None
    return str(raw) if str(raw).strip() else None


def wanted_values(scenario: Scenario, spec: SlotSpec) -> list[SlotValue]:
    """The values the scenario tests for ``spec`` (lookup keys, branch values) that fit it."""
    raw: list[object] = list(lookup_keys(scenario, spec.name))
    raw += [branch.when.equals for state in scenario.states.values() for branch in state.branch
            if branch.when is not None and branch.when.slot == spec.name]
    values = (_as_value(spec.type, r) for r in raw)
    return list(dict.fromkeys(v for v in values if v is not None and fits(spec, v)))


def _base_plan(scenario: Scenario) -> list[PlannedPhrase]:
    """``Scenario.phrases()`` with their meanings: the intent examples, then the typical
    answers of each slot type the scenario uses (those of its ASR domain per type)."""
    intent_of: dict[str, str] = {}
    for intent, examples in scenario.intents.items():
        for example in examples:
            intent_of.setdefault(example, intent)
    anywhere = {e for intent in scenario.global_on for e in scenario.intents.get(intent, ())}
    domains = scenario.asr_domains()
    kind_of: dict[str, str] = {}
    for slot_type in sorted({slot.type for slot in scenario.slots.values()}):
        domain = scenario.asr_domain(slot_type)
        if domain != scenario.name:
            for text in domains[domain]:
                if text not in anywhere:
                    kind_of.setdefault(text, slot_type)
    plan: list[PlannedPhrase] = []
    for text in dict.fromkeys(scenario.phrases()):
        kind = kind_of.get(text)
        value = extract_entities(text).get(kind) if kind is not None else None
        if text in intent_of:
            plan.append(PlannedPhrase(text=text, intent=intent_of[text]))
        elif kind is not None and value is not None:
            plan.append(PlannedPhrase(text=text, slot_type=kind, value=value))
        else:
            plan.append(PlannedPhrase(text=text))
    return plan


def phrase_plan(scenario: Scenario, *, min_answers: int = MIN_ANSWERS) -> list[PlannedPhrase]:
    """Every phrase a caller of ``scenario`` needs, in a stable order (see the module)."""
    plan = _base_plan(scenario)
    texts = {p.text for p in plan}
    for spec in scenario.slots.values():
        have = {p.value for p in plan if p.slot_type == spec.type and fits(spec, p.value)}
        rng = random.Random(f"{scenario.name}/{spec.name}")
        wanted = wanted_values(scenario, spec)
        candidates: list[SlotValue | None] = list(wanted)
        if spec.type == "yes_no":
            candidates += [True, False]
        elif spec.type == "text":
            candidates += list(TEXT_ANSWERS)
        candidates += [random_value(spec, rng) for _ in range(8 * min_answers)]
        for value in candidates:
            if value is None or value in have or not fits(spec, value):
                continue
            if len(have) >= min_answers and value not in wanted:
                continue
            text = answer_text(spec.type, value)
            if text in texts:
                continue
            plan.append(PlannedPhrase(text=text, slot_type=spec.type, value=value))
            texts.add(text)
            have.add(value)
    return plan
