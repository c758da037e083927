"""YAML loading that remembers where each mapping and key came from.

Scenario validation errors must name the file and line; PyYAML's safe loader
forgets marks once it builds Python objects, so mappings here are
:class:`LineDict` instances that keep the line and column of each key.

A problem found at a place is a :class:`LocatedError` (a
:class:`~voicebot.errors.ScenarioError` reading ``file:line: problem``) while
loading, or a :class:`Problem` when ``voicebot check`` collects them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml

from voicebot.errors import ScenarioError

__all__ = [
    "LineDict",
    "LocatedError",
    "Problem",
    "Severity",
    "load_yaml_with_lines",
    "syntax_problem",
]

Severity: TypeAlias = Literal["error", "warning", "note"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One finding of ``voicebot check`` at ``path:line:column`` (1-based; 0: unknown)."""

    path: Path
    line: int
    column: int
    severity: Severity
    message: str

    def format(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


class LocatedError(ScenarioError):
    """A scenario problem at a place; the message keeps the ``file:line: problem`` form."""

    def __init__(self, path: Path, line: int, column: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")
        self.path, self.line, self.column, self.problem = path, line, column, problem

    def as_problem(self, severity: Severity = "error") -> Problem:
        return Problem(path=self.path, line=self.line, column=self.column,
                       severity=severity, message=self.problem)


class LineDict(dict[str, Any]):
    """A ``dict`` that knows its own line and the line of each key (1-based)."""

    line: int = 0
    column: int = 0
    key_lines: dict[str, int]
    key_columns: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def column_of(self, key: str) -> int:
        columns: dict[str, int] = getattr(self, "key_columns", {})
        return columns.get(key, self.column)


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans: only true/false, so ``on:``, ``yes``
    and ``no`` stay text (a scenario's ``on:`` key, a caller saying "yes")."""

    tolerate_duplicates = False
    """``voicebot check`` reports duplicate keys itself (voicebot.dialog.yamllint) and
    keeps loading; a normal load rejects them."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.column = node.start_mark.column + 1
    result.key_lines = {}
    result.key_columns = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool | float) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        skey = str(key).lower() if isinstance(key, bool) else str(key)
        if skey in result and not loader.tolerate_duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {skey!r}", key_node.start_mark
            )
        result[skey] = loader.construct_object(value_node, deep=True)
        result.key_lines[skey] = key_node.start_mark.line + 1
        result.key_columns[skey] = key_node.start_mark.column + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def syntax_problem(path: Path, exc: yaml.YAMLError) -> LocatedError:
    """A PyYAML error as ``file:line: invalid YAML: problem`` (line and column of its mark)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = str(exc.problem or exc)
        if "'\\t'" in problem:
            problem += " (a tab: YAML indents and separates with spaces only)"
        return LocatedError(path, line, column, f"invalid YAML: {problem}")
    return LocatedError(path, 0, 0, f"invalid YAML: {exc}")


def load_yaml_with_lines(path: Path, *, tolerate_duplicates: bool = False) -> Any:
    """Parse ``path``; YAML syntax errors become :class:`LocatedError` with file:line.

    ``tolerate_duplicates`` keeps the last of duplicate keys (for ``voicebot check``,
    which reports them) instead of rejecting the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise LocatedError(path, 0, 0, f"cannot read scenario: {exc}") from exc
    loader = _Loader(text)
    loader.tolerate_duplicates = tolerate_duplicates
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise syntax_problem(path, exc) from exc
    finally:
        loader.dispose()
