"""Parse the sections of a scenario YAML document into :mod:`voicebot.dialog.scenario` types.

:class:`~voicebot.dialog.context.ParseContext` carries the file name so that
every problem is raised as a :class:`~voicebot.dialog.yamlnodes.LocatedError` (a
:class:`~voicebot.errors.ScenarioError` reading ``file:line: problem``);
:func:`parse_intents`, :func:`parse_slots`, :func:`parse_tables` and
:func:`parse_state` (with its actions) each validate one section.
:mod:`voicebot.dialog.loader` parses the rest (settings) and checks the
references between sections.

With ``ParseContext(path, collect=True)`` (``voicebot check``) a unit (an intent,
slot, table, action or state) with problems is left out and parsing goes on with
the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from voicebot.dialog.context import ParseContext
from voicebot.dialog.scenario import (
    Action,
    Ask,
    Branch,
    ClearSlot,
    Condition,
    Fallback,
    Hangup,
    Lookup,
    Say,
    SetSlot,
    SlotSpec,
    SlotType,
    State,
    Table,
    Transfer,
    Webhook,
)
from voicebot.dialog.yamlnodes import LineDict

__all__ = [
    "parse_intent_labels",
    "parse_intents",
    "parse_out_of_scope",
    "parse_slots",
    "parse_state",
    "parse_tables",
]

_SLOT_TYPES: tuple[str, ...] = get_args(SlotType)


def parse_intents(ctx: ParseContext, doc: LineDict) -> dict[str, tuple[str, ...]]:
    intents: dict[str, tuple[str, ...]] = {}
    node = ctx.mapping(doc, "intents", doc.get("intents"))
    for name, spec in node.items():
        examples = ctx.attempt(_parse_intent, ctx, node, name, spec)
        if examples is not None:
            intents[name] = examples
    return intents


def _parse_intent(ctx: ParseContext, node: LineDict, name: str, spec: Any) -> tuple[str, ...]:
    spec = ctx.mapping(node, name, spec)
    examples = spec.get("examples")
    if not isinstance(examples, list) or not examples:
        raise ctx.fail(spec, "examples", f"intent '{name}' needs a non-empty 'examples' list")
    if not all(isinstance(e, str) and e.strip() for e in examples):
        raise ctx.fail(spec, "examples", f"intent '{name}' has an empty or non-text example")
    return tuple(examples)


def parse_intent_labels(ctx: ParseContext, doc: LineDict) -> dict[str, str]:
    """Each intent's optional ``label`` (its words in a clarifying question)."""
    labels: dict[str, str] = {}
    for name, spec in ctx.mapping(doc, "intents", doc.get("intents")).items():
        if isinstance(spec, LineDict) and "label" in spec:
            label = spec["label"]
            if not isinstance(label, str) or not label.strip():
                ctx.report(ctx.fail(spec, "label", f"intent '{name}': 'label' must be text"))
            else:
                labels[name] = label.strip()
    return labels


def parse_out_of_scope(ctx: ParseContext, doc: LineDict) -> tuple[str, ...]:
    """The optional top-level ``out_of_scope`` list of phrases."""
    node = doc.get("out_of_scope")
    if node is None:
        return ()
    if not isinstance(node, list) or not all(isinstance(e, str) and e.strip() for e in node):
        raise ctx.fail(doc, "out_of_scope", "'out_of_scope' must be a list of phrases")
    return tuple(node)


def parse_slots(ctx: ParseContext, doc: LineDict) -> dict[str, SlotSpec]:
    slots: dict[str, SlotSpec] = {}
    node = doc.get("slots") or LineDict()
    node = ctx.mapping(doc, "slots", node)
    for name, spec in node.items():
        slot = ctx.attempt(_parse_slot, ctx, node, name, spec)
        if slot is not None:
            slots[name] = slot
    return slots


