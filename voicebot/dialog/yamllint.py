"""Cheap, high-signal checks of YAML text that loads but probably does not say what was meant.

PyYAML accepts these slips silently; ``voicebot check`` reports them
(:func:`lint_yaml`), each at its line and column:

* a list item folded into the previous one: a ``- `` item indented one space
  deeper than its siblings continues the plain text above it, so
  ``- what is my balance`` / `` - check my balance`` loads as the single string
  ``"what is my balance - check my balance"``;
* a key given twice in one mapping (PyYAML keeps the last one);
* a key with nothing after it (``examples:`` whose items were lost or
  mis-indented): a null value, rarely meant (write ``[]``, ``{}`` or ``null``);
* tabs, which PyYAML refuses with a cryptic message: every line holding one.

:func:`key_places` maps each key path of a document to where it was written,
so that problems found later in the parsed values can name a line.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import yaml

from voicebot.dialog.yamlnodes import Problem, Severity, syntax_problem

__all__ = ["KeyPlaces", "key_places", "lint_yaml", "scalar_places"]

KeyPlaces = dict[tuple[str, ...], tuple[int, int]]
"""A key path (``("auth", "native", "tokens_env")``) → (line, column), 1-based."""

_NULL_TAG = "tag:yaml.org,2002:null"


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _nodes(root: yaml.Node) -> Iterator[yaml.Node]:
    """Every node once (aliases share nodes)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.extend((value, key))


def _place(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _folded_items(path: Path, lines: list[str], node: yaml.ScalarNode) -> Iterator[Problem]:
    """Continuation lines of a multi-line plain scalar that start with ``- ``."""
    if node.style is not None or node.end_mark.line <= node.start_mark.line:
        return
    for index in range(node.start_mark.line + 1, min(node.end_mark.line + 1, len(lines))):
        stripped = lines[index].lstrip(" ")
        if stripped.startswith("- ") or stripped.rstrip() == "-":
            yield Problem(
                path=path, line=index + 1, column=len(lines[index]) - len(stripped) + 1,
                severity="warning",
                message="this '- ' line continues the text above instead of starting a list "
                        "item (it is indented deeper than the item before it), so both load "
                        "as one text; align the dash with the other items, or quote the "
                        "text if the dash belongs to it")


def _mapping_slips(path: Path, node: yaml.MappingNode, duplicates: Severity,
                   allow_empty: Collection[str]) -> Iterator[Problem]:
    first: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line, column = _place(key.start_mark)
        if key.value in first:
            earlier = first[key.value].start_mark.line + 1
            consequence = "the last one wins" if duplicates == "warning" else "not allowed here"
            yield Problem(path=path, line=line, column=column, severity=duplicates,
                          message=f"duplicate key '{key.value}' (first at line {earlier}): "
                                  f"{consequence}")
        first.setdefault(key.value, key)
        if (isinstance(value, yaml.ScalarNode) and value.tag == _NULL_TAG and value.value == ""
                and value.style is None and key.value not in allow_empty):
            yield Problem(path=path, line=line, column=column, severity="warning",
                          message=f"'{key.value}' has no value (null): indent what belongs "
                                  "to it under it, or write [], {} or null if it is meant "
                                  "to be empty")


def _tab_problems(path: Path, lines: list[str]) -> list[Problem]:
    problems = []
    for index, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if "\t" in code:
            problems.append(Problem(
                path=path, line=index + 1, column=code.index("\t") + 1, severity="error",
                message="invalid YAML: a tab character; YAML indents and separates with "
                        "spaces only"))
    return problems


def lint_yaml(text: str, path: Path, *, duplicates: Severity = "warning",
              allow_empty: Collection[str] = ()) -> list[Problem]:
    """Problems of ``text`` (the file ``path``), sorted by place: a syntax error
    (every tab, when a tab is the error), folded list items, duplicate keys (at
    ``duplicates`` severity), keys without a value (except ``allow_empty``)."""
    lines = text.splitlines()
    try:
        root = _compose(text)
    except yaml.YAMLError as exc:
        located = syntax_problem(path, exc)
        if "'\\t'" in located.problem and (tabs := _tab_problems(path, lines)):
            return tabs
        return [located.as_problem()]
    if root is None:
        return []
    problems: list[Problem] = []
    for node in _nodes(root):
        if isinstance(node, yaml.ScalarNode):
            problems.extend(_folded_items(path, lines, node))
        elif isinstance(node, yaml.MappingNode):
            problems.extend(_mapping_slips(path, node, duplicates, allow_empty))
    return sorted(problems, key=lambda p: (p.line, p.column))


def key_places(text: str) -> KeyPlaces:
    """Where each key path of the (valid) YAML ``text`` was written; list items are
    path elements ``"0"``, ``"1"``...; of duplicate keys, the last (the one loaded)."""
    places: KeyPlaces = {}
    root = _compose(text)
    stack: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)] if root is not None else []
    seen: set[int] = set()
    while stack:
        prefix, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            last = {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            for name, (key, value) in last.items():  # PyYAML keeps the last of duplicates
                path = (*prefix, name)
                places[path] = _place(key.start_mark)
                stack.append((path, value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                path = (*prefix, str(index))
                places.setdefault(path, _place(item.start_mark))
                stack.append((path, item))
    return places


def scalar_places(text: str) -> dict[str, tuple[int, int]]:
    """Where each scalar value (not a key) of the (valid) YAML ``text`` is first written."""
    places: dict[str, tuple[int, int]] = {}
    root = _compose(text)
    if root is None:
        return places
    for node in _nodes(root):
        if isinstance(node, yaml.MappingNode):
            values = [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            values = list(node.value)
        else:
            continue
        for value in values:
            if isinstance(value, yaml.ScalarNode):
                place = _place(value.start_mark)
                if value.value not in places or place < places[value.value]:
                    places[value.value] = place
    return places
