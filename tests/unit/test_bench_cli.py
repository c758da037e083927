"""``python -m bench``: the repository's measurement tools, outside the server's CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main
from server.cli import main as voicebot_main

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]


def test_the_tools_are_subcommands_of_python_m_bench() -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    for command in ("calls", "engines", "accuracy", "whisper-digits", "caller-audio"):
        assert command in run.stdout


def test_the_server_cli_has_no_bench_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        voicebot_main(["bench", "calls"])
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def test_accuracy_report_only_rebuilds_from_the_work_folder(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    assert main(["accuracy", "--report-only", "--work-dir", str(tmp_path / "work"),
                 "--out-dir", str(out)]) == 0
    assert (out / "accuracy.md").is_file() and (out / "accuracy.json").is_file()


def test_whisper_digits_takes_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["whisper-digits", "--help"])
    assert exit_info.value.code == 0 and "--repeats" in capsys.readouterr().out


def test_synth_model_builds_where_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, Path]] = []

    def build_synthetic_whisper(name: str, out_dir: Path) -> Path:
        seen.append((name, out_dir))
        return out_dir

    monkeypatch.setattr("voicebot.whisper.synthetic.build_synthetic_whisper",
                        build_synthetic_whisper)
    monkeypatch.setenv("VOICEBOT_MODELS_DIR", str(tmp_path))
    assert main(["synth-model", "whisper-tiny"]) == 0
    assert seen == [("whisper-tiny", tmp_path / "synthetic" / "whisper-tiny")]
    assert main(["synth-model", "whisper-base", "--out", str(tmp_path / "x")]) == 0
    assert seen[-1] == ("whisper-base", tmp_path / "x")
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "x")
