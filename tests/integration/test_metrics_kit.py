"""What dashboards and alerts read, from a real server: contact-center counters after
real calls, the admission gauges while the node is full, a cell restart, a drain.

The real server (``--stack lite``, one cell, one dialog) serves the demo scenario with
a one-second no-input timeout and one retry (a copy in the test's folder).  Real
calls over the native protocol: a caller who says "goodbye" (completed, intent
``goodbye``), one who hangs up during the greeting (while the node is full), and one
who stays silent until the bot reprompts, falls back and transfers.  ``/metrics`` is
read with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from server.client import CallerTurn, CallOptions, place_call, prepare_turns
from tests.integration.conftest import REPO, ServerProcess, http_status, running_server
from voicebot import protocol as p

__all__: list[str] = []

pytestmark = pytest.mark.slow

_FRAME = bytes(640)  # 20 ms of silence, PCM16 at 16 kHz
_INTENTS = ("check_balance", "lost_card", "operator", "goodbye")  # the demo scenario's
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(http: str) -> Samples:
    with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _cc(samples: Samples, name: str, **labels: str) -> float | None:
    return _value(samples, name, scenario="bank_card", **labels)


async def _until(http: str, condition: Callable[[Samples], bool], what: str,
                 timeout_s: float = 30.0) -> Samples:
    """Scrape until ``condition`` holds (a call's end is counted after its socket closes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await asyncio.to_thread(_scrape, http)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.2)


def _idle(samples: Samples) -> bool:
    return (_value(samples, "voicebot_active_dialogs", cell="0") == 0
            and _value(samples, "voicebot_ready") == 1)


@contextlib.asynccontextmanager
async def _call(url: str) -> AsyncIterator[tuple[ClientConnection, list[p.ServerEvent]]]:
    """A native call that streams silence at real time; the events it got so far."""
    events: list[p.ServerEvent] = []
    async with connect(url, max_size=2**20) as ws:
        await ws.send(p.encode_client_message(
            p.Start(call_id=f"kit-{time.monotonic_ns()}", encoding="pcm16",
                    sample_rate_hz=16_000)))

        async def stream() -> None:
            started, sent = time.monotonic(), 0
            while True:
                due = int((time.monotonic() - started) / 0.02) + 1
                for _ in range(due - sent):
                    await ws.send(_FRAME)
                sent = due
                await asyncio.sleep(0.02)

        async def receive() -> None:  # as they come: the test waits for some
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    events.append(p.decode_server_event(message))

        tasks = [asyncio.create_task(stream()), asyncio.create_task(receive())]
        try:
            yield ws, events
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task


async def _wait_event(events: list[p.ServerEvent], kind: type, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(isinstance(e, kind) for e in events):
        if time.monotonic() > deadline:
            pytest.fail(f"no {kind.__name__} event; got {[e.type for e in events]}")
        await asyncio.sleep(0.05)


def _config(tmp_path: Path) -> Path:
    """The demo scenario with a 1 s no-input timeout and one retry."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    text = (REPO / "scenarios" / "bank_card.yaml").read_text()
    assert "  max_retries: 2\n" in text
    text = text.replace("  max_retries: 2\n", "  max_retries: 1\n  no_input_timeout_ms: 1000\n")
    (folder / "bank_card.yaml").write_text(text)
    config = tmp_path / "voicebot.yaml"
    config.write_text(f"scenarios_dir: {json.dumps(str(folder))}\ndefault_scenario: bank_card\n")
    return config


async def _completed_call(server: ServerProcess) -> None:
    options = CallOptions(url=server.url)
    prepared = await asyncio.to_thread(prepare_turns, [CallerTurn("text", "goodbye")], options)
    reports, _ = await place_call(prepared, options)
    assert reports[-1].end == "hangup:completed", reports


async def test_dashboards_read_real_calls_restarts_and_a_drain(tmp_path: Path) -> None:
    with running_server(tmp_path, "--stack", "lite", "--cpus", "0", "--dialogs-per-core", "1",
                        "--config", str(_config(tmp_path))) as server:
        http = server.http
        start = await asyncio.to_thread(_scrape, http)
        assert _value(start, "voicebot_capacity_dialogs") == 1
        assert _value(start, "voicebot_ready") == 1
        assert _value(start, "voicebot_draining") == 0
        assert _value(start, "voicebot_slo_p95_seconds") == 1.5
        assert _value(start, "voicebot_cell_restarts_total", cell="0") == 0
        for outcome in ("completed", "transferred", "caller_hung_up", "failed"):
            assert _cc(start, "voicebot_call_outcomes_total", outcome=outcome) == 0
        assert _cc(start, "voicebot_intents_total", intent="none") == 0
        assert _cc(start, "voicebot_fallbacks_total", state="anything_else") == 0

        # 1. "goodbye": completed.
        await _completed_call(server)
        await _until(http, _idle, "the first call is released")

        # 2. The caller hangs up during the greeting; meanwhile the node is full.
        async with _call(server.url) as (ws, events):
            await _wait_event(events, p.BotSpeechStart, 15)
            full = await asyncio.to_thread(_scrape, http)
            assert _value(full, "voicebot_ready") == 0
            assert _value(full, "voicebot_capacity_dialogs") == 1
            assert _value(full, "voicebot_active_dialogs", cell="0") == 1
            assert http_status(f"{http}/readyz") == 503
            await ws.close()
        await _until(http, _idle, "the hung-up call is released")

        # 3. Silence: a no-input reprompt, then the fallback transfers.
        async with _call(server.url) as (_, events):
            await _wait_event(events, p.Transfer, 45)
        counted = await _until(
            http, lambda s: _cc(s, "voicebot_call_outcomes_total", outcome="transferred") == 1,
            "the transfer is counted")
        assert _cc(counted, "voicebot_call_outcomes_total", outcome="completed") == 1
        assert _cc(counted, "voicebot_call_outcomes_total", outcome="caller_hung_up") == 1
        assert _cc(counted, "voicebot_call_outcomes_total", outcome="failed") == 0
        assert _cc(counted, "voicebot_intents_total", intent="goodbye") == 1
        assert _cc(counted, "voicebot_no_input_timeouts_total", state="greeting") == 2
        assert _cc(counted, "voicebot_reprompts_total", state="greeting") == 1
        assert _cc(counted, "voicebot_fallbacks_total", state="greeting") == 1
        assert _cc(counted, "voicebot_fallbacks_total", state="transfer_agent") is None
        assert not any(dict(labels).get("intent") not in (None, "none", *_INTENTS)
                       for _, labels in counted)  # bounded: no transcript became a label

        # 4. The cell dies: counted as a restart, capacity comes back.
        up = [dict(labels) for (name, labels), value in counted.items()
              if name == "voicebot_cell_up" and value == 1]
        assert len(up) == 1
        os.kill(int(up[0]["pid"]), signal.SIGKILL)
        restarted = await _until(
            http, lambda s: (_value(s, "voicebot_cell_restarts_total", cell="0") == 1
                             and _value(s, "voicebot_ready") == 1), "the cell restarts", 60)
        assert _value(restarted, "voicebot_capacity_dialogs") == 1

        # 5. SIGTERM with a live call: draining, not ready; the call still finishes.
        async with _call(server.url) as (_, events):
            await _wait_event(events, p.BotSpeechStart, 15)
            os.kill(server.proc.pid, signal.SIGTERM)
            draining = await _until(http, lambda s: _value(s, "voicebot_draining") == 1,
                                    "the server drains", 10)
            assert _value(draining, "voicebot_ready") == 0
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
