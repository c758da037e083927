"""Every problem of scenario files at once, for ``voicebot check``.

:func:`check_scenario` lints the YAML text (:mod:`voicebot.dialog.yamllint`:
folded list items, keys without a value, duplicate keys, tabs) and parses the
document with a collecting :class:`~voicebot.dialog.context.ParseContext`, so
that it reports what :func:`~voicebot.dialog.loader.load_scenario` would reject
(every problem, not the first) plus the warnings of the lint.
:func:`check_scenarios` adds what :func:`~voicebot.dialog.loader.load_scenarios`
checks across files: unique scenario names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from voicebot.dialog.context import ParseContext
from voicebot.dialog.loader import parse_scenario
from voicebot.dialog.yamllint import lint_yaml
from voicebot.dialog.yamlnodes import LineDict, LocatedError, Problem, load_yaml_with_lines

__all__ = ["ScenarioCheck", "check_scenario", "check_scenarios"]

_EMPTY_ALLOWED = ("hangup",)
"""Keys whose empty value means something: ``- hangup:`` hangs up with reason "bot"."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScenarioCheck:
    """What :func:`check_scenario` found in one file."""

    path: Path
    name: str | None
    """The scenario's ``name:``, when it has one."""
    name_line: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether a normal load would accept the file (warnings aside)."""
        return not any(p.severity == "error" for p in self.problems)


def check_scenario(path: Path) -> ScenarioCheck:
    """Every problem of the scenario file ``path``, sorted by line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        problem = Problem(path=path, line=0, column=0, severity="error",
                          message=f"cannot read scenario: {exc}")
        return ScenarioCheck(path=path, name=None, name_line=0, problems=(problem,))
    problems = lint_yaml(text, path, duplicates="error", allow_empty=_EMPTY_ALLOWED)
    if any(p.message.startswith("invalid YAML") for p in problems):  # nothing to parse
        return ScenarioCheck(path=path, name=None, name_line=0, problems=tuple(problems))
    ctx = ParseContext(path, collect=True)
    doc = None
    try:
        doc = load_yaml_with_lines(path, tolerate_duplicates=True)
    except LocatedError as exc:
        problems.append(exc.as_problem())
    else:
        ctx.attempt(parse_scenario, ctx, doc)
    problems.extend(ctx.problems)
    name, line = None, 0
    if isinstance(doc, LineDict) and isinstance(doc.get("name"), str | int):
        name, line = str(doc["name"]), doc.line_of("name")
    return ScenarioCheck(path=path, name=name, name_line=line,
                         problems=tuple(_ordered(problems)))


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def check_scenarios(paths: Iterable[Path]) -> list[ScenarioCheck]:
    """:func:`check_scenario` of each file, and scenario names used twice."""
    checks: list[ScenarioCheck] = []
    first: dict[str, Path] = {}
    for path in paths:
        check = check_scenario(path)
        if check.name is not None and check.name in first:
            clash = Problem(path=check.path, line=check.name_line, column=1, severity="error",
                            message=f"scenario name '{check.name}' is already used by "
                                    f"{first[check.name]}")
            check = ScenarioCheck(path=check.path, name=check.name, name_line=check.name_line,
                                  problems=tuple(_ordered([*check.problems, clash])))
        elif check.name is not None:
            first[check.name] = check.path
        checks.append(check)
    return checks
