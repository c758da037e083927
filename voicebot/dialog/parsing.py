"""Parse the sections of a scenario YAML document into :mod:`voicebot.dialog.scenario` types.

:class:`ParseContext` carries the file name so that every problem is raised as
a :class:`~voicebot.errors.ScenarioError` reading ``file:line: problem``;
:func:`parse_intents`, :func:`parse_slots`, :func:`parse_tables` and
:func:`parse_state` (with its actions) each validate one section.
:mod:`voicebot.dialog.loader` parses the rest (settings) and checks the
references between sections.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

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
    template_fields,
)
from voicebot.dialog.yamlnodes import LineDict
from voicebot.errors import ScenarioError

__all__ = [
    "ParseContext",
    "parse_intents",
    "parse_slots",
    "parse_state",
    "parse_tables",
]

_SLOT_TYPES: tuple[str, ...] = get_args(SlotType)


class ParseContext:
    """Collects the file name so every error says where it happened."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: Any, key: str | None, problem: str) -> ScenarioError:
        line = node.line_of(key) if isinstance(node, LineDict) and key else getattr(node, "line", 0)
        return ScenarioError(f"{self.path}:{line}: {problem}")

    def mapping(self, node: Any, key: str, value: Any) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(node, key, f"'{key}' must be a mapping")
        return value

    def text(self, node: Any, key: str, *, required: bool = True) -> str | None:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None:
            if required:
                raise self.fail(node, key, f"missing '{key}'")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(node, key, f"'{key}' must be text")
        try:
            template_fields(str(value))
        except ValueError as exc:
            raise self.fail(node, key, f"bad template in '{key}': {exc}") from exc
        return str(value)

    def unknown_keys(self, node: LineDict, allowed: tuple[str, ...], what: str) -> None:
        for key in node:
            if key not in allowed:
                raise self.fail(node, key, f"unknown key '{key}' in {what}")


def parse_intents(ctx: ParseContext, doc: LineDict) -> dict[str, tuple[str, ...]]:
    intents: dict[str, tuple[str, ...]] = {}
    node = ctx.mapping(doc, "intents", doc.get("intents"))
    for name, spec in node.items():
        spec = ctx.mapping(node, name, spec)
        examples = spec.get("examples")
        if not isinstance(examples, list) or not examples:
            raise ctx.fail(spec, "examples", f"intent '{name}' needs a non-empty 'examples' list")
        if not all(isinstance(e, str) and e.strip() for e in examples):
            raise ctx.fail(spec, "examples", f"intent '{name}' has an empty or non-text example")
        intents[name] = tuple(examples)
    return intents


def parse_slots(ctx: ParseContext, doc: LineDict) -> dict[str, SlotSpec]:
    slots: dict[str, SlotSpec] = {}
    node = doc.get("slots") or LineDict()
    node = ctx.mapping(doc, "slots", node)
    for name, spec in node.items():
        spec = ctx.mapping(node, name, spec)
        ctx.unknown_keys(spec, ("type", "prompt", "reprompt", "length", "min", "max",
                                "sensitive"), "slot")
        kind = spec.get("type")
        if kind not in _SLOT_TYPES:
            raise ctx.fail(spec, "type", f"slot '{name}' type must be one of {_SLOT_TYPES}")
        prompt = ctx.text(spec, "prompt")
        assert prompt is not None
        length = spec.get("length")
        if length is not None and (not isinstance(length, int) or length < 1):
            raise ctx.fail(spec, "length", "'length' must be a positive whole number")
        slots[name] = SlotSpec(
            name=name, type=kind, prompt=prompt,
            reprompt=ctx.text(spec, "reprompt", required=False) or prompt,
            length=length, min_value=spec.get("min"), max_value=spec.get("max"),
            sensitive=_flag(ctx, spec, "sensitive"),
        )
    return slots


def _flag(ctx: ParseContext, spec: LineDict, key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ctx.fail(spec, key, f"'{key}' must be true or false")
    return value


def parse_tables(ctx: ParseContext, doc: LineDict) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    node = ctx.mapping(doc, "data", doc.get("data") or LineDict())
    for name, spec in node.items():
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
                raise ctx.fail(spec, "rows", f"every row of table '{name}' needs column '{key}'")
            by_key[str(row[key])] = {str(k): str(v) for k, v in row.items()}
        tables[name] = Table(key=key, rows=by_key)
    return tables


def _parse_action(ctx: ParseContext, node: Any, where: LineDict) -> Action:
    if isinstance(node, LineDict) and len(node) == 1:
        kind, arg = next(iter(node.items()))
        parsers = _ACTION_PARSERS
        if kind in parsers:
            action: Action = parsers[kind](ctx, node, arg)
            return action
        raise ctx.fail(node, kind, f"unknown action '{kind}' (use one of {', '.join(parsers)})")
    raise ctx.fail(where, "actions", "each action must be a mapping with exactly one key")


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
    ctx.unknown_keys(node, ("actions", "on", "next", "branch", "fallback"), f"state '{name}'")
    raw_actions = node.get("actions") or []
    if not isinstance(raw_actions, list):
        raise ctx.fail(node, "actions", "'actions' must be a list")
    actions = tuple(_parse_action(ctx, a, node) for a in raw_actions)
    on = dict(ctx.mapping(node, "on", node["on"])) if "on" in node else {}
    branches: list[Branch] = []
    for raw in node.get("branch") or []:
        if not isinstance(raw, LineDict) or "goto" not in raw:
            raise ctx.fail(node, "branch", "each branch needs 'goto' (and optional 'when')")
        cond = None
        if "when" in raw:
            when = ctx.mapping(raw, "when", raw["when"])
            if set(when) != {"slot", "equals"}:
                raise ctx.fail(raw, "when", "'when' takes exactly 'slot' and 'equals'")
            cond = Condition(slot=str(when["slot"]), equals=when["equals"])
        branches.append(Branch(when=cond, goto=str(raw["goto"])))
    fallback = None
    if "fallback" in node:
        fb = _arg_map(ctx, node, "fallback", node["fallback"], ("reprompt", "then"))
        fallback = Fallback(
            reprompt=ctx.text(fb, "reprompt", required=False),
            then=ctx.text(fb, "then", required=False),
        )
    ends = actions and isinstance(actions[-1], Transfer | Hangup)
    exits = sum(bool(x) for x in (on, node.get("next"), branches, ends))
    if exits != 1:
        raise ctx.fail(node, None, f"state '{name}' must end in exactly one of 'on', 'next', "
                       "'branch' or a final transfer/hangup action")
    return State(
        name=name, actions=actions, on=on, next=node.get("next"),
        branch=tuple(branches), fallback=fallback,
    )
