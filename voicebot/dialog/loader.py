"""Load and cross-check scenario files.

:func:`load_scenario` parses one YAML file into a :class:`Scenario` and checks
every reference (states, slots, tables, template fields) so that an invalid
scenario is rejected at load with ``file:line: problem``, never mid-call.
:func:`parse_scenario` does the work on a parsed document; with a collecting
:class:`~voicebot.dialog.context.ParseContext` it records every problem
instead (``voicebot check``, :mod:`voicebot.dialog.checking`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from voicebot.dialog.context import ParseContext
from voicebot.dialog.parsing import (
    parse_intent_labels,
    parse_intents,
    parse_out_of_scope,
    parse_slots,
    parse_state,
    parse_tables,
)
from voicebot.dialog.scenario import (
    ENDPOINT_KEYS,
    TURN_KEYS,
    Action,
    Ask,
    ClearSlot,
    Lookup,
    Say,
    Scenario,
    ScenarioSettings,
    SetSlot,
    SlotSpec,
    State,
    Webhook,
    template_fields,
)
from voicebot.dialog.yamlnodes import LineDict, LocatedError, load_yaml_with_lines
from voicebot.errors import ScenarioError

__all__ = ["load_scenario", "load_scenarios", "parse_scenario"]

log = logging.getLogger(__name__)

_TOP_KEYS = (
    "version", "name", "language", "description", "settings", "intents", "slots",
    "data", "start", "global", "states", "out_of_scope",
)
_SETTINGS_KEYS = (
    "nlu_threshold", "slot_escape_threshold", "max_retries", "barge_in_min_ms",
    "no_input_timeout_ms", "fallback_state", "endpointing", "recording",
    "clarify_margin", "clarify_prompt",
)


def _parse_settings(ctx: ParseContext, doc: LineDict) -> ScenarioSettings:
    node = ctx.mapping(doc, "settings", doc.get("settings") or LineDict())
    mark = ctx.mark()
    ctx.unknown_keys(node, _SETTINGS_KEYS, "settings")
    defaults = ScenarioSettings()
    for key in ("nlu_threshold", "slot_escape_threshold", "clarify_margin"):
        value = node.get(key, 0.5)
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not 0.0 <= value <= 1.0:
            ctx.report(ctx.fail(node, key, f"'{key}' must be between 0 and 1"))
    for key in ("max_retries", "barge_in_min_ms", "no_input_timeout_ms"):
        value = node.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            ctx.report(ctx.fail(node, key, f"'{key}' must be a whole number ≥ 0"))
    endpointing = ctx.attempt(_endpointing, ctx, node)
    turn_taking = ctx.attempt(_turn_taking, ctx, node)
    recording = ctx.attempt(_recording, ctx, node)
    ctx.settle(mark)
    assert endpointing is not None and turn_taking is not None
    return ScenarioSettings(
        nlu_threshold=float(node.get("nlu_threshold", defaults.nlu_threshold)),
        slot_escape_threshold=float(node.get("slot_escape_threshold",
                                             defaults.slot_escape_threshold)),
        max_retries=node.get("max_retries", defaults.max_retries),
        barge_in_min_ms=node.get("barge_in_min_ms", defaults.barge_in_min_ms),
        no_input_timeout_ms=node.get("no_input_timeout_ms", defaults.no_input_timeout_ms),
        fallback_state=node.get("fallback_state"),
        endpointing=endpointing,
        turn_taking=turn_taking,
        recording=recording,
        clarify_margin=float(node.get("clarify_margin", defaults.clarify_margin)),
        clarify_prompt=str(node.get("clarify_prompt", defaults.clarify_prompt)),
    )


def _endpointing(ctx: ParseContext, node: LineDict) -> dict[str, float]:
    endpointing = ctx.mapping(node, "endpointing", node.get("endpointing") or LineDict())
    ctx.unknown_keys(endpointing, (*ENDPOINT_KEYS, *TURN_KEYS), "endpointing")
    for key, value in endpointing.items():
        if key in TURN_KEYS:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            ctx.report(ctx.fail(endpointing, key, f"'{key}' must be a positive number"))
    return {k: float(v) for k, v in endpointing.items() if k not in TURN_KEYS}


def _turn_taking(ctx: ParseContext, node: LineDict) -> dict[str, float | str]:
    """The end-of-turn policy's keys of ``endpointing`` (docs/scenarios.md)."""
    endpointing = node.get("endpointing")
    if not isinstance(endpointing, LineDict):
        return {}  # none, or reported by _endpointing
    out: dict[str, float | str] = {}
    for key, value in endpointing.items():
        if key not in TURN_KEYS:
            continue  # the endpointer's (_endpointing)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "turn_policy" and value in ("silence", "model"):
            out[key] = str(value)
        elif key == "turn_threshold" and number and 0.0 < value <= 1.0:
            out[key] = float(value)
        elif key.endswith("_ms") and number and value > 0:
            out[key] = float(value)
        else:
            ctx.report(ctx.fail(endpointing, key, _TURN_PROBLEMS.get(
                key, f"'{key}' must be a positive number")))
    short, longest = out.get("short_pause_ms"), out.get("max_silence_ms")
    if isinstance(short, float) and isinstance(longest, float) and short >= longest:
        ctx.report(ctx.fail(endpointing, "short_pause_ms",
                            "'short_pause_ms' must be shorter than 'max_silence_ms'"))
    return out


