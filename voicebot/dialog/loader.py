"""Load and cross-check scenario files.

:func:`load_scenario` parses one YAML file into a :class:`Scenario` and checks
every reference (states, slots, tables, template fields) so that an invalid
scenario is rejected at load with ``file:line: problem``, never mid-call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from voicebot.dialog.parsing import (
    ParseContext,
    parse_intents,
    parse_slots,
    parse_state,
    parse_tables,
)
from voicebot.dialog.scenario import (
    ENDPOINT_KEYS,
    Ask,
    ClearSlot,
    Lookup,
    Say,
    Scenario,
    ScenarioSettings,
    SetSlot,
    State,
    Webhook,
    template_fields,
)
from voicebot.dialog.yamlnodes import LineDict, load_yaml_with_lines
from voicebot.errors import ScenarioError

__all__ = ["load_scenario", "load_scenarios"]

log = logging.getLogger(__name__)

_TOP_KEYS = (
    "version", "name", "language", "description", "settings", "intents", "slots",
    "data", "start", "global", "states",
)
_SETTINGS_KEYS = (
    "nlu_threshold", "slot_escape_threshold", "max_retries", "barge_in_min_ms",
    "no_input_timeout_ms", "fallback_state", "endpointing", "recording",
)


def _parse_settings(ctx: ParseContext, doc: LineDict) -> ScenarioSettings:
    node = ctx.mapping(doc, "settings", doc.get("settings") or LineDict())
    ctx.unknown_keys(node, _SETTINGS_KEYS, "settings")
    defaults = ScenarioSettings()
    for key in ("nlu_threshold", "slot_escape_threshold"):
        value = node.get(key, 0.5)
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not 0.0 <= value <= 1.0:
            raise ctx.fail(node, key, f"'{key}' must be between 0 and 1")
    for key in ("max_retries", "barge_in_min_ms", "no_input_timeout_ms"):
        value = node.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ctx.fail(node, key, f"'{key}' must be a whole number ≥ 0")
    endpointing = ctx.mapping(node, "endpointing", node.get("endpointing") or LineDict())
    ctx.unknown_keys(endpointing, ENDPOINT_KEYS, "endpointing")
    for key, value in endpointing.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ctx.fail(endpointing, key, f"'{key}' must be a positive number")
    return ScenarioSettings(
        nlu_threshold=float(node.get("nlu_threshold", defaults.nlu_threshold)),
        slot_escape_threshold=float(node.get("slot_escape_threshold",
                                             defaults.slot_escape_threshold)),
        max_retries=node.get("max_retries", defaults.max_retries),
        barge_in_min_ms=node.get("barge_in_min_ms", defaults.barge_in_min_ms),
        no_input_timeout_ms=node.get("no_input_timeout_ms", defaults.no_input_timeout_ms),
        fallback_state=node.get("fallback_state"),
        endpointing={k: float(v) for k, v in endpointing.items()},
        recording=_recording(ctx, node),
    )


def _recording(ctx: ParseContext, node: LineDict) -> bool | None:
    value = node.get("recording")
    if value is not None and not isinstance(value, bool):
        raise ctx.fail(node, "recording", "'recording' must be true or false")
    return value


def _check_references(ctx: ParseContext, doc: LineDict, scenario: Scenario) -> None:
    states_node: LineDict = doc["states"]
    known_states = scenario.states.keys()

    def need_state(node: LineDict, key: str | None, name: str | None, what: str) -> None:
        if name is not None and name not in known_states:
            raise ctx.fail(node, key, f"{what} names unknown state '{name}'")

    def need_intent(node: LineDict, key: str | None, name: str) -> None:
        if name not in scenario.intents:
            raise ctx.fail(node, key, f"unknown intent '{name}'")

    need_state(doc, "start", scenario.start, "'start'")
    need_state(doc, "settings", scenario.settings.fallback_state, "'fallback_state'")
    for intent, target in scenario.global_on.items():
        need_intent(doc, "global", intent)
        need_state(doc, "global", target, f"global intent '{intent}'")
    # Names a template may use: slots, plus what lookups/webhooks store.
    known_names = set(scenario.slots)
    for state in scenario.states.values():
        known_names.update(a.into for a in state.actions if isinstance(a, Lookup | Webhook))
    for name, state in scenario.states.items():
        node = states_node[name]
        _check_state(ctx, scenario, node, state, known_names, need_state, need_intent)


def _check_state(ctx, scenario, node, state, known_names, need_state, need_intent) -> None:  # type: ignore[no-untyped-def]
    for intent, target in state.on.items():
        need_intent(node, "on", intent)
        need_state(node, "on", target, f"intent '{intent}'")
    need_state(node, "next", state.next, "'next'")
    for branch in state.branch:
        need_state(node, "branch", branch.goto, "'branch'")
        if branch.when is not None and branch.when.slot not in scenario.slots:
            raise ctx.fail(node, "branch", f"branch tests unknown slot '{branch.when.slot}'")
    if state.fallback is not None:
        need_state(node, "fallback", state.fallback.then, "'fallback.then'")
    for action in state.actions:
        texts: list[str] = []
        if isinstance(action, Say):
            texts.append(action.text)
        elif isinstance(action, Ask | SetSlot | ClearSlot):
            if action.slot not in scenario.slots:
                raise ctx.fail(node, "actions", f"action uses unknown slot '{action.slot}'")
            if isinstance(action, Ask):
                spec = scenario.slots[action.slot]
                texts += [spec.prompt, spec.reprompt]
        elif isinstance(action, Lookup):
            if action.table not in scenario.tables:
                raise ctx.fail(node, "actions", f"lookup uses unknown table '{action.table}'")
            need_state(node, "actions", action.missing, "lookup 'missing'")
            texts.append(action.key)
        elif isinstance(action, Webhook):
            need_state(node, "actions", action.on_error, "webhook 'on_error'")
        for text in texts:
            for field_name in template_fields(text):
                if field_name not in known_names:
                    raise ctx.fail(node, "actions", f"template uses unknown name '{field_name}'")


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file; raises :class:`ScenarioError`."""
    path = Path(path)
    ctx = ParseContext(path)
    doc = load_yaml_with_lines(path)
    if not isinstance(doc, LineDict):
        raise ScenarioError(f"{path}:1: a scenario must be a YAML mapping")
    ctx.unknown_keys(doc, _TOP_KEYS, "scenario")
    version = doc.get("version", 1)
    if version != 1:
        raise ctx.fail(doc, "version", f"scenario format version {version!r} is not supported")
    for key in ("name", "start", "states", "intents"):
        if key not in doc:
            raise ScenarioError(f"{path}:1: missing '{key}'")
    states_node = ctx.mapping(doc, "states", doc["states"])
    states: dict[str, State] = {}
    for name, node in states_node.items():
        states[name] = parse_state(ctx, name, ctx.mapping(states_node, name, node))
    global_on = ctx.mapping(doc, "global", doc.get("global") or LineDict())
    scenario = Scenario(
        name=str(doc["name"]),
        path=path,
        language=str(doc.get("language", "en-us")),
        settings=_parse_settings(ctx, doc),
        intents=parse_intents(ctx, doc),
        slots=parse_slots(ctx, doc),
        tables=parse_tables(ctx, doc),
        start=str(doc["start"]),
        global_on={str(k): str(v) for k, v in global_on.items()},
        states=states,
    )
    _check_references(ctx, doc, scenario)
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
