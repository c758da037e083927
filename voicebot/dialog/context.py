"""The parsing context of a scenario file: where problems are, and whether to stop at one.

A normal load stops at the first problem: :meth:`ParseContext.fail` builds a
:class:`~voicebot.dialog.yamlnodes.LocatedError` (``file:line: problem``) that
is raised. ``voicebot check`` parses with ``ParseContext(path, collect=True)``:
:meth:`~ParseContext.report` and :meth:`~ParseContext.attempt` record each
problem (:attr:`~ParseContext.problems`) and parsing goes on with the next key,
intent, slot, action or state, so that every problem of a file is reported at
once. A unit with recorded problems is left out (:meth:`~ParseContext.settle`),
so that its half-parsed parts raise no further, misleading problem.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from voicebot.dialog.scenario import template_fields
from voicebot.dialog.yamlnodes import LineDict, LocatedError, Problem
from voicebot.errors import ScenarioError

__all__ = ["ParseContext"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Abandoned(ScenarioError):
    """A unit (a slot, a state...) whose problems are recorded already: skip its rest."""


class ParseContext:
    """Collects the file name so every error says where it happened; with
    ``collect``, records every problem (:attr:`problems`) instead of stopping."""

    def __init__(self, path: Path, *, collect: bool = False) -> None:
        self.path = path
        self.collect = collect
        self.problems: list[Problem] = []

    def fail(self, node: Any, key: str | None, problem: str) -> LocatedError:
        if isinstance(node, LineDict) and key:
            line, column = node.line_of(key), node.column_of(key)
        else:
            line, column = getattr(node, "line", 0), getattr(node, "column", 0)
        return LocatedError(self.path, line, column, problem)

    def report(self, error: ScenarioError) -> None:
        """A problem after which parsing can go on: raised by a normal load, recorded
        when collecting."""
        if not self.collect:
            raise error
        self._record(error)

    def attempt(self, parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """``parse(...)``; when collecting, a problem it raises is recorded and None
        returned (a normal load lets it through)."""
        try:
            return parse(*args, **kwargs)
        except ScenarioError as exc:
            if not self.collect:
                raise
            if not isinstance(exc, _Abandoned):
                self._record(exc)
            return None

    def mark(self) -> int:
        """Where a unit starts, for :meth:`settle`."""
        return len(self.problems)

    def settle(self, mark: int) -> None:
        """Abandon the unit begun at ``mark`` when problems were recorded since."""
        if len(self.problems) > mark:
            raise _Abandoned(f"{self.path}: see the problems above")

    def _record(self, error: ScenarioError) -> None:
        if isinstance(error, LocatedError):
            self.problems.append(error.as_problem())
        else:
            self.problems.append(Problem(path=self.path, line=0, column=0, severity="error",
                                         message=str(error)))

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
                self.report(self.fail(node, key, f"unknown key '{key}' in {what}"))
