"""Capacity, refusal at the handshake, metrics, pinning and drain on the real server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from tests.integration.conftest import http_status, running_server

__all__: list[str] = []

pytestmark = pytest.mark.slow


async def _call(url: str, *texts: str) -> list[TurnReport]:
    options = CallOptions(url=url)
    turns = [CallerTurn("text", t) for t in texts]
    prepared = await asyncio.to_thread(prepare_turns, turns, options)
    reports, _ = await place_call(prepared, options)
    return reports


async def _refused(url: str) -> tuple[int, str | None]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    response = info.value.response
    return response.status_code, response.headers.get("Retry-After")


async def _idle_again(http: str, *, within_s: float = 5.0) -> bool:
    """The server frees a call's slot just after the client has seen the close: wait until
    every call is released (``/readyz`` alone turns 200 once one slot is free)."""
    for _ in range(int(within_s / 0.1)):
        metrics = await asyncio.to_thread(_read, f"{http}/metrics")
        if (re.search(r'^voicebot_active_dialogs\{cell="0"\} 0\.0$', metrics, re.MULTILINE)
                and http_status(f"{http}/readyz") == 200):
            return True
        await asyncio.sleep(0.1)
    return False


def _thread_cpus(pid: int) -> dict[str, str]:
    """Cpus_allowed_list of every thread of ``pid``, from /proc."""
    masks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        match = re.search(r"^Cpus_allowed_list:\s+(\S+)$", (task / "status").read_text(),
                          re.MULTILINE)
        masks[task.name] = match.group(1) if match else "?"
    return masks


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def test_third_call_refused_while_two_complete(tmp_path: Path) -> None:
    with running_server(tmp_path, "--stack", "lite", "--cpus", "0",
                        "--dialogs-per-core", "2") as server:
        # Every thread of the server is pinned to CPU 0.
        masks = await asyncio.to_thread(_thread_cpus, server.proc.pid)
        assert len(masks) > 2 and set(masks.values()) == {"0"}, masks
        calls = [asyncio.create_task(_call(server.url, "goodbye")) for _ in range(2)]
        await asyncio.sleep(1.0)
        assert http_status(f"{server.http}/readyz") == 503
        assert await _refused(server.url) == (503, "5")
        first, second = await asyncio.gather(*calls)
        assert first[-1].end == second[-1].end == "hangup:completed"
        assert await _idle_again(server.http)
        metrics = await asyncio.to_thread(_read, f"{server.http}/metrics")
        assert _metric(metrics, 'voicebot_calls_total{outcome="admitted"}') == 2
        assert _metric(metrics, 'voicebot_calls_total{outcome="refused_full"}') == 1
        assert _metric(metrics, 'voicebot_turn_latency_seconds_count{kind="turn"}') == 2
        assert _metric(metrics, 'voicebot_turn_latency_seconds_count{kind="greeting"}') == 2
        assert _metric(metrics, 'voicebot_active_dialogs{cell="0"}') == 0
        assert _metric(metrics, 'voicebot_turn_part_seconds_count{part="asr"}') == 2
        assert _metric(metrics, 'voicebot_rss_bytes{cell="0"}') > 50e6


async def test_sigterm_drains_live_calls(tmp_path: Path) -> None:
    with running_server(tmp_path, "--stack", "lite", "--cpus", "0") as server:
        call = asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
        await asyncio.sleep(2.0)
        os.kill(server.proc.pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert http_status(f"{server.http}/readyz") == 503
        assert (await _refused(server.url))[0] == 503
        reports = await call  # the live call finishes normally
        assert reports[-1].end == "hangup:completed"
        assert await asyncio.to_thread(server.proc.wait, 20) == 0
        assert "draining: 1 live calls" in server.log_path.read_text()
