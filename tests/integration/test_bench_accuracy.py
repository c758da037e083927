"""``python -m bench accuracy`` end to end on a few REAL recordings, lite stack.

WER over three Asterisk prompts and three LibriVox clips through the server's
codec / VAD / endpointing path, two card-number calls and a few intent calls
against a real ``voicebot serve``.  Checks that every measure runs and is
reported with what was heard; the figures themselves belong to the benchmark's
report (docs/benchmarks/accuracy.md), not to a test.

Needs the Debian packages asterisk-core-sounds-en-wav, asterisk-core-sounds-en and
pocketsphinx-testdata; skipped without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench.accuracy import run_accuracy_bench
from bench.speechdata import (
    APT_INSTALL,
    SpeechDataMissingError,
    asterisk_digit,
    asterisk_prompts,
    librivox_clips,
)
from tests.integration.conftest import free_port

__all__: list[str] = []

pytestmark = pytest.mark.slow


def _speech_installed() -> str | None:
    try:
        asterisk_prompts()
        librivox_clips()
        asterisk_digit("0")
    except SpeechDataMissingError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    missing = _speech_installed()
    if missing is not None:
        pytest.skip(f"speech corpora not installed ({APT_INSTALL}): {missing}")
    tmp = tmp_path_factory.mktemp("accuracy")
    cpus = sorted(os.sched_getaffinity(0))
    data = run_accuracy_bench(
        stacks=("lite",), out_dir=tmp / "docs", work_dir=tmp / "work",
        server_cpu=cpus[0] if len(cpus) > 1 else None, port=free_port(),
        caller_voice=os.environ.get("VOICEBOT_TEST_PIPER_VOICE", "en_US-joe-medium"),
        cards=2, limit=3, concurrency=2,
        measures=("wer-asterisk", "wer-librivox", "cards", "intents")
        if _piper_voice_available() else ("wer-asterisk", "wer-librivox", "cards"))
    return tmp, data


def _piper_voice_available() -> bool:
    from server.config import load_config
    from voicebot.engines.registry import EngineOptions, model_path
    from voicebot.errors import VoicebotError

    config = load_config(None)
    voice = os.environ.get("VOICEBOT_TEST_PIPER_VOICE", "en_US-joe-medium")
    try:
        model_path(voice, EngineOptions(models_dir=config.models_dir, manifest=config.manifest))
    except VoicebotError:
        return False
    return True


def test_wer_runs_through_the_caller_path(report: tuple[Path, dict[str, Any]]) -> None:
    _, data = report
    lite = data["stacks"]["lite"]["measures"]
    for key in ("wer-asterisk", "wer-librivox"):
        m = lite[key]
        assert m["recordings"] == 3 and len(m["rows"]) == 3
        assert m["reference_words"] > 0 and m["wer"] >= 0
        assert all(r["utterances"] >= 1 for r in m["rows"]), "VAD found no speech"
        assert any(r["heard"].strip() for r in m["rows"]), "the ASR heard nothing at all"
        assert m["asr_synthetic"] is False and "mulaw 8000 Hz" in m["line"]


def test_card_calls_record_what_was_heard(report: tuple[Path, dict[str, Any]]) -> None:
    _, data = report
    cards = data["stacks"]["lite"]["measures"]["cards"]
    assert cards["total"] == 2 and 0 <= cards["correct"] <= 2
    for row in cards["rows"]:
        assert len(row["card"]) == 4 and row["card"].isdigit() and len(row["gaps_ms"]) == 3
        assert row["balance_heard"], "the balance request was not transcribed"
        assert row["correct"] == (row["read_back"] == row["card"])
        assert 0 <= row["front_splits"] <= cards["front_phases"]
    assert "on CPUs" in cards["pinning"]["server"]


def test_intent_calls_per_voice(report: tuple[Path, dict[str, Any]]) -> None:
    _, data = report
    intents = data["stacks"]["lite"]["measures"].get("intents")
    if intents is None:
        pytest.skip("Piper en_US-joe-medium is not installed (voicebot models pull "
                    "en_US-joe-medium)")
    assert len(intents["voices"]) == 2
    for voice in intents["voices"].values():
        assert voice["intents"]["total"] == 3 and voice["out_of_domain"]["total"] == 3
        for row in (*voice["intents"]["rows"], *voice["out_of_domain"]["rows"]):
            assert row["correct"] == (row["intent"] == row["expected"])


def test_report_files(report: tuple[Path, dict[str, Any]]) -> None:
    tmp, data = report
    on_disk = json.loads((tmp / "docs" / "accuracy.json").read_text())
    lite, measured = on_disk["stacks"]["lite"]["measures"], data["stacks"]["lite"]["measures"]
    assert lite.keys() == measured.keys()
    assert lite["cards"] == json.loads(json.dumps(measured["cards"]))
    assert lite["wer-asterisk"]["wer"] == measured["wer-asterisk"]["wer"]
    assert all(r["errors"] for r in lite["wer-asterisk"]["rows"])
    markdown = (tmp / "docs" / "accuracy.md").read_text()
    assert "| lite |" in markdown and "card numbers" in markdown
    assert sorted(p.name for p in (tmp / "work" / "lite").glob("*.json")) == sorted(
        f"{m}.json" for m in data["stacks"]["lite"]["measures"])