def _parse_slot(ctx: ParseContext, node: LineDict, name: str, spec: Any) -> SlotSpec:
    spec = ctx.mapping(node, name, spec)
    mark = ctx.mark()
    ctx.unknown_keys(spec, ("type", "prompt", "reprompt", "length", "min", "max",
                            "sensitive"), "slot")
    kind = spec.get("type")
    if kind not in _SLOT_TYPES:
        ctx.report(ctx.fail(spec, "type", f"slot '{name}' type must be one of {_SLOT_TYPES}"))
    prompt = ctx.attempt(ctx.text, spec, "prompt")
    length = spec.get("length")
    if length is not None and (not isinstance(length, int) or length < 1):
        ctx.report(ctx.fail(spec, "length", "'length' must be a positive whole number"))
    reprompt = ctx.attempt(ctx.text, spec, "reprompt", required=False)
    sensitive = ctx.attempt(_flag, ctx, spec, "sensitive")
    ctx.settle(mark)
    assert prompt is not None and sensitive is not None
    return SlotSpec(
        name=name, type=kind, prompt=prompt, reprompt=reprompt or prompt,
        length=length, min_value=spec.get("min"), max_value=spec.get("max"),
        sensitive=sensitive,
    )


def _flag(ctx: ParseContext, spec: LineDict, key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ctx.fail(spec, key, f"'{key}' must be true or false")
    return value


def parse_tables(ctx: ParseContext, doc: LineDict) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    node = ctx.mapping(doc, "data", doc.get("data") or LineDict())
    for name, spec in node.items():
        table = ctx.attempt(_parse_table, ctx, node, name, spec)
        if table is not None:
            tables[name] = table
    return tables


def _parse_table(ctx: ParseContext, node: LineDict, name: str, spec: Any) -> Table:
    spec = ctx.mapping(node, name, spec)
    key = spec.get("key")
    rows = spec.get("rows")
    if not isinstance(key, str):
        raise ctx.fail(spec, "key", f"table '{name}' needs a 'key' column name")
    if not isinstance(rows, list):
        raise ctx.fail(spec, "rows", f"table '{name}' needs a 'rows' list")
    by_key: dict[str, dict[str, str]] = {}
    for row in rows:
        if not isinstance(row, dict) or key not in row:
            problem = f"every row of table '{name}' needs column '{key}'"
            if isinstance(row, LineDict):
                raise ctx.fail(row, None, problem)
            raise ctx.fail(spec, "rows", problem)
        by_key[str(row[key])] = {str(k): str(v) for k, v in row.items()}
    return Table(key=key, rows=by_key)


def _parse_action(ctx: ParseContext, node: Any, where: LineDict) -> Action:
    if isinstance(node, LineDict) and len(node) == 1:
        kind, arg = next(iter(node.items()))
        parsers = _ACTION_PARSERS
        if kind in parsers:
            action: Action = parsers[kind](ctx, node, arg)
            return action
        raise ctx.fail(node, kind, f"unknown action '{kind}' (use one of {', '.join(parsers)})")
    problem = "each action must be a mapping with exactly one key"
    if isinstance(node, LineDict):
        raise ctx.fail(node, None, problem)
    raise ctx.fail(where, "actions", problem)


def _arg_map(
    ctx: ParseContext, node: LineDict, kind: str, arg: Any, allowed: tuple[str, ...]
) -> LineDict:
    mapping = ctx.mapping(node, kind, arg)
    ctx.unknown_keys(mapping, allowed, f"'{kind}' action")
    return mapping


def _lookup(ctx: ParseContext, node: LineDict, arg: Any) -> Lookup:
    arg = _arg_map(ctx, node, "lookup", arg, ("table", "key", "as", "missing"))
    table, key, into = ctx.text(arg, "table"), ctx.text(arg, "key"), ctx.text(arg, "as")
    assert table is not None and key is not None and into is not None
    return Lookup(table=table, key=key, into=into, missing=ctx.text(arg, "missing", required=False))


def _webhook(ctx: ParseContext, node: LineDict, arg: Any) -> Webhook:
    arg = _arg_map(ctx, node, "webhook", arg, ("url", "as", "timeout_ms", "on_error"))
    url, into = ctx.text(arg, "url"), ctx.text(arg, "as")
    assert url is not None and into is not None
    if not url.startswith(("http://", "https://")):
        raise ctx.fail(arg, "url", "webhook 'url' must start with http:// or https://")
    timeout = arg.get("timeout_ms", 2000)
    if not isinstance(timeout, int) or not 1 <= timeout <= 60_000:
        raise ctx.fail(arg, "timeout_ms", "'timeout_ms' must be 1..60000")
    return Webhook(
        url=url, into=into, timeout_ms=timeout, on_error=ctx.text(arg, "on_error", required=False)
    )


def _set(ctx: ParseContext, node: LineDict, arg: Any) -> SetSlot:
    arg = ctx.mapping(node, "set", arg)
    if len(arg) != 1:
        raise ctx.fail(node, "set", "'set' takes exactly one 'slot: value'")
    slot, value = next(iter(arg.items()))
    return SetSlot(slot=slot, value=str(value))


def _scalar(ctx: ParseContext, node: LineDict, kind: str, arg: Any) -> str:
    if not isinstance(arg, str | int) or isinstance(arg, bool):
        raise ctx.fail(node, kind, f"'{kind}' takes a text value")
    return str(arg)


_ACTION_PARSERS: dict[str, Callable[[ParseContext, LineDict, Any], Action]] = {
    "say": lambda ctx, node, arg: Say(text=ctx.text(node, "say") or ""),
    "ask": lambda ctx, node, arg: Ask(slot=_scalar(ctx, node, "ask", arg)),
    "set": _set,
    "clear": lambda ctx, node, arg: ClearSlot(slot=_scalar(ctx, node, "clear", arg)),
    "lookup": _lookup,
    "webhook": _webhook,
    "transfer": lambda ctx, node, arg: Transfer(target=_scalar(ctx, node, "transfer", arg)),
    "hangup": lambda ctx, node, arg: Hangup(reason=_scalar(ctx, node, "hangup", arg or "bot")),
}


def parse_state(ctx: ParseContext, name: str, node: LineDict) -> State:
    mark = ctx.mark()
    ctx.unknown_keys(node, ("actions", "on", "next", "branch", "fallback"), f"state '{name}'")
    raw_actions = node.get("actions") or []
    if not isinstance(raw_actions, list):
        ctx.report(ctx.fail(node, "actions", "'actions' must be a list"))
        raw_actions = []
    actions = tuple(a for a in (ctx.attempt(_parse_action, ctx, raw, node) for raw in raw_actions)
                    if a is not None)
    on = ctx.attempt(_parse_on, ctx, node)
    raw_branches = node.get("branch") or []
    if not isinstance(raw_branches, list):
        ctx.report(ctx.fail(node, "branch", "'branch' must be a list of goto/when entries"))
        raw_branches = []
    branches = tuple(b for b in (ctx.attempt(_parse_branch, ctx, node, raw)
                                 for raw in raw_branches) if b is not None)
    fallback = ctx.attempt(_parse_fallback, ctx, node)
    ctx.settle(mark)
    assert on is not None
    ends = actions and isinstance(actions[-1], Transfer | Hangup)
    exits = sum(bool(x) for x in (on, node.get("next"), branches, ends))
    if exits != 1:
        raise ctx.fail(node, None, f"state '{name}' must end in exactly one of 'on', 'next', "
                       "'branch' or a final transfer/hangup action")
    return State(
        name=name, actions=actions, on=on, next=node.get("next"),
        branch=branches, fallback=fallback,
    )


def _parse_on(ctx: ParseContext, node: LineDict) -> dict[str, Any]:
    return dict(ctx.mapping(node, "on", node["on"])) if "on" in node else {}


def _parse_branch(ctx: ParseContext, node: LineDict, raw: Any) -> Branch:
    if not isinstance(raw, LineDict) or "goto" not in raw:
        where = raw if isinstance(raw, LineDict) else node
        raise ctx.fail(where, None if where is raw else "branch",
                       "each branch needs 'goto' (and optional 'when')")
    cond = None
    if "when" in raw:
        when = ctx.mapping(raw, "when", raw["when"])
        if set(when) != {"slot", "equals"}:
            raise ctx.fail(raw, "when", "'when' takes exactly 'slot' and 'equals'")
        cond = Condition(slot=str(when["slot"]), equals=when["equals"])
    return Branch(when=cond, goto=str(raw["goto"]))


def _parse_fallback(ctx: ParseContext, node: LineDict) -> Fallback | None:
    if "fallback" not in node:
        return None
    fb = _arg_map(ctx, node, "fallback", node["fallback"], ("reprompt", "then"))
    return Fallback(
        reprompt=ctx.text(fb, "reprompt", required=False),
        then=ctx.text(fb, "then", required=False),
    )
