"""Hung and late cells against a real server: a SIGSTOPped cell is declared hung, killed and
restarted; a job past its deadline fails its turn and the cell takes no calls until it is
back. One cell (``--cpus N``): capacity 2."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.client import TurnReport
from tests.integration.conftest import http_status, running_server
from tests.integration.test_admission import _read
from tests.integration.test_cells import _call, _cells

__all__: list[str] = []

pytestmark = pytest.mark.slow

CPU = str(min(os.sched_getaffinity(0)))
STOP_S = 10.0


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` (blocking probes run on a thread); returns the seconds it took."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _cell0(http: str) -> tuple[int, int, float]:
    return _cells(_read(f"{http}/metrics"))["0"]


def _ends(reports: list[TurnReport]) -> str | None:
    return reports[-1].end


async def test_a_stopped_cell_is_declared_hung_killed_restarted_and_capacity_returns(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path, "--stack", "lite", "--cpus", CPU) as server:
        victim = _cell0(server.http)[1]
        call = asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
        await _until(lambda: 'voicebot_active_dialogs{cell="0"} 1.0'
                     in _read(f"{server.http}/metrics"), 15, "the call placed")
        await asyncio.sleep(1.0)  # into the greeting
        assert http_status(f"{server.http}/readyz") == 200  # one of two slots taken
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # Hung after heartbeat_timeout_s (3) + up to one interval (1): no capacity left.
            took = await _until(lambda: http_status(f"{server.http}/readyz") == 503, 8,
                                "/readyz 503 after the cell stopped")
            assert took >= 2.5
            # The call on it ends with a clear reason, not a silent wait.
            reports = await asyncio.wait_for(call, STOP_S)
            assert _ends(reports) == "error:1011", reports
            assert time.monotonic() - stopped < STOP_S
            await asyncio.sleep(max(0.0, STOP_S - (time.monotonic() - stopped)))
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed as hung: gone already
                os.kill(victim, signal.SIGCONT)
        assert not await asyncio.to_thread(Path(f"/proc/{victim}").exists)
        # Restarted with a new process; full capacity (two calls) returns.
        await _until(lambda: _cell0(server.http)[2] == 1.0
                     and _cell0(server.http)[1] != victim, 60, "the cell restarted")
        await _until(lambda: http_status(f"{server.http}/readyz") == 200, 10, "ready again")
        again = await asyncio.gather(*(_call(server.url, "goodbye") for _ in range(2)))
        assert [_ends(r) for r in again] == ["hangup:completed"] * 2, again
        log = server.log_path.read_text()
        assert f"cell 0 (pid {victim}) hung: no heartbeat answer for" in log
        assert "restarting cell 0" in log


async def test_a_job_past_its_deadline_fails_its_turn_and_the_cell_rests_until_it_is_back(
    tmp_path: Path,
) -> None:
    config = tmp_path / "health.yaml"
    config.write_text("heartbeat_interval_s: 0.5\nheartbeat_timeout_s: 8.0\n"
                      "job_timeout_s: 1.0\nstuck_job_s: 30.0\n")
    with running_server(tmp_path, "--stack", "lite", "--cpus", CPU, "--config",
                        str(config)) as server:
        pid = _cell0(server.http)[1]
        os.kill(pid, signal.SIGSTOP)  # shorter than the heartbeat timeout: slow, not hung
        try:
            call = asyncio.create_task(_call(server.url, "goodbye"))  # its greeting waits
            took = await _until(lambda: http_status(f"{server.http}/readyz") == 503, 5,
                                "/readyz 503 once the greeting's job is late")
            assert took < 4.0
            await asyncio.sleep(3.0 - min(3.0, took))
        finally:
            os.kill(pid, signal.SIGCONT)
        await _until(lambda: http_status(f"{server.http}/readyz") == 200, 8,
                     "ready again once the late jobs are back")
        reports = await asyncio.wait_for(call, 60)
        assert _ends(reports) != "error:1011", reports  # the turn failed, not the call
        assert _cell0(server.http)[1:] == (pid, 1.0)  # the same process serves on
        log = server.log_path.read_text()
        assert f"cell 0 (pid {pid}): synthesize job of call" in log
        assert "timed out after 1.0 s" in log
        assert f"cell 0 (pid {pid}) is suspect, taking no new calls" in log
        assert f"cell 0 (pid {pid}) is healthy again" in log
        assert "hung" not in log
