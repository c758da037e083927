"""The dialog interpreter: a pure state machine over a :class:`Scenario`.

Inputs are the caller's understood turns (:class:`UserInput`), webhook results
and no-input timeouts; outputs are prompts to speak, webhook requests to make,
the end of the call (transfer or hang-up), and, first, :class:`Retried` when a turn
was not understood (a reprompt, or the state's fallback once its retries are spent:
what contact-center metrics count).  It does no I/O and reads no clock, so it is
driven the same way by the server, tests and tools; :func:`sort_outputs` sorts a
step's outputs for its runner.
"""

from __future__ import annotations

import copy
import logging
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from voicebot.dialog.scenario import (
    Action,
    Ask,
    ClearSlot,
    Hangup,
    Lookup,
    Say,
    Scenario,
    SetSlot,
    SlotSpec,
    State,
    Transfer,
    Webhook,
)
from voicebot.errors import DialogError
from voicebot.types import EntityValue

__all__ = [
    "DEFAULT_REPROMPT",
    "DialogEngine",
    "DialogOutput",
    "DialogStep",
    "EndCall",
    "Prompt",
    "Retried",
    "UserInput",
    "WebhookRequest",
    "slot_value",
    "sort_outputs",
]

log = logging.getLogger(__name__)

_MAX_STEPS = 200  # transitions without waiting for the caller: a scenario loop
DEFAULT_REPROMPT = "Sorry, I did not understand that."


@dataclass(frozen=True, slots=True)
class UserInput:
    """One understood caller turn (speech or keypad), or a no-input timeout."""

    text: str = ""
    intent: str | None = None
    confidence: float = 0.0
    entities: Mapping[str, EntityValue] = field(default_factory=dict)
    source: Literal["speech", "dtmf", "no_input"] = "speech"
    alternatives: tuple[tuple[str, float], ...] = ()
    """The runner-up intents with their confidences, best first (``IntentResult.scores``
    after the first): the clarifying question needs the second one."""


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    request_id: int
    url: str
    payload: Mapping[str, Any]
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class EndCall:
    kind: Literal["transfer", "hangup"]
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Retried:
    """The caller's turn (or silence) did not answer state ``state``: it is asked again,
    or, with ``fallback``, its retries are spent and the state's fallback follows."""

    state: str
    fallback: bool


DialogOutput = Prompt | WebhookRequest | EndCall | Retried


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogStep:
    """A step's outputs sorted: the prompts' texts, the webhooks to call, how the call
    ends (None: it goes on) and whether the step retried."""

    texts: tuple[str, ...] = ()
    webhooks: tuple[WebhookRequest, ...] = ()
    final: EndCall | None = None
    retried: Retried | None = None


def sort_outputs(outputs: Sequence[DialogOutput]) -> DialogStep:
    """``outputs`` of one dialog step, sorted by kind (each kind in order)."""
    ends = [o for o in outputs if isinstance(o, EndCall)]
    retries = [o for o in outputs if isinstance(o, Retried)]
    return DialogStep(texts=tuple(o.text for o in outputs if isinstance(o, Prompt)),
                      webhooks=tuple(o for o in outputs if isinstance(o, WebhookRequest)),
                      final=ends[-1] if ends else None, retried=retries[0] if retries else None)


def slot_value(spec: SlotSpec, user: UserInput) -> EntityValue | None:
    """The value ``user`` gives for slot ``spec``, or None when it gives none valid."""
    if spec.type == "digits":
        digits = user.entities.get("digits")
        if isinstance(digits, str) and (spec.length is None or len(digits) == spec.length):
            return digits
        return None
    if spec.type == "number":
        number = user.entities.get("number")
        if not isinstance(number, int) or isinstance(number, bool):
            return None
        if spec.min_value is not None and number < spec.min_value:
            return None
        if spec.max_value is not None and number > spec.max_value:
            return None
        return number
    if spec.type == "yes_no":
        answer = user.entities.get("yes_no")
        return answer if isinstance(answer, bool) else None
    return user.text.strip() or None


class _Formatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        head, *rest = field_name.split(".")
        value: Any = kwargs.get(head, "")
        for part in rest:
            value = value.get(part, "") if isinstance(value, Mapping) else ""
        return value, head


_FORMATTER = _Formatter()


