"""The scenario format's frozen data model: slots, actions, states, tables, settings.

A scenario is a YAML file (documented in ``docs/scenarios.md``) with intents
and their example phrases, slots, data tables and a graph of states.
:mod:`voicebot.dialog.parsing` turns each section into these types and
:mod:`voicebot.dialog.loader` loads and cross-checks a whole file, reporting
every problem at load as ``file:line: problem``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

__all__ = [
    "ENDPOINT_KEYS",
    "TURN_KEYS",
    "Action",
    "Ask",
    "Branch",
    "ClearSlot",
    "Condition",
    "Fallback",
    "Hangup",
    "Lookup",
    "Say",
    "Scenario",
    "ScenarioSettings",
    "SetSlot",
    "SlotSpec",
    "SlotType",
    "State",
    "Table",
    "Transfer",
    "Webhook",
    "template_fields",
]

SlotType: TypeAlias = Literal["digits", "number", "yes_no", "text"]


@dataclass(frozen=True, slots=True)
class SlotSpec:
    name: str
    type: SlotType
    prompt: str
    reprompt: str
    length: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    sensitive: bool = False
    """PII (a card number): masked in logs, call records, metrics and end-of-call
    webhooks; the recording pauses while it is asked for (voicebot.redact)."""


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Ask:
    slot: str


@dataclass(frozen=True, slots=True)
class SetSlot:
    slot: str
    value: str


@dataclass(frozen=True, slots=True)
class ClearSlot:
    slot: str


@dataclass(frozen=True, slots=True)
class Lookup:
    table: str
    key: str
    into: str
    missing: str | None


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    into: str
    timeout_ms: int
    on_error: str | None


@dataclass(frozen=True, slots=True)
class Transfer:
    target: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


Action: TypeAlias = Say | Ask | SetSlot | ClearSlot | Lookup | Webhook | Transfer | Hangup


@dataclass(frozen=True, slots=True)
class Condition:
    slot: str
    equals: str | int | bool


@dataclass(frozen=True, slots=True)
class Branch:
    when: Condition | None
    goto: str


@dataclass(frozen=True, slots=True)
class Fallback:
    reprompt: str | None
    then: str | None


@dataclass(frozen=True, slots=True)
class State:
    name: str
    actions: tuple[Action, ...]
    on: Mapping[str, str] = field(default_factory=dict)
    next: str | None = None
    branch: tuple[Branch, ...] = ()
    fallback: Fallback | None = None


@dataclass(frozen=True, slots=True)
class Table:
    key: str
    rows: Mapping[str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class ScenarioSettings:
    nlu_threshold: float = 0.5
    slot_escape_threshold: float = 0.8
    """While a slot is asked for, a global intent (goodbye, operator…) needs this much
    confidence, and an answer that is not slot-like, to leave it."""
    max_retries: int = 2
    barge_in_min_ms: int = 300
    no_input_timeout_ms: int = 8000
    fallback_state: str | None = None
    endpointing: Mapping[str, float] = field(default_factory=dict)
    turn_taking: Mapping[str, float | str] = field(default_factory=dict)
    """The end-of-turn policy's keys of ``settings.endpointing`` (:data:`TURN_KEYS`)."""
    recording: bool | None = None
    """Record this scenario's calls (True), never (False), or as the server's
    ``recordings`` setting says (None)."""
    clarify_margin: float = 0.0
    """Ask which one the caller meant when the two best intents' probabilities are
    closer than this (and together reach ``nlu_threshold``); 0: never ask."""
    clarify_prompt: str = "Sorry, did you want to {first}, or to {second}?"
    """The question; ``{first}``/``{second}`` are the two intents' labels."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: Path
    language: str
    settings: ScenarioSettings
    intents: Mapping[str, tuple[str, ...]]
    slots: Mapping[str, SlotSpec]
    tables: Mapping[str, Table]
    start: str
    global_on: Mapping[str, str]
    states: Mapping[str, State]
    out_of_scope: tuple[str, ...] = ()
    """Phrases the scenario does not handle: they train the NLU's out-of-scope rejection."""
    intent_labels: Mapping[str, str] = field(default_factory=dict)
    """An intent's words in the clarifying question ("check your balance")."""

    def phrases(self) -> list[str]:
        """Every phrase a caller may say here: intent examples plus answers to slots."""
        out = [p for examples in self.intents.values() for p in examples]
        for kind in sorted({slot.type for slot in self.slots.values()}):
            out.extend(_SLOT_PHRASES.get(kind, ()))
        return out

    def asr_domain(self, slot_type: str | None = None) -> str:
        """The ASR domain to listen with while the dialog expects ``slot_type``.

        Answers to a digits, number or yes/no question get a recognizer biased
        to such answers (plus the global intents, so "an agent please" still
        works); anything else uses the whole scenario's domain.
        """
        return f"{self.name}/{slot_type}" if slot_type in _SLOT_PHRASES else self.name

    def asr_domains(self) -> dict[str, list[str]]:
        """Every ASR domain of this scenario with the phrases that bias it."""
        domains = {self.name: self.phrases()}
        anywhere = [p for intent in self.global_on for p in self.intents.get(intent, ())]
        for kind in sorted({slot.type for slot in self.slots.values()}):
            if kind in _SLOT_PHRASES:
                domains[self.asr_domain(kind)] = [*_SLOT_PHRASES[kind], *anywhere]
        return domains


_SLOT_PHRASES: dict[str, tuple[str, ...]] = {
    "digits": (
        "four two one seven", "nine zero three one", "five five six six", "one two three four",
        "it's eight one zero nine", "the last four digits are two four six eight",
        "oh seven three five", "double seven one two",
    ),
    "number": ("twenty one", "one hundred", "three thousand five hundred", "forty two"),
    "yes_no": (
        "yes", "no", "yes please", "no thanks", "yeah", "nope", "sure", "correct",
        "yes please block it", "no don't block it", "go ahead", "not now",
    ),
}

ENDPOINT_KEYS = ("min_silence_ms", "digits_min_silence_ms", "speech_pad_ms", "max_utterance_s",
                 "min_speech_ms")
"""The keys of ``settings.endpointing`` (voicebot.vad.endpointer.EndpointConfig fields)."""

TURN_KEYS = ("turn_policy", "short_pause_ms", "max_silence_ms", "digits_max_silence_ms",
             "turn_threshold")
"""The end-of-turn policy's keys of ``settings.endpointing`` (voicebot.vad.turn_records
.TurnPolicyConfig fields), kept apart in ``ScenarioSettings.turn_taking``."""


def template_fields(text: str) -> list[str]:
    """Names a prompt template interpolates: ``"{card.balance}"`` → ``["card"]``."""
    names = []
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None:
            names.append(name.split(".", 1)[0].split("[", 1)[0])
    return names