_TURN_PROBLEMS = {
    "turn_policy": "'turn_policy' must be silence or model",
    "turn_threshold": "'turn_threshold' must be a number in (0, 1]",
}


def _recording(ctx: ParseContext, node: LineDict) -> bool | None:
    value = node.get("recording")
    if value is not None and not isinstance(value, bool):
        raise ctx.fail(node, "recording", "'recording' must be true or false")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class _Parsed:
    """What parsed of a document, and the names it declares (None: that section is
    broken, so references into it are not checked)."""

    states: Mapping[str, State]
    slots: Mapping[str, SlotSpec]
    state_names: frozenset[str] | None
    intent_names: frozenset[str] | None
    slot_names: frozenset[str] | None
    table_names: frozenset[str] | None


_NeedState: TypeAlias = Callable[[LineDict, str | None, str | None, str], None]


def _names(doc: LineDict, key: str, *, optional: bool) -> frozenset[str] | None:
    node = doc.get(key)
    if node is None and optional:
        return frozenset()
    return frozenset(node) if isinstance(node, LineDict) else None


def _check_references(ctx: ParseContext, doc: LineDict, parsed: _Parsed,
                      settings: ScenarioSettings | None) -> None:
    def need_state(node: LineDict, key: str | None, name: str | None, what: str) -> None:
        known = parsed.state_names
        if name is not None and known is not None and name not in known:
            ctx.report(ctx.fail(node, key, f"{what} names unknown state '{name}'"))

    def need_intent(node: LineDict, key: str | None, name: str) -> None:
        if parsed.intent_names is not None and name not in parsed.intent_names:
            ctx.report(ctx.fail(node, key, f"unknown intent '{name}'"))

    if "start" in doc:
        need_state(doc, "start", str(doc["start"]), "'start'")
    if settings is not None:
        need_state(doc["settings"] if settings.fallback_state is not None else doc,
                   "fallback_state", settings.fallback_state, "'fallback_state'")
    global_node = doc.get("global")
    if isinstance(global_node, LineDict):
        for intent, target in global_node.items():
            need_intent(global_node, intent, intent)
            need_state(global_node, intent, str(target), f"global intent '{intent}'")
    # Names a template may use: slots, plus what lookups/webhooks store.
    known_names = set(parsed.slot_names or ())
    for state in parsed.states.values():
        known_names.update(a.into for a in state.actions if isinstance(a, Lookup | Webhook))
    for name, state in parsed.states.items():
        node: LineDict = doc["states"][name]
        for intent, target in state.on.items():
            need_intent(node["on"], intent, intent)
            need_state(node["on"], intent, target, f"intent '{intent}'")
        need_state(node, "next", state.next, "'next'")
        for raw, branch in zip(node.get("branch") or [], state.branch, strict=True):
            need_state(raw, "goto", branch.goto, "'branch'")
            if branch.when is not None and parsed.slot_names is not None \
                    and branch.when.slot not in parsed.slot_names:
                ctx.report(ctx.fail(raw, "when", f"branch tests unknown slot "
                                                 f"'{branch.when.slot}'"))
        if state.fallback is not None:
            need_state(node["fallback"], "then", state.fallback.then, "'fallback.then'")
        for raw, action in zip(node.get("actions") or [], state.actions, strict=True):
            _check_action(ctx, parsed, raw, action, known_names, need_state)