class DialogEngine:
    """Runs one call's dialog; one instance per call."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.state: State = scenario.states[scenario.start]
        self.slots: dict[str, EntityValue] = {}
        self.values: dict[str, Mapping[str, Any]] = {}
        self.finished = False
        self.retries = 0
        self._pc = 0
        self._waiting: Literal["slot", "intent", "webhook"] | None = None
        self._webhook_id = 0
        self._carry: Mapping[str, EntityValue] = {}
        self._choice: tuple[str, str] | None = None  # the two intents just asked about

    @property
    def listening(self) -> bool:
        """True while the dialog waits for the caller."""
        return self._waiting in ("slot", "intent")

    @property
    def expected_slot(self) -> SlotSpec | None:
        if self._waiting != "slot":
            return None
        action = self.state.actions[self._pc]
        assert isinstance(action, Ask)
        return self.scenario.slots[action.slot]

    def start(self) -> list[DialogOutput]:
        return self._enter(self.scenario.start)

    def fork(self) -> DialogEngine:
        """A copy that can take an input without changing this one (a speculative
        reply: what would the dialog say?).  The scenario is shared; the call's
        mutable state (slots, values, the place in the state) is copied."""
        twin = copy.copy(self)
        twin.slots, twin.values = dict(self.slots), dict(self.values)
        return twin

    def render(self, text: str) -> str:
        return _FORMATTER.vformat(text, (), {**self.values, **self.slots})

    # ------------------------------------------------------------------ inputs

    def handle(self, user: UserInput) -> list[DialogOutput]:
        """The caller said (or keyed) something, or stayed silent too long."""
        if self.finished or not self.listening:
            return []
        spec = self.expected_slot
        if spec is not None:
            value = slot_value(spec, user)
            if value is not None:
                self.slots[spec.name] = value
                self.retries = 0
                self._waiting = None
                self._pc += 1
                return self._run()
        else:
            choice, self._choice = self._choice, None
            target = self._chosen(user, choice) or self._accepted(user, self.state.on)
            if target is not None:
                self._carry = user.entities
                return self._enter(target)
            question = self._clarify(user, choice)
            if question is not None:
                return question
        target = self._accepted(user, self.scenario.global_on)
        if target is not None and (spec is None or self._may_leave(spec, user)):
            self._carry = user.entities
            return self._enter(target)
        return self._retry(spec)

    def webhook_result(
        self, request_id: int, data: Mapping[str, Any] | None, error: str | None
    ) -> list[DialogOutput]:
        if self._waiting != "webhook" or request_id != self._webhook_id:
            return []  # stale answer of a timed-out or abandoned request
        action = self.state.actions[self._pc]
        assert isinstance(action, Webhook)
        self._waiting = None
        if error is not None:
            log.warning("webhook %s failed: %s", action.url, error)
            if action.on_error is not None:
                return self._enter(action.on_error)
            data = {}
        self.values[action.into] = dict(data or {})
        self._pc += 1
        return self._run()

    # ------------------------------------------------------------------ machinery

    def _accepted(self, user: UserInput, table: Mapping[str, str]) -> str | None:
        if user.intent is None or user.confidence < self.scenario.settings.nlu_threshold:
            return None
        return table.get(user.intent)

    def _clarify(self, user: UserInput, asked: tuple[str, str] | None) -> list[DialogOutput] | None:
        """Ask which of the two best intents the caller meant when they are close
        (``clarify_margin``), together confident and lead apart; not twice in a row."""
        settings = self.scenario.settings
        if settings.clarify_margin <= 0.0 or user.intent is None or not user.alternatives:
            return None
        second, p2 = user.alternatives[0]
        p1 = user.confidence
        if p1 - p2 >= settings.clarify_margin or p1 + p2 < settings.nlu_threshold:
            return None
        targets = {**self.scenario.global_on, **self.state.on}
        first_to, second_to = targets.get(user.intent), targets.get(second)
        if first_to is None or second_to is None or first_to == second_to:
            return None
        if asked is not None and set(asked) == {user.intent, second}:
            return None
        self._choice = (user.intent, second)
        labels = self.scenario.intent_labels
        text = settings.clarify_prompt.format(
            first=labels.get(user.intent, user.intent.replace("_", " ")),
            second=labels.get(second, second.replace("_", " ")))
        return [Prompt(text)]

    def _chosen(self, user: UserInput, asked: tuple[str, str] | None) -> str | None:
        """The answer to a clarifying question: the more likely of the two intents asked
        about, when it has at least half of ``nlu_threshold``."""
        if asked is None or user.intent is None:
            return None
        confidence = {**dict(user.alternatives), user.intent: user.confidence}
        pick = max(asked, key=lambda name: confidence.get(name, 0.0))
        other = asked[1] if pick == asked[0] else asked[0]
        p_pick, p_other = confidence.get(pick, 0.0), confidence.get(other, 0.0)
        if p_pick <= p_other or p_pick < self.scenario.settings.nlu_threshold / 2:
            return None
        return {**self.scenario.global_on, **self.state.on}.get(pick)

    def _may_leave(self, spec: SlotSpec, user: UserInput) -> bool:
        """A global intent leaves a slot being asked for only when it is confident and
        the answer is not slot-like: a caller saying "zero eight five nine" that ASR
        half-heard as "zero eight bye nine" is asked again, never hung up on."""
        if user.confidence < self.scenario.settings.slot_escape_threshold:
            return False
        slot_like = {"digits": ("digits",), "number": ("digits", "number"),
                     "yes_no": ("yes_no",)}.get(spec.type, ())
        return not any(key in user.entities for key in slot_like)

    def _retry(self, spec: SlotSpec | None) -> list[DialogOutput]:
        self.retries += 1
        if self.retries <= self.scenario.settings.max_retries:
            retried = Retried(state=self.state.name, fallback=False)
            if spec is not None:
                return [retried, Prompt(self.render(spec.reprompt))]
            fallback = self.state.fallback
            text = fallback.reprompt if fallback and fallback.reprompt else None
            return [retried, Prompt(self.render(text or DEFAULT_REPROMPT))]
        retried = Retried(state=self.state.name, fallback=True)
        target = (self.state.fallback.then if self.state.fallback else None) or (
            self.scenario.settings.fallback_state
        )
        if target is None:
            self.finished = True
            return [retried, EndCall("hangup", "no_match")]
        return [retried, *self._enter(target)]

    def _enter(self, name: str) -> list[DialogOutput]:
        self.state = self.scenario.states[name]
        self._choice = None
        self._pc = 0
        self.retries = 0
        self._waiting = None
        return self._run()

    def _run(self) -> list[DialogOutput]:
        out: list[DialogOutput] = []
        for _ in range(_MAX_STEPS):
            while self._pc < len(self.state.actions):
                action = self.state.actions[self._pc]
                jump = self._do(action, out)
                if self._waiting is not None or self.finished:
                    return out
                if jump is not None:
                    self._set_state(jump)
                    break
                self._pc += 1
            else:
                nxt = self._after_actions()
                if nxt is None:
                    return out
                self._set_state(nxt)
        self.finished = True
        raise DialogError(f"scenario {self.scenario.name} loops without waiting for the caller")

    def _set_state(self, name: str) -> None:
        self.state = self.scenario.states[name]
        self._pc = 0
        self.retries = 0

    def _after_actions(self) -> str | None:
        state = self.state
        if state.on:
            self._waiting = "intent"
            self._carry = {}
            return None
        for branch in state.branch:
            if branch.when is None or self.slots.get(branch.when.slot) == branch.when.equals:
                return branch.goto
        return state.next

    def _do(self, action: Action, out: list[DialogOutput]) -> str | None:
        """Run one action; returns a state to jump to, or None to go on."""
        if isinstance(action, Say):
            out.append(Prompt(self.render(action.text)))
        elif isinstance(action, Ask):
            if action.slot in self.slots:
                return None
            spec = self.scenario.slots[action.slot]
            carried = slot_value(spec, UserInput(entities=self._carry))
            if carried is not None and spec.type in ("digits", "number"):
                self.slots[spec.name] = carried
                return None
            out.append(Prompt(self.render(spec.prompt)))
            self._waiting = "slot"
        elif isinstance(action, SetSlot):
            self.slots[action.slot] = self.render(action.value)
        elif isinstance(action, ClearSlot):
            self.slots.pop(action.slot, None)
        elif isinstance(action, Lookup):
            key = self.render(action.key)
            row = self.scenario.tables[action.table].rows.get(key)
            if row is None and action.missing is not None:
                return action.missing
            self.values[action.into] = row or {}
        elif isinstance(action, Webhook):
            self._webhook_id += 1
            payload = {"scenario": self.scenario.name, "state": self.state.name,
                       "slots": dict(self.slots)}
            out.append(WebhookRequest(self._webhook_id, action.url, payload, action.timeout_ms))
            self._waiting = "webhook"
        elif isinstance(action, Transfer):
            out.append(EndCall("transfer", action.target))
            self.finished = True
        elif isinstance(action, Hangup):
            out.append(EndCall("hangup", action.reason))
            self.finished = True
        return None
