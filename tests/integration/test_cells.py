"""Cells: one pinned worker process per CPU; a dead cell ends only its own calls."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from tests.integration.conftest import running_server
from tests.integration.test_admission import _read, _thread_cpus

__all__: list[str] = []

pytestmark = pytest.mark.slow

CPUS = sorted(os.sched_getaffinity(0))[:2]


def _cells(metrics: str) -> dict[str, tuple[int, int, float]]:
    """cell → (cpu, pid, up) from voicebot_cell_up."""
    found = re.findall(r'^voicebot_cell_up\{cell="(\d+)",cpu="(\d+)",pid="(\d+)"\} (\S+)$',
                       metrics, re.MULTILINE)
    latest: dict[str, tuple[int, int, float]] = {}
    for cell, cpu, pid, up in found:
        if float(up) == 1.0 or cell not in latest:
            latest[cell] = (int(cpu), int(pid), float(up))
    return latest


async def _call(url: str, *texts: str) -> list[TurnReport]:
    options = CallOptions(url=url, turn_timeout_s=15)
    prepared = await asyncio.to_thread(prepare_turns, [CallerTurn("text", t) for t in texts],
                                       options)
    reports, _ = await place_call(prepared, options)
    return reports


async def test_cells_pinned_and_a_dead_cell_ends_only_its_calls(tmp_path: Path) -> None:
    cpus = ",".join(map(str, CPUS))
    with running_server(tmp_path, "--stack", "lite", "--cpus", cpus) as server:
        cells = _cells(await asyncio.to_thread(_read, f"{server.http}/metrics"))
        assert len(cells) == len(CPUS)
        for cpu, pid, up in cells.values():
            assert up == 1.0
            masks = await asyncio.to_thread(_thread_cpus, pid)
            assert set(masks.values()) == {str(cpu)}, (pid, masks)
        if len(CPUS) < 2:
            pytest.fail("this test needs two CPUs (the project's machines have two)")
        calls = [asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
                 for _ in range(2)]
        await asyncio.sleep(3.0)  # both placed, one per cell (least loaded)
        metrics = await asyncio.to_thread(_read, f"{server.http}/metrics")
        assert 'voicebot_active_dialogs{cell="0"} 1.0' in metrics
        assert 'voicebot_active_dialogs{cell="1"} 1.0' in metrics
        victim_pid = cells["0"][1]
        os.kill(victim_pid, signal.SIGKILL)
        results = await asyncio.gather(*calls)
        ends = sorted(r[-1].end or "" for r in results)
        assert ends == ["error:1011", "hangup:completed"], results
        # The cell comes back with a new process and serves again.
        for _ in range(100):
            cells = _cells(await asyncio.to_thread(_read, f"{server.http}/metrics"))
            if cells["0"][2] == 1.0 and cells["0"][1] != victim_pid:
                break
            await asyncio.sleep(0.2)
        assert cells["0"][2] == 1.0 and cells["0"][1] != victim_pid
        again = await asyncio.gather(*(_call(server.url, "goodbye") for _ in range(2)))
        assert [r[-1].end for r in again] == ["hangup:completed"] * 2
        log = server.log_path.read_text()
        assert "cell 0 (pid" in log and "died" in log and "restarting cell 0" in log
