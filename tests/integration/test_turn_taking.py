"""End of turn by the end-of-turn policy in the real server: ``turn_policy: model`` with the
REAL Smart Turn v3.2 (models/cache) in the cells of the ``lite`` stack, espeak-ng callers
over an 8 kHz μ-law line; the turn log lines, ``/metrics``, and the start-time refusal of a
model policy without a model."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from tests.integration.conftest import (
    MODELS_DIR,
    REPO,
    ServerProcess,
    free_port,
    running_server,
)

__all__: list[str] = []

pytestmark = pytest.mark.slow

_LINE = re.compile(r"call=(?P<call>\S+) turn=(?P<turn>\d+) .*endpoint_wait_ms=(?P<wait>\d+).* "
                   r"end_rule=(?P<rule>\w+) turn_score=(?P<score>[\d.]+|-) "
                   r"waited_ms=(?P<waited>\d+)")


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("turns")
    config = folder / "voicebot.yaml"
    config.write_text("stack: lite\nturn_policy: model\nengines:\n  turn: smart-turn\n"
                      "  options:\n    turn: {model: smart-turn-v3.2}\n")
    with running_server(folder, "--config", str(config), "--no-pull") as server:
        yield server


async def _call(url: str, call_id: str, *turns: CallerTurn) -> list[TurnReport]:
    options = CallOptions(url=url, encoding="mulaw", sample_rate_hz=8000, call_id=call_id)
    prepared = await asyncio.to_thread(prepare_turns, list(turns), options)
    reports, _audio = await place_call(prepared, options)
    return reports


def _turn_lines(server: ServerProcess, call_id: str, turns: int) -> list[re.Match[str]]:
    text = server.log_once(*(f"call={call_id} turn={n} " for n in range(1, turns + 1)))
    lines = [m for m in map(_LINE.search, text.splitlines())
             if m is not None and m["call"] == call_id]
    for line in lines:
        print(f"{call_id} turn {line['turn']}: end_rule={line['rule']} "
              f"turn_score={line['score']} waited_ms={line['waited']}")
    return lines


async def test_calls_complete_with_the_turn_model_ending_their_turns(
        turn_server: ServerProcess) -> None:
    reports = await _call(turn_server.url, "turns-lost", CallerTurn("text", "I lost my card"),
                          CallerTurn("text", "yes"), CallerTurn("text", "goodbye"))
    # Every turn was heard and answered (what pocketsphinx made of it is lite's business:
    # the turn model ends a turn after less trailing silence than 500 ms, and a shorter
    # tail changes some of its guesses, "yes" heard "yeah" or "you").
    assert reports[1].intent == "lost_card", reports
    assert all(r.transcript and r.bot_text and r.latency_ms for r in reports[1:]), reports
    lines = await asyncio.to_thread(_turn_lines, turn_server, "turns-lost", 3)
    assert [line["turn"] for line in lines] == ["1", "2", "3"]
    for line in lines:
        # lite does not speculate: the model or the longest pause ends a free turn, and
        # the model was asked at its first 200 ms pause; the wait is the endpoint's.
        assert line["rule"] in ("model", "max_silence") and line["score"] != "-", line[0]
        assert line["wait"] == line["waited"] and 200 <= int(line["waited"]) < 1700, line[0]
    # Smart Turn hears espeak-ng's "yes" as complete (0.98 over this line).
    assert lines[1]["rule"] == "model" and int(lines[1]["waited"]) < 500, lines[1][0]


async def test_a_card_number_waits_through_its_pauses(turn_server: ServerProcess) -> None:
    reports = await _call(turn_server.url, "turns-card", CallerTurn("text", "what is my balance"),
                          CallerTurn("text", "four two one seven"), CallerTurn("text", "goodbye"))
    assert reports[1].intent == "check_balance", reports
    lines = await asyncio.to_thread(_turn_lines, turn_server, "turns-card", 3)
    [digits] = [line for line in lines if line["turn"] == "2"]
    # A digits slot of length 4 is not the model's to judge; lite has no partial
    # transcripts, so the digits' longest pause (2.5 s) ends it.
    assert (digits["rule"], digits["score"]) == ("max_silence", "-"), digits[0]
    assert 2500 <= int(digits["waited"]) < 2700, digits[0]
    assert reports[2].transcript and reports[-1].end == "hangup:completed", reports


def test_the_metrics_count_turn_ends_model_jobs_and_speculations(
        turn_server: ServerProcess) -> None:
    asyncio.run(_call(turn_server.url, "turns-metrics", CallerTurn("text", "goodbye")))
    with urllib.request.urlopen(f"{turn_server.http}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line.startswith("voicebot_"))
    values = {name: float(value) for name, value in values.items()}
    ends = {rule: values.get(f'voicebot_turn_end_total{{rule="{rule}"}}', -1.0)
            for rule in ("model", "expectation", "max_silence", "silence", "max_length")}
    assert ends["model"] >= 1 and ends["silence"] == 0 and ends["expectation"] == 0, ends
    assert values["voicebot_turn_model_seconds_count"] >= 1
    assert 0 < values["voicebot_turn_model_seconds_sum"] < values[
        "voicebot_turn_model_seconds_count"]  # well under a second each
    assert values['voicebot_speculations_total{result="started"}'] == 0  # lite: none


def test_a_model_policy_without_a_turn_model_is_refused_at_start(tmp_path: Path) -> None:
    env = dict(os.environ, VOICEBOT_MODELS_DIR=str(MODELS_DIR),
               VOICEBOT_DATA_DIR=str(tmp_path / "data"))

    def serve(config: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "voicebot.yaml"
        path.write_text(config)
        return subprocess.run([sys.executable, "-m", "server", "serve", "--config", str(path),
                               "--no-pull", "--port", str(free_port())], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)

    done = serve("stack: lite\nturn_policy: model\n")
    assert done.returncode == 2, done.stderr
    assert ("ends turns with turn_policy: model (the server's turn_policy, from its stack or "
            "config file), but this server loads no end-of-turn model: set 'engines: turn: "
            "smart-turn'") in done.stderr
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    bank_card = (REPO / "scenarios" / "bank_card.yaml").read_text()
    (scenarios / "bank_card.yaml").write_text(bank_card.replace(
        "    min_silence_ms: 500\n", "    min_silence_ms: 500\n    turn_policy: model\n"))
    done = serve(f"stack: lite\nscenarios_dir: {scenarios}\n")
    assert done.returncode == 2, done.stderr
    assert ("scenario 'bank_card' (" in done.stderr and "ends turns with turn_policy: model "
            "(its settings.endpointing), but this server loads no end-of-turn model"
            in done.stderr), done.stderr
