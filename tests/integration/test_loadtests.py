"""The load harness against a real server: the caller, a Locust smoke run (local and
distributed), ``make load``'s runner and the caller-audio check.

The Locust runs are short (tens of seconds, two callers, the offline default
stack): they keep the harness working, they measure nothing worth reporting.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from loadtests.caller import Caller, CallerOptions
from loadtests.phrases import PhraseBook, Script, Step
from tests.integration.conftest import REPO, ServerProcess, free_port, running_server

pytestmark = pytest.mark.slow

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("load"), "--stack", "lite",
                        "--dialogs-per-core", "4") as process:
        yield process


@pytest.fixture(scope="module")
def book() -> PhraseBook:
    return PhraseBook.load()


def _lost_card(book: PhraseBook, *, barge_in: bool) -> Script:
    return Script("lost_card", (Step(book.saying("lost_card")[0], barge_in=barge_in),
                                Step(book.answering("yes_no", True)[0]),
                                Step(book.saying("goodbye")[0])))


def test_native_call_with_barge_in(server: ServerProcess, book: PhraseBook) -> None:
    seen: list[str] = []
    caller = Caller(CallerOptions(url=server.url, protocol="native"), rng=random.Random(1))
    result = caller.run(_lost_card(book, barge_in=True),
                        on_sample=lambda _, sample: seen.append(sample.kind))
    assert result.outcome == "completed", result.error
    kinds = [s.kind for s in result.samples]
    assert seen == kinds
    assert kinds == ["greeting", "turn", "barge_in", "turn", "turn"]
    by_kind = {s.kind: s for s in result.samples}
    assert 0 < by_kind["greeting"].latency_ms < 2000  # type: ignore[operator]
    # The endpoint waits min_silence_ms (500) of silence: a reply can't come sooner.
    assert all(450 < s.latency_ms < 5000 for s in result.samples  # type: ignore[operator]
               if s.kind == "turn")
    # The server waits barge_in_min_ms (300) of speech before it clears.
    assert 250 < by_kind["barge_in"].latency_ms < 3000  # type: ignore[operator]
    assert result.samples[1].intent == "lost_card"


def test_twilio_call_with_keypad_digits(server: ServerProcess, book: PhraseBook) -> None:
    script = Script("balance", (Step(book.saying("check_balance")[0]), Step(dtmf="4217"),
                                Step(book.saying("goodbye")[0])))
    result = Caller(CallerOptions(url=server.url, protocol="twilio")).run(script)
    assert result.outcome == "completed", result.error
    assert [s.kind for s in result.samples] == ["greeting", "turn", "dtmf", "turn"]
    assert all(s.latency_ms is not None and s.error is None for s in result.samples)


def test_refused_and_failed_calls_are_told_apart(tmp_path: Path, book: PhraseBook) -> None:
    script = _lost_card(book, barge_in=False)
    with running_server(tmp_path, "--stack", "lite", "--cpus", "0",
                        "--dialogs-per-core", "1") as server:
        holder = websocket.create_connection(server.url)  # holds the one slot
        try:
            refused = Caller(CallerOptions(url=server.url)).run(script)
        finally:
            holder.close()
    assert refused.outcome == "refused" and "503" in (refused.error or "")
    gone = Caller(CallerOptions(url=f"ws://127.0.0.1:{free_port()}")).run(script)
    assert gone.outcome == "failed" and "connect" in (gone.error or "")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _locust(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "locust", "-f",
                           str(REPO / "loadtests" / "locustfile.py"), *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout_s)


def test_locust_smoke_run(server: ServerProcess, tmp_path: Path) -> None:
    csv_path = tmp_path / "turns.csv"
    # A misheard intent is a Locust failure (`mismatch:...`); this run checks the calls.
    done = _locust("--headless", "--host", server.url, "-u", "2", "-r", "2", "-t", "25s",
                   "--exit-code-on-error", "0", "--vb-barge-in", "0.5",
                   "--vb-turn-csv", str(csv_path),
                   "--csv", str(tmp_path / "locust"), "--only-summary")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(csv_path)
    turns = [r for r in rows if r["kind"] == "turn"]
    assert len(turns) >= 3 and all(r["outcome"] == "ok" for r in turns)
    assert all(float(r["latency_ms"]) > 0 for r in turns)
    assert {r["kind"] for r in rows} >= {"greeting", "turn"}
    assert not [r for r in rows if r["kind"] == "call" and r["outcome"] != "completed"]
    stats = {(r["Type"], r["Name"]) for r in _rows(tmp_path / "locust_stats.csv")}
    assert ("native", "turn") in stats and ("native", "greeting") in stats


def test_distributed_locust_with_two_workers(server: ServerProcess, tmp_path: Path) -> None:
    csv_path, port = tmp_path / "turns.csv", free_port()
    workers = [subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"),
         "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)]
    try:
        done = _locust("--headless", "--master", "--master-bind-port", str(port),
                       "--expect-workers", "2", "--expect-workers-max-wait", "60",
                       "--host", server.url, "-u", "2", "-r", "2", "-t", "25s",
                       "--vb-protocol", "twilio", "--vb-turn-csv", str(csv_path),
                       "--only-summary")
    finally:
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(csv_path)
    assert len({r["worker"] for r in rows}) == 2  # one CSV at the master, rows of both
    assert {r["protocol"] for r in rows} == {"twilio"}
    assert [r for r in rows if r["kind"] == "turn" and r["outcome"] == "ok"]


def test_load_runner_summary_and_verdict(server: ServerProcess, tmp_path: Path) -> None:
    def run(slo_ms: str, *where: str) -> tuple[int, dict[str, object]]:
        code = subprocess.run(
            [sys.executable, "-m", "loadtests.run", "load", *where, "--users", "1",
             "--duration-s", "12", "--client-cpu", "", "--slo-ms", slo_ms,
             "--out", str(tmp_path / slo_ms)],
            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180).returncode
        return code, json.loads((tmp_path / slo_ms / "summary.json").read_text())

    started = time.monotonic()
    code, summary = run("1500", "--url", server.url)
    assert code == 0, summary
    assert summary["verdict"] == "pass" and summary["turn"]["n"] >= 1  # type: ignore[index]
    assert summary["server_cpu_percent"] > 0  # type: ignore[operator]
    assert "asr" in summary["turn_part_means_ms"]  # type: ignore[operator]
    assert summary["dialogs_per_core"] is None  # an external server: its admission is its own
    # This time the runner starts the server itself, pinned, admitting the one caller.
    # No turn beats the 500 ms endpoint wait.
    code, summary = run("100", "--stack", "lite", "--server-cpus", "0")
    assert code == 1 and str(summary["verdict"]).startswith("FAIL: p95")
    assert summary["dialogs_per_core"] == 1 and str(summary["pinning"]).startswith("server taskset")
    assert "listening" in (tmp_path / "100" / "server.log").read_text()
    assert time.monotonic() - started < 170


def test_committed_caller_audio_matches_a_fresh_build() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "caller-audio", "--check"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
