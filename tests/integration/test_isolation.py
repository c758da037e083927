"""Other calls are unaffected: a good call completes while every attack of the hardening
issue runs beside it, and a stopped cell ends only its own calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.conftest import running_server
from tests.integration.test_admission import _read
from tests.integration.test_cell_health import _until
from tests.integration.test_cells import _call, _cells
from tests.integration.test_hardening import (
    _abort_handshake,
    _closed_with,
    _port,
    _start,
    full_capacity,
)

__all__: list[str] = []

pytestmark = pytest.mark.slow

CPUS = sorted(os.sched_getaffinity(0))


async def test_a_good_call_completes_while_the_attacks_run(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("first_message_timeout_s: 1.5\nno_audio_timeout_s: 1.5\n")
    with running_server(tmp_path, "--cpus", str(CPUS[0]), "--dialogs-per-core", "3",
                        "--config", str(config)) as server:
        good = asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
        await asyncio.sleep(1.0)

        async def silent(i: int) -> None:
            with contextlib.suppress(InvalidStatus):  # 503 while the slots are held
                async with connect(f"{server.url}/native") as ws:
                    await ws.send(_start(f"silent-{i}"))
                    assert await _closed_with(ws, within_s=12) == 4408

        async def deep(frame: str) -> None:
            with contextlib.suppress(InvalidStatus):
                async with connect(f"{server.url}/") as ws:
                    await ws.send(frame)
                    assert await _closed_with(ws) == 4400

        async def asterisk() -> None:
            start = {"event": "MEDIA_START", "connection_id": "x", "channel": "WebSocket/x",
                     "channel_id": "huge", "format": "ulaw", "optimal_frame_size": 10**8}
            with contextlib.suppress(InvalidStatus):
                async with connect(f"{server.url}/asterisk") as ws:
                    await ws.send(json.dumps(start))
                    assert await _closed_with(ws) == 4400

        for _ in range(2):
            await asyncio.to_thread(_abort_handshake, _port(server), "reset")
        await asyncio.gather(deep("[" * 5000), deep('{"a":' * 5000), asterisk(),
                             *(silent(i) for i in range(100)))
        reports = await good
        assert reports[-1].end == "hangup:completed", reports
        assert reports[1].intent == "lost_card" and reports[2].intent is not None
        await full_capacity(server, slots=3)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs for two cells")
async def test_a_stopped_cell_ends_only_its_own_calls(tmp_path: Path) -> None:
    with running_server(tmp_path, "--cpus", f"{CPUS[0]},{CPUS[1]}") as server:
        def on(cell: str) -> bool:
            return f'voicebot_active_dialogs{{cell="{cell}"}} 1.0' in _read(
                f"{server.http}/metrics")

        victim_call = asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
        await _until(lambda: on("0"), 15, "the first call on cell 0")
        other_call = asyncio.create_task(_call(server.url, "I lost my card", "no", "goodbye"))
        await _until(lambda: on("1"), 15, "the second call on cell 1")
        victim = _cells(_read(f"{server.http}/metrics"))["0"][1]
        os.kill(victim, signal.SIGSTOP)
        try:
            victim_reports, other_reports = await asyncio.gather(victim_call, other_call)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        assert victim_reports[-1].end == "error:1011", victim_reports
        assert other_reports[-1].end == "hangup:completed", other_reports
        assert other_reports[1].intent == "lost_card"
