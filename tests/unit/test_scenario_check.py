"""Every problem of a scenario at once (voicebot.dialog.checking, yamllint): what the
loader rejects, each at its line, plus the YAML slips PyYAML loads silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import BANK_CARD
from tests.unit.test_scenario import MINIMAL
from voicebot.dialog.checking import check_scenario, check_scenarios
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.yamllint import lint_yaml
from voicebot.dialog.yamlnodes import LocatedError, Problem
from voicebot.errors import ScenarioError

__all__: list[str] = []

BROKEN = """\
name: broken
start: hello
bogus: 1
intents:
  bye:
    examples: [goodbye]
  empty:
    examples: []
slots:
  pin: {type: letters, prompt: "Your PIN?", length: -1}
states:
  hello:
    actions:
      - say: Hi {who}.
      - ask: nope
    on:
      bye: nowhere
      hi: done
    fallback:
      then: elsewhere
  done:
    actions:
      - sing: la
      - hangup:
"""
# (line, column, message fragment) of every error in BROKEN
BROKEN_ERRORS = [
    (3, 1, "unknown key 'bogus' in scenario"),
    (8, 5, "intent 'empty' needs a non-empty 'examples' list"),
    (10, 9, "slot 'pin' type must be one of"),
    (10, 45, "'length' must be a positive whole number"),
    (14, 9, "template uses unknown name 'who'"),
    (15, 9, "action uses unknown slot 'nope'"),
    (17, 7, "intent 'bye' names unknown state 'nowhere'"),
    (18, 7, "unknown intent 'hi'"),
    (20, 7, "'fallback.then' names unknown state 'elsewhere'"),
    (23, 9, "unknown action 'sing'"),
]


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _found(problems: tuple[Problem, ...] | list[Problem], severity: str) -> list[tuple[int, int]]:
    return [(p.line, p.column) for p in problems if p.severity == severity]


def test_every_error_of_a_scenario_is_reported_at_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, BROKEN)
    check = check_scenario(path)
    errors = [p for p in check.problems if p.severity == "error"]
    assert [(p.line, p.column) for p in errors] == [(ln, col) for ln, col, _ in BROKEN_ERRORS]
    for problem, (_, _, fragment) in zip(errors, BROKEN_ERRORS, strict=True):
        assert fragment in problem.message
        assert problem.path == path
    assert not check.ok and check.name == "broken"
    # A normal load still stops at the first problem, as a ScenarioError naming file:line.
    with pytest.raises(ScenarioError, match=rf"^{path}:3: unknown key 'bogus'"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("change", "line", "problem"),
    [
        (("      bye: done", "      bye: nowhere"), 11, "unknown state 'nowhere'"),
        (("      bye: done", "      hi: done"), 11, "unknown intent 'hi'"),
        (("      - say: Hi there.", "      - sing: Hi there."), 9, "unknown action 'sing'"),
        (("      - say: Hi there.", "      - say: Hi {who}."), 9, "unknown name 'who'"),
        (("      - hangup: finished", "      - say: bye"), 13, "must end in exactly one"),
        (("    examples: [goodbye, bye bye]", "    examples: []"), 5, "non-empty 'examples'"),
        (("start: hello", "start: nope"), 2, "unknown state 'nope'"),
        (("    on:", "    bogus: 1\n    on:"), 10, "unknown key 'bogus'"),
        (("      - say: Hi there.", "      - say: [unclosed"), 10, "invalid YAML"),  # found there
    ],
)
def test_check_and_load_agree_on_one_problem(
    tmp_path: Path, change: tuple[str, str], line: int, problem: str
) -> None:
    path = _write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(LocatedError) as info:
        load_scenario(path)
    assert (info.value.line, info.value.path) == (line, path)
    errors = [p for p in check_scenario(path).problems if p.severity == "error"]
    assert len(errors) == 1 and errors[0].line == line and problem in errors[0].message


def test_shipped_scenario_checks_clean() -> None:
    check = check_scenario(BANK_CARD)
    assert check.problems == () and check.ok and check.name == "bank_card"


def test_folded_list_item_is_a_warning_at_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("    examples: [goodbye, bye bye]",
                           "    examples:\n      - goodbye\n       - bye bye")
    path = _write(tmp_path, text)
    assert load_scenario(path).intents["bye"] == ("goodbye - bye bye",)  # what PyYAML does
    [warning] = check_scenario(path).problems
    assert (warning.severity, warning.line, warning.column) == ("warning", 7, 8)
    assert "continues the text above" in warning.message


def test_duplicate_keys_are_errors_in_a_scenario_and_warnings_in_other_yaml(
        tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "start: done\n")
    [duplicate] = check_scenario(path).problems
    assert (duplicate.severity, duplicate.line, duplicate.column) == ("error", 15, 1)
    assert "duplicate key 'start' (first at line 2)" in duplicate.message
    [warning] = lint_yaml("port: 1\nhost: x\nport: 2\n", path)
    assert (warning.severity, warning.line) == ("warning", 3)
    assert "the last one wins" in warning.message


def test_keys_without_a_value_warn_except_hangup(tmp_path: Path) -> None:
    text = MINIMAL.replace("      - hangup: finished", "      - hangup:") + "global:\n"
    problems = check_scenario(_write(tmp_path, text)).problems
    assert [(p.severity, p.line, p.column) for p in problems] == [("warning", 15, 1)]
    assert "'global' has no value" in problems[0].message


def test_every_tab_is_an_error_at_its_place(tmp_path: Path) -> None:
    text = MINIMAL.replace("  bye:\n", "  bye:\t\n").replace("      bye: done", "      bye:\tdone")
    problems = check_scenario(_write(tmp_path, text)).problems
    assert _found(problems, "error") == [(4, 7), (11, 11)]
    assert all("tab" in p.message for p in problems)


def test_scenario_names_must_be_unique_across_files(tmp_path: Path) -> None:
    first, second = _write(tmp_path, MINIMAL, "a.yaml"), _write(tmp_path, MINIMAL, "b.yaml")
    checks = check_scenarios([first, second])
    assert checks[0].problems == ()
    [clash] = checks[1].problems
    assert (clash.path, clash.line, clash.severity) == (second, 1, "error")
    assert f"already used by {first}" in clash.message


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    [missing] = check_scenario(tmp_path / "none.yaml").problems
    assert missing.severity == "error" and "cannot read" in missing.message
    [not_mapping] = check_scenario(_write(tmp_path, "- a\n- b\n")).problems
    assert (not_mapping.line, not_mapping.message) == (1, "a scenario must be a YAML mapping")


_ITEMS = st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=20)
                  .map(lambda s: "a" + s.strip()), min_size=2, max_size=6)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=_ITEMS, indent=st.integers(0, 6), key_indent=st.integers(0, 4))
def test_no_warning_on_a_list_written_right(items: list[str], indent: int,
                                            key_indent: int) -> None:
    text = " " * key_indent + "examples:\n" + "".join(
        f"{' ' * (key_indent + indent)}- {item}\n" for item in items)
    assert lint_yaml(text, Path("x.yaml")) == []
    assert yaml.safe_load(text) == {"examples": items}


@settings(max_examples=60)
@given(items=_ITEMS, indent=st.integers(0, 6), data=st.data())
def test_a_list_item_indented_one_space_too_far_warns_at_its_line(
        items: list[str], indent: int, data: st.DataObject) -> None:
    slip = data.draw(st.integers(1, len(items) - 1))
    lines = [f"{' ' * (indent + (i == slip))}- {item}" for i, item in enumerate(items)]
    text = "examples:\n" + "\n".join(lines) + "\n"
    warnings = lint_yaml(text, Path("x.yaml"))
    assert [(w.severity, w.line, w.column) for w in warnings] == [
        ("warning", slip + 2, indent + 2)]
    loaded = yaml.safe_load(text)["examples"]
    assert f"{items[slip - 1]} - {items[slip]}" in loaded  # the slip PyYAML loads silently
