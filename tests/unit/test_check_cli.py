"""``voicebot check``: every problem of a config and its scenarios at file:line:column,
without serving; exit 0 clean, 1 errors, 2 warnings with --strict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import main
from server.config_check import check_config
from tests.conftest import BANK_CARD, REPO
from tests.unit.test_scenario import MINIMAL

__all__: list[str] = []

THREE_ERRORS = """\
host: 127.0.0.1
port: 70000
log_level: INFO
bogus: 1
engines:
  asr: nope
"""
SHIPPED_CONFIGS = [*sorted((REPO / "server" / "configs").glob("*.yaml")),
                   *(path for path in (REPO / "docker" / "voicebot.yaml",
                                       REPO / "docker" / "k8s" / "voicebot.yaml")
                     if path.exists())]


def _check(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, list[str]]:
    code = main(["check", *map(str, argv)])
    return code, capsys.readouterr().out.splitlines()


def _problems(lines: list[str], severity: str) -> list[str]:
    return [line for line in lines if f": {severity}: " in line]


def test_a_config_with_three_errors_reports_all_three(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(THREE_ERRORS)
    code, lines = _check(capsys, config, BANK_CARD)
    assert code == 1
    assert _problems(lines, "error") == [
        f"{config}:2:1: error: port 70000 is out of range 0..65535",
        f"{config}:4:1: error: unknown configuration key 'bogus'",
        f"{config}:6:3: error: unknown asr engine 'nope'; known: pocketsphinx, whisper, fake",
    ]
    assert lines[-1].startswith("voicebot check: FAILED: 3 errors in ")


def test_sections_report_each_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("auth:\n  native: {tokens: [x]}\n  twilio: {colour: red}\n"
                      "tls_cert_file: c.pem\nslo_p95_ms: fast\n")
    problems = check_config(config, env={}).problems
    assert [(p.line, p.column, p.severity) for p in problems] == [
        (2, 12, "error"), (3, 12, "error"), (4, 1, "error"), (5, 1, "error")]
    assert "shorter than 16 characters" in problems[0].message
    assert "unknown key auth.twilio.colour" in problems[1].message
    assert "go together" in problems[2].message and "number" in problems[3].message


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_and_scenario_check_clean(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(capsys, config, BANK_CARD)
    assert code == 0, lines
    assert not _problems(lines, "error"), lines
    assert lines[-1].startswith("voicebot check: OK")


def test_defaults_check_the_scenarios_a_start_loads(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _check(capsys, "--strict")
    assert (code, lines) == (0, ["voicebot check: OK: no problem in the default config and "
                                 "1 scenario"])
    code, lines = _check(capsys, "--strict", BANK_CARD)  # a scenario alone: no config
    assert code == 0 and lines[-1].endswith("1 scenario")


def test_scenarios_dir_and_default_scenario(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "mini.yaml").write_text(MINIMAL)
    (folder / "twin.yaml").write_text(MINIMAL.replace("bye bye]", "bye bye]\n  hi: {}"))
    config = tmp_path / "c.yaml"
    config.write_text("scenarios_dir: scenarios\ndefault_scenario: bank\n")
    code, lines = _check(capsys, config)
    assert code == 1
    assert _problems(lines, "error") == [
        f"{config}:2:1: error: default scenario 'bank' is none of the scenarios of {folder} "
        "(mini)",
        f"{folder / 'twin.yaml'}:1:1: error: scenario name 'mini' is already used by "
        f"{folder / 'mini.yaml'}",
        f"{folder / 'twin.yaml'}:6:7: error: intent 'hi' needs a non-empty 'examples' list",
    ]
    config.write_text("scenarios_dir: nowhere\n")
    code, lines = _check(capsys, config)
    assert code == 1 and _problems(lines, "error") == [
        f"{config}:1:1: error: scenarios_dir {tmp_path / 'nowhere'} is not a folder"]


def test_warnings_fail_only_with_strict_and_notes_never(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("port: 8765\nport: 8766\nauth:\n  native: {tokens_env: NOT_SET_HERE}\n")
    code, lines = _check(capsys, config, BANK_CARD)
    assert code == 0
    assert _problems(lines, "warning") == [
        f"{config}:2:1: warning: duplicate key 'port' (first at line 1): the last one wins"]
    [note] = _problems(lines, "note")
    assert note.startswith(f"{config}:4:24: note: environment variable NOT_SET_HERE is not set")
    assert _check(capsys, "--strict", config, BANK_CARD)[0] == 2
    config.write_text("auth:\n  native: {tokens_env: NOT_SET_HERE}\n")
    assert _check(capsys, "--strict", config, BANK_CARD)[0] == 0


def test_folded_list_in_a_scenario_named_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(MINIMAL.replace("    examples: [goodbye, bye bye]",
                                        "    examples:\n      - goodbye\n       - bye bye"))
    code, lines = _check(capsys, "--config", "reference", scenario)
    assert code == 0
    [warning] = _problems(lines, "warning")
    assert warning.startswith(f"{scenario}:7:8: warning: this '- ' line continues the text")
    assert _check(capsys, "--strict", scenario)[0] == 2  # first FILE is a scenario: no config


def test_json_format_and_no_secret_in_the_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-Kx9"  # too short: an error that must not print the secret
    monkeypatch.setenv("CHECK_TEST_TOKEN", secret)
    config = tmp_path / "c.yaml"
    config.write_text("auth:\n  native: {tokens_env: CHECK_TEST_TOKEN}\n"
                      f"  admin: {{tokens: ['{secret}x']}}\nport: many\n")
    code = main(["check", "--format", "json", str(config), str(BANK_CARD)])
    out = capsys.readouterr().out
    assert secret not in out
    report = json.loads(out)
    assert code == report["exit_status"] == 1 and report["ok"] is False
    assert report["counts"] == {"error": 3, "warning": 0, "note": 0}
    assert report["config"] == str(config) and report["scenarios"] == [str(BANK_CARD)]
    assert [(p["line"], p["column"]) for p in report["problems"]] == [(2, 12), (3, 11), (4, 1)]
    assert {p["path"] for p in report["problems"]} == {str(config)}


def test_the_real_command_serves_nothing(tmp_path: Path) -> None:
    """The console script: exit statuses, and no model runtime imported, no socket."""
    voicebot = Path(sys.executable).parent / "voicebot"
    bad = tmp_path / "c.yaml"
    bad.write_text("port: many\n")
    run = subprocess.run([voicebot, "check", bad], capture_output=True, text=True, check=False)
    assert run.returncode == 1 and f"{bad}:1:1: error: port must be a whole number" in run.stdout
    probe = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('check opened a socket')\n"
        "socket.socket.bind = socket.socket.connect = refuse\n"
        "from server.cli import main\n"
        f"code = main(['check', {str(REPO / 'docker' / 'voicebot.yaml')!r}, {str(BANK_CARD)!r}])\n"
        "loaded = {'onnxruntime', 'ctranslate2', 'faster_whisper', 'piper'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert "voicebot check: OK" in run.stdout
