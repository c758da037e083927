"""Call scripts for any scenario: a caller walks the scenario's own dialog.

A :class:`CallPlanner` runs the scenario in the real dialog interpreter
(:class:`~voicebot.dialog.engine.DialogEngine`, pure) and plays the caller: where the
dialog waits for an intent it says an example of one the current state accepts
(its ``on`` intents or the ``global`` ones), where it asks for a slot it answers
with a phrase whose value fits the slot's type and constraints, until the dialog
hangs up or transfers, or the caller's turns run out.  Each script is therefore a
path the server's dialog takes too, as long as the server hears what was meant.

Which intent (:class:`WalkPolicy`): the intents whose target ends the call at once
are found by trying them on a copy of the dialog (``hangup``: a goodbye, ``transfer``:
an agent request).  A share of callers ask for an agent first; otherwise a caller
takes a flow it has not taken yet and, once a task is done (it answered a slot, or
the dialog moved on past where its last intent led), says goodbye with
``end_share``, or goes on with another flow.  Slot answers prefer values the
scenario knows (a table key the slot is looked up by: a card the bank has).  Over
8 kHz lines digits slots are typed on the keypad (``keypad_digits``), closed with
``#``.  Webhooks are taken to answer ``{}``.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace
from pathlib import Path

from loadtests.phrases import (
    DEFAULT_SCENARIO,
    PhraseBook,
    Script,
    Step,
    audio_dir,
    scenario_file,
)
from loadtests.slot_values import fits, lookup_keys, random_value
from voicebot.dialog.engine import DialogEngine, DialogOutput, EndCall, UserInput, WebhookRequest
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Ask, Scenario, SlotSpec
from voicebot.nlu.entities import extract_entities

__all__ = ["CallPlanner", "WalkPolicy", "load_planner"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkPolicy:
    max_turns: int = 8  # caller turns at most; the caller hangs up after the last
    agent_share: float = 0.25  # callers who ask for an agent (a transfer intent) first
    end_share: float = 0.8  # after a task, callers who then say goodbye


@dataclass(frozen=True, slots=True, kw_only=True)
class _Option:
    intent: str
    target: str
    ends: str | None  # "hangup" / "transfer" when saying it ends the call at once


class CallPlanner:
    """Scripts for calls to ``scenario`` spoken from ``book``."""

    def __init__(self, scenario: Scenario, book: PhraseBook,
                 policy: WalkPolicy = WalkPolicy()) -> None:
        self.scenario, self.book, self.policy = scenario, book, policy
        self._known = {name: lookup_keys(scenario, name) for name in scenario.slots}

    def problems(self) -> list[str]:
        """What the phrasebook lacks for this scenario (empty: every intent a state
        accepts has a phrase, every slot asked has a valid answer)."""
        out: list[str] = []
        if self.book.scenario not in (None, self.scenario.name):
            out.append(f"the caller audio is {self.book.scenario}'s, not {self.scenario.name}'s")
        accepted = dict.fromkeys([*self.scenario.global_on,
                                  *(i for s in self.scenario.states.values() for i in s.on)])
        out += [f"no phrase says intent {i!r}" for i in accepted if not self.book.saying(i)]
        asked = dict.fromkeys(a.slot for s in self.scenario.states.values()
                              for a in s.actions if isinstance(a, Ask))
        out += [f"no phrase answers slot {name!r} ({self.scenario.slots[name].type})"
                for name in asked if not self._answers(self.scenario.slots[name])]
        return out

    def script(self, rng: random.Random, *, barge_in: bool = False,
               keypad_digits: bool = False) -> Script:
        """One call: ``barge_in`` says the first line over the greeting."""
        engine = DialogEngine(self.scenario)
        self._settle(engine, engine.start())
        steps: list[Step] = []
        said: list[str] = []
        targets: set[str] = set()
        last_target: str | None = None
        answered = False
        while engine.listening and not engine.finished and len(steps) < self.policy.max_turns:
            spec = engine.expected_slot
            if spec is not None:
                step, user = self._answer(spec, rng, keypad_digits=keypad_digits)
                answered = True
            else:
                task_done = answered or (last_target is not None
                                         and engine.state.name != last_target)
                option = self._choose(engine, rng, first=not said, task_done=task_done,
                                      turns_left=self.policy.max_turns - len(steps),
                                      targets=targets)
                if option is None:
                    break
                phrase = rng.choice(self.book.saying(option.intent))
                step = Step(phrase)
                user = UserInput(text=phrase.text, intent=option.intent, confidence=1.0,
                                 entities=extract_entities(phrase.text))
                said.append(option.intent)
                targets.add(option.target)
                last_target, answered = option.target, False
            steps.append(step)
            self._settle(engine, engine.handle(user))
        if barge_in and steps:
            steps[0] = replace(steps[0], barge_in=True)
        name = ">".join(said) or "answers"
        return Script(f"{name}{'+barge-in' if barge_in else ''}", tuple(steps))

    # ------------------------------------------------------------------ the caller's choices

    def _choose(self, engine: DialogEngine, rng: random.Random, *, first: bool,
                task_done: bool, turns_left: int, targets: set[str]) -> _Option | None:
        options = self._options(engine)
        hangups = [o for o in options if o.ends == "hangup"]
        transfers = [o for o in options if o.ends == "transfer"]
        flows = [o for o in options if o.ends is None]
        fresh = [o for o in flows if o.target not in targets]
        if first and transfers and rng.random() < self.policy.agent_share:
            return rng.choice(transfers)
        endings = hangups or transfers
        if endings and (not flows or turns_left <= 2
                        or (task_done and rng.random() < self.policy.end_share)):
            return rng.choice(endings)
        pool = fresh or flows or endings
        return rng.choice(pool) if pool else None

    def _options(self, engine: DialogEngine) -> list[_Option]:
        """The intents the dialog takes here that the phrasebook can say."""
        state_on, global_on = engine.state.on, self.scenario.global_on
        options = []
        for intent in dict.fromkeys([*state_on, *global_on]):
            if self.book.saying(intent):
                target = state_on.get(intent) or global_on[intent]
                options.append(_Option(intent=intent, target=target,
                                       ends=self._ends(engine, intent)))
        return options

    def _ends(self, engine: DialogEngine, intent: str) -> str | None:
        """How saying ``intent`` now ends the call (None: the dialog goes on)."""
        probe = copy.deepcopy(engine, {id(self.scenario): self.scenario})
        outputs = self._settle(probe, probe.handle(UserInput(intent=intent, confidence=1.0)))
        ends = [o.kind for o in outputs if isinstance(o, EndCall)]
        return ends[-1] if probe.finished and ends else None

    def _answers(self, spec: SlotSpec) -> list[Step]:
        return [Step(p) for p in self.book.answering(spec.type) if fits(spec, p.value)]

    def _answer(self, spec: SlotSpec, rng: random.Random, *,
                keypad_digits: bool) -> tuple[Step, UserInput]:
        known = self._known.get(spec.name, ())
        answers = self._answers(spec)
        if spec.type == "digits" and (keypad_digits or not answers):
            values = [k for k in known if fits(spec, k)] or \
                [str(s.phrase.value) for s in answers if s.phrase is not None]
            value = rng.choice(values) if values else str(random_value(spec, rng))
            return Step(dtmf=value + "#"), UserInput(
                text=value, entities={"digits": value, "number": int(value)}, source="dtmf")
        preferred = [s for s in answers if s.phrase is not None and s.phrase.value in known]
        if not (preferred or answers):
            raise ValueError(f"no phrase answers slot {spec.name!r} ({spec.type}) of "
                             f"{self.scenario.name}: regenerate its caller audio")
        step = rng.choice(preferred or answers)
        assert step.phrase is not None
        return step, UserInput(text=step.phrase.text, entities=extract_entities(step.phrase.text))

    @staticmethod
    def _settle(engine: DialogEngine, outputs: list[DialogOutput]) -> list[DialogOutput]:
        """``outputs`` and what follows once every webhook has answered ``{}``."""
        out = list(outputs)
        pending = [o for o in outputs if isinstance(o, WebhookRequest)]
        while pending:
            more = engine.webhook_result(pending[-1].request_id, {}, None)
            out += more
            pending = [o for o in more if isinstance(o, WebhookRequest)]
        return out


def load_planner(scenario: str | Path = DEFAULT_SCENARIO, audio: str | Path | None = None, *,
                 policy: WalkPolicy = WalkPolicy()) -> CallPlanner:
    """The planner for a scenario (a file, or a name in ``scenarios/``) and its caller
    audio (default: :func:`~loadtests.phrases.audio_dir`); raises ``FileNotFoundError``
    or ``ValueError`` naming the command that makes the audio when it is missing or
    does not fit the scenario."""
    path = scenario_file(scenario)
    loaded = load_scenario(path)
    folder = Path(audio) if audio else audio_dir(loaded.name)
    make = f"python -m bench caller-audio --scenario {path} --out {folder}"
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"no caller audio for {loaded.name} in {folder}: run `{make}`")
    planner = CallPlanner(loaded, PhraseBook.load(folder), policy)
    problems = planner.problems()
    if problems:
        raise ValueError(f"the caller audio in {folder} does not fit {path}: "
                         f"{'; '.join(problems)}; run `{make}`")
    return planner
