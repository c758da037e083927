"""Load tests of a scenario other than the demo, against a real server: its caller audio
made by ``python -m bench caller-audio``, a caller walking its dialog, a short Locust run.

The scenario is the pizza shop of ``tests/unit/loadtest_pizza.yaml`` (other intents,
a number slot, a six-digit code looked up in a table, yes/no, free text), served alone
by ``voicebot serve --stack lite`` (pocketsphinx + espeak-ng: offline).
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.caller import Caller, CallerOptions
from loadtests.scripts import load_planner
from tests.integration.conftest import REPO, ServerProcess, running_server

pytestmark = pytest.mark.slow

PIZZA = REPO / "tests" / "unit" / "loadtest_pizza.yaml"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("caller-audio") / "pizza_shop"
    done = subprocess.run([sys.executable, "-m", "bench", "caller-audio", "--scenario", str(PIZZA),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("pizza")
    (folder / "scenarios").mkdir()
    shutil.copy(PIZZA, folder / "scenarios" / PIZZA.name)
    config = folder / "voicebot.yaml"
    config.write_text(f"scenarios_dir: {folder / 'scenarios'}\ndefault_scenario: pizza_shop\n")
    with running_server(folder, "--stack", "lite", "--config", str(config),
                        "--dialogs-per-core", "4") as process:
        yield process


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _locust(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f",
                           str(REPO / "loadtests" / "locustfile.py"), *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)


def test_a_caller_walks_the_pizza_shop(server: ServerProcess, audio: Path) -> None:
    planner = load_planner(str(PIZZA), audio)
    rng = random.Random(5)
    script = next(s for s in (planner.script(rng) for _ in range(200))
                  if s.name.startswith("track_order>"))
    result = Caller(CallerOptions(url=server.url, scenario="pizza_shop"), rng=rng).run(script)
    assert result.outcome == "completed", result.error
    turns = [s for s in result.samples if s.kind == "turn"]
    assert len(turns) == len(script.steps) and all(s.latency_ms for s in turns)
    checks = result.checks
    assert [s.expected_intent for s in checks] == \
        [s.expected_intent for s in script.steps if s.expected_intent]
    assert checks[0].intent == "track_order"  # the server heard the first line as meant
    log = server.log_once("pizza_shop")
    assert "pizza_shop" in log


def test_locust_run_of_the_pizza_shop(server: ServerProcess, audio: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "turns.csv"
    done = _locust("--headless", "--host", server.url, "-u", "2", "-r", "2", "-t", "25s",
                   "--vb-scenario", str(PIZZA), "--vb-audio-dir", str(audio),
                   "--vb-turn-csv", str(csv_path), "--csv", str(tmp_path / "locust"),
                   "--only-summary", "--exit-code-on-error", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(csv_path)
    calls = [r for r in rows if r["kind"] == "call"]
    assert calls and all(r["outcome"] == "completed" for r in calls), calls
    intents = {"order_pizza", "track_order", "opening_hours", "human", "bye"}
    assert all(r["script"].split("+")[0].split(">")[0] in intents for r in calls)
    turns = [r for r in rows if r["kind"] == "turn"]
    assert len(turns) >= 3 and all(r["outcome"] == "ok" for r in turns)
    checks = [r for r in rows if r["kind"] == "intent"]
    assert checks and all(r["outcome"] in ("ok", "mismatch") for r in checks)
    assert {r["expected_intent"] for r in checks} <= intents
    mismatches = [r for r in checks if r["outcome"] == "mismatch"]
    assert len(mismatches) < len(checks)  # most intents heard as meant
    stats = {(r["Type"], r["Name"]): r for r in _rows(tmp_path / "locust_stats.csv")}
    assert ("native", "turn") in stats and ("native", "greeting") in stats
    heard = {name for kind, name in stats if kind == "intent"}
    assert heard and all(n in intents or n.startswith("mismatch:") for n in heard)
    for row in mismatches:  # each mismatch is a failure entry of its own
        name = f"mismatch:{row['expected_intent']}→{row['intent']}"
        assert int(stats[("intent", name)]["Failure Count"]) >= 1


def test_locust_without_caller_audio_names_the_command(tmp_path: Path) -> None:
    done = _locust("--headless", "--host", "ws://127.0.0.1:9", "-u", "1", "-t", "2s",
                   "--vb-scenario", str(PIZZA), "--vb-audio-dir", str(tmp_path / "none"))
    assert done.returncode != 0
    assert f"python -m bench caller-audio --scenario {PIZZA} --out {tmp_path / 'none'}" \
        in done.stderr
