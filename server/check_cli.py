"""``voicebot check [CONFIG] [SCENARIO ...]``: validate before a rollout, without serving.

Checks the server configuration file (everything a start checks:
server/config_check.py) and scenario files (everything the scenario loader
checks: voicebot.dialog.checking), reporting every problem, not only the first,
one line each at its place::

    path:line:column: error|warning|note: message

then a summary line. Nothing is served, no model is loaded, no socket opened.

* The first file is the CONFIG unless it is a scenario (a mapping with
  ``states:`` or ``intents:``); ``--config`` names it explicitly. A bare name
  (``reference``) is a shipped config, as for ``serve --config``. A folder
  among the scenarios stands for its ``*.yaml`` files.
* No SCENARIO: the scenarios a start would load are checked (every ``*.yaml``
  of the config's ``scenarios_dir``, names unique, ``default_scenario`` among them).
* error: a start would refuse it. warning: it loads, but probably does not say
  what was meant (a list item folded into the one above, a duplicate key, a key
  without a value, an endpoint served without authentication). note: it depends
  on the machine that serves (a secret's environment variable not set here).
* Exit status: 0 clean (notes and, without ``--strict``, warnings allowed);
  1 errors; 2 warnings only, with ``--strict`` (argparse's usage errors are 2 as well).
  ``--format json`` prints one JSON object instead, for CI tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from voicebot.dialog.checking import check_scenarios
from voicebot.dialog.yamlnodes import Problem

from .config_check import check_config, default_scenario_problem, scenario_paths
from .paths import resolve_config_path

__all__ = ["register", "run"]

_SEVERITIES = ("error", "warning", "note")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``voicebot`` subparsers."""
    check = subparsers.add_parser(
        "check", help="validate a config file and scenarios before a rollout (every "
        "problem at file:line:column; nothing is served)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("files", nargs="*", type=Path, metavar="FILE",
                       help="[CONFIG] [SCENARIO ...]: the config file (or a shipped config's "
                            "name), then scenario files or folders")
    check.add_argument("--config", type=Path, default=None,
                       help="the config file; every FILE is then a scenario")
    check.add_argument("--strict", action="store_true",
                       help="exit 2 when there are warnings and no error")
    check.add_argument("--format", choices=("text", "json"), default="text",
                       help="text: one line per problem and a summary (default); json: one "
                            "object")


def _is_scenario(path: Path) -> bool:
    """Whether ``path`` reads as a scenario (a mapping with ``states`` or ``intents``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return False
    return isinstance(data, Mapping) and bool({"states", "intents"} & set(data))


def _split(files: Sequence[Path], config: Path | None) -> tuple[Path | None, list[Path]]:
    rest = list(files)
    if config is None and rest and not rest[0].is_dir() \
            and not _is_scenario(resolve_config_path(rest[0])):
        config = rest.pop(0)
    scenarios: list[Path] = []
    for path in rest:
        scenarios.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return config, scenarios


def _collect(config_file: Path | None, scenario_files: list[Path],
             env: Mapping[str, str] | None) -> tuple[list[Problem], list[Path]]:
    """Every problem, and the scenario files checked."""
    config = check_config(config_file, env=env)
    problems = list(config.problems)
    if scenario_files:
        checks = check_scenarios(scenario_files)
    else:
        paths, missing = scenario_paths(config)
        problems += missing
        checks = check_scenarios(paths)
        if paths and (unknown := default_scenario_problem(
                config, [c.name for c in checks if c.name is not None])) is not None:
            problems.append(unknown)
    problems.sort(key=lambda p: (p.path != config.path, p.line, p.column))  # the config's first
    for check in checks:
        problems += check.problems
    return problems, [check.path for check in checks]


def _exit_code(counts: Mapping[str, int], strict: bool) -> int:
    if counts["error"]:
        return 1
    return 2 if strict and counts["warning"] else 0


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def run(args: argparse.Namespace, *, env: Mapping[str, str] | None = None,
        out: TextIO | None = None) -> int:
    """Check, print the problems and a summary on ``out`` (stdout); the exit status."""
    out = sys.stdout if out is None else out
    config_file, scenario_files = _split(args.files, args.config)
    if config_file is not None:
        config_file = resolve_config_path(config_file)
    problems, checked = _collect(config_file, scenario_files, env)
    counts = {severity: sum(p.severity == severity for p in problems)
              for severity in _SEVERITIES}
    code = _exit_code(counts, args.strict)
    if args.format == "json":
        report: dict[str, Any] = {
            "ok": code == 0, "exit_status": code, "strict": args.strict,
            "config": None if config_file is None else str(config_file),
            "scenarios": [str(path) for path in checked],
            "counts": counts,
            "problems": [{"path": str(p.path), "line": p.line, "column": p.column,
                          "severity": p.severity, "message": p.message} for p in problems],
        }
        print(json.dumps(report, indent=2), file=out)
        return code
    for problem in problems:
        print(problem.format(), file=out)
    what = (f"{'the default config' if config_file is None else config_file} and "
            f"{_plural(len(checked), 'scenario')}")
    found = ", ".join(_plural(counts[s], s) for s in _SEVERITIES if counts[s]) or "no problem"
    verdict = {0: "OK", 1: "FAILED", 2: "FAILED (--strict: warnings)"}[code]
    print(f"voicebot check: {verdict}: {found} in {what}", file=out)
    return code