def _check_action(ctx: ParseContext, parsed: _Parsed, raw: LineDict, action: Action,
                  known_names: set[str], need_state: _NeedState) -> None:
    kind = next(iter(raw))
    texts: list[str] = []
    if isinstance(action, Say):
        texts.append(action.text)
    elif isinstance(action, Ask | SetSlot | ClearSlot):
        if parsed.slot_names is not None and action.slot not in parsed.slot_names:
            ctx.report(ctx.fail(raw, kind, f"action uses unknown slot '{action.slot}'"))
        spec = parsed.slots.get(action.slot)
        if isinstance(action, Ask) and spec is not None:
            texts += [spec.prompt, spec.reprompt]
    elif isinstance(action, Lookup):
        if parsed.table_names is not None and action.table not in parsed.table_names:
            ctx.report(ctx.fail(raw, kind, f"lookup uses unknown table '{action.table}'"))
        need_state(raw, kind, action.missing, "lookup 'missing'")
        texts.append(action.key)
    elif isinstance(action, Webhook):
        need_state(raw, kind, action.on_error, "webhook 'on_error'")
    for text in texts:
        for field_name in template_fields(text):
            if field_name not in known_names:
                ctx.report(ctx.fail(raw, kind, f"template uses unknown name '{field_name}'"))
                return


def _parse_states(ctx: ParseContext, doc: LineDict) -> dict[str, State]:
    states_node = ctx.mapping(doc, "states", doc["states"])
    states: dict[str, State] = {}
    for name, node in states_node.items():
        state = ctx.attempt(_parse_state_node, ctx, states_node, name, node)
        if state is not None:
            states[name] = state
    return states


def _parse_state_node(ctx: ParseContext, states_node: LineDict, name: str, node: Any) -> State:
    return parse_state(ctx, name, ctx.mapping(states_node, name, node))


def _parse_global(ctx: ParseContext, doc: LineDict) -> dict[str, str]:
    global_on = ctx.mapping(doc, "global", doc.get("global") or LineDict())
    return {str(k): str(v) for k, v in global_on.items()}


def parse_scenario(ctx: ParseContext, doc: Any) -> Scenario | None:
    """The scenario of a parsed document: raises the first problem, or (collecting)
    records them all and returns None when there were any."""
    path = ctx.path
    if not isinstance(doc, LineDict):
        raise LocatedError(path, 1, 1, "a scenario must be a YAML mapping")
    ctx.unknown_keys(doc, _TOP_KEYS, "scenario")
    version = doc.get("version", 1)
    if version != 1:
        ctx.report(ctx.fail(doc, "version", f"scenario format version {version!r} is not "
                                            "supported"))
    for key in ("name", "start", "states", "intents"):
        if key not in doc:
            ctx.report(LocatedError(path, 1, 1, f"missing '{key}'"))
    states = ctx.attempt(_parse_states, ctx, doc) if "states" in doc else None
    global_on = ctx.attempt(_parse_global, ctx, doc)
    settings = ctx.attempt(_parse_settings, ctx, doc)
    intents = ctx.attempt(parse_intents, ctx, doc) if "intents" in doc else None
    slots = ctx.attempt(parse_slots, ctx, doc)
    tables = ctx.attempt(parse_tables, ctx, doc)
    out_of_scope = ctx.attempt(parse_out_of_scope, ctx, doc)
    labels = ctx.attempt(parse_intent_labels, ctx, doc) if "intents" in doc else None
    parsed = _Parsed(states=states or {}, slots=slots or {},
                     state_names=_names(doc, "states", optional=False) if states is not None
                     else None,
                     intent_names=_names(doc, "intents", optional=False),
                     slot_names=_names(doc, "slots", optional=True),
                     table_names=_names(doc, "data", optional=True))
    ctx.attempt(_check_references, ctx, doc, parsed, settings)
    if ctx.problems or states is None or global_on is None or settings is None \
            or intents is None or slots is None or tables is None:
        return None
    return Scenario(
        name=str(doc["name"]), path=path, language=str(doc.get("language", "en-us")),
        settings=settings, intents=intents, slots=slots, tables=tables,
        start=str(doc["start"]), global_on=global_on, states=states,
        out_of_scope=out_of_scope or (), intent_labels=labels or {},
    )


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file; raises :class:`ScenarioError`."""
    path = Path(path)
    scenario = parse_scenario(ParseContext(path), load_yaml_with_lines(path))
    assert scenario is not None  # a normal load raises its first problem
    return scenario


def load_scenarios(paths: Iterable[Path]) -> dict[str, Scenario]:
    """Load several scenario files, keyed by scenario name (names must be unique)."""
    scenarios: dict[str, Scenario] = {}
    for path in paths:
        scenario = load_scenario(path)
        if scenario.name in scenarios:
            raise ScenarioError(
                f"{path}:1: scenario name '{scenario.name}' is already used by "
                f"{scenarios[scenario.name].path}"
            )
        scenarios[scenario.name] = scenario
        log.info("loaded scenario %s from %s (%d states)",
                 scenario.name, path, len(scenario.states))
    return scenarios
