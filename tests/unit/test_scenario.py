"""Scenario loading: the demo loads, and invalid files name file, line and problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import BANK_CARD
from voicebot.dialog.loader import load_scenario, load_scenarios
from voicebot.dialog.scenario import Scenario
from voicebot.errors import ScenarioError

__all__: list[str] = []

MINIMAL = """\
name: mini
start: hello
intents:
  bye:
    examples: [goodbye, bye bye]
states:
  hello:
    actions:
      - say: Hi there.
    on:
      bye: done
  done:
    actions:
      - hangup: finished
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_bank_card_loads(bank_card: Scenario) -> None:
    assert bank_card.name == "bank_card"
    assert set(bank_card.intents) == {"check_balance", "lost_card", "operator", "goodbye"}
    assert bank_card.slots["card_last4"].length == 4
    assert bank_card.tables["cards"].rows["4217"]["balance"] == "1,250.40"
    assert bank_card.settings.endpointing["min_silence_ms"] == 500
    assert "yes" in bank_card.phrases()  # YAML 1.2 booleans: "yes" stays text


def test_minimal_loads(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, MINIMAL))
    assert scenario.states["hello"].on == {"bye": "done"}


@pytest.mark.parametrize(
    ("change", "line", "problem"),
    [
        (("      bye: done", "      bye: nowhere"), 11, "unknown state 'nowhere'"),
        (("      bye: done", "      hi: done"), 11, "unknown intent 'hi'"),
        (("      - say: Hi there.", "      - sing: Hi there."), 9, "unknown action 'sing'"),
        (("      - say: Hi there.", "      - say: Hi {who}."), 8, "unknown name 'who'"),
        (("      - hangup: finished", "      - say: bye"), 13, "must end in exactly one"),
        (("    examples: [goodbye, bye bye]", "    examples: []"), 5, "non-empty 'examples'"),
        (("start: hello", "start: nope"), 2, "unknown state 'nope'"),
        (("    on:", "    bogus: 1\n    on:"), 10, "unknown key 'bogus'"),
        (("      - say: Hi there.", "      - say: [unclosed"), 9, "invalid YAML"),
    ],
)
def test_invalid_scenarios_name_file_line_problem(
    tmp_path: Path, change: tuple[str, str], line: int, problem: str
) -> None:
    path = _write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    assert problem in message
    found = int(re.match(rf"{re.escape(str(path))}:(\d+):", message).group(1))  # type: ignore[union-attr]
    assert abs(found - line) <= 1, message


def test_duplicate_keys_and_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="duplicate key 'start'"):
        load_scenario(_write(tmp_path, MINIMAL + "start: hello\n"))
    with pytest.raises(ScenarioError, match="already used"):
        load_scenarios([BANK_CARD, BANK_CARD])


def test_settings_validated(tmp_path: Path) -> None:
    bad = MINIMAL + "settings:\n  nlu_threshold: 3\n"
    with pytest.raises(ScenarioError, match=r":\d+: 'nlu_threshold' must be between 0 and 1"):
        load_scenario(_write(tmp_path, bad))
    bad = MINIMAL + "settings:\n  endpointing:\n    min_silence_ms: -5\n"
    with pytest.raises(ScenarioError, match="'min_silence_ms' must be a positive number"):
        load_scenario(_write(tmp_path, bad))
