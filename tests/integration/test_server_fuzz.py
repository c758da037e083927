"""The server-level fuzz test: a few thousand malformed inputs on every call path while
a good call completes.  No connection is closed with 1011, no traceback reaches the log,
and the server is at full capacity afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.client import CallerTurn, CallOptions, place_call, prepare_turns
from server.transports import PATHS
from tests.integration.conftest import ServerProcess, running_server
from tests.integration.test_hardening import full_capacity, ready
from tests.unit.fuzz_helpers import DEEP, NATIVE, TRACE_FRAMES, mutate
from voicebot.telephony import Frame

__all__: list[str] = []

pytestmark = pytest.mark.slow

_SLOTS = 8
_CASES = 700


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = folder / "config.yaml"
    config.write_text("first_message_timeout_s: 2\nno_audio_timeout_s: 2\n")
    with running_server(folder, "--stack", "lite", "--cpus", "0", "--dialogs-per-core", str(_SLOTS),
                        "--config", str(config)) as process:
        yield process


def _cases(count: int) -> list[tuple[str, list[Frame]]]:
    """``count`` (path, frames) cases: golden-trace calls cut short, with frames mutated
    (tests/unit/fuzz_helpers.py's mutator), replaced by junk, or deep JSON; on every
    provider path, the detecting root path and the native path."""
    bases: list[tuple[list[str], list[Frame]]] = [
        ([f"/{trace.parent.name}", "/"], frames) for trace, frames in TRACE_FRAMES.items()
    ]
    bases.append((["/native", "/"], [*NATIVE, b"\x00" * 640]))
    assert {path for paths, _ in bases for path in paths} == set(PATHS)
    cases: list[tuple[str, list[Frame]]] = []
    junk = st.binary(max_size=600) | st.text(max_size=600) | st.sampled_from(DEEP)

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(bases), st.data())
    def collect(base: tuple[list[str], list[Frame]], data: st.DataObject) -> None:
        paths, frames = base
        path = data.draw(st.sampled_from(paths))
        out: list[Frame] = []
        for frame in frames[: data.draw(st.integers(1, 8))]:
            how = data.draw(st.sampled_from(["keep", "mutate", "mutate", "junk"]))
            out.append(frame if how == "keep" else
                       mutate(frame, data) if how == "mutate" else data.draw(junk))
        cases.append((path, out))

    collect()
    return cases


async def _attack(url: str, frames: list[Frame], codes: list[int | None]) -> int:
    """Send ``frames``; wait briefly for the server's answer; the close code seen."""
    try:
        async with connect(url, open_timeout=20, max_size=None) as ws:
            with contextlib.suppress(ConnectionClosed):
                for frame in frames:
                    await ws.send(frame)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.4):
                        while True:
                            await ws.recv()
            codes.append(ws.close_code)
    except InvalidStatus as exc:  # all slots busy for a moment: fine, counted apart
        assert exc.response.status_code == 503, exc
        codes.append(503)
    return len(frames)


async def test_thousands_of_malformed_inputs_while_a_good_call_completes(
    server: ServerProcess,
) -> None:
    cases = await asyncio.to_thread(_cases, _CASES)
    options = CallOptions(url=server.url)
    turns = [CallerTurn("text", "I lost my card"), CallerTurn("text", "yes"),
             CallerTurn("text", "goodbye")]
    prepared = await asyncio.to_thread(prepare_turns, turns, options)
    good = asyncio.create_task(place_call(prepared, options))
    codes: list[int | None] = []
    sent = 0
    gate = asyncio.Semaphore(_SLOTS - 2)

    async def one(path: str, frames: list[Frame]) -> int:
        async with gate:
            return await _attack(f"{server.url}{path}", frames, codes)

    sent = sum(await asyncio.gather(*(one(path, frames) for path, frames in cases)))
    reports, audio = await good
    assert sent >= 2000, sent
    assert reports[-1].end == "hangup:completed", reports
    assert reports[1].intent == "lost_card"
    assert np.abs(audio.astype(np.int32)).max() > 1000
    assert 1011 not in codes, codes.count(1011)
    # A 503 is admission turning an attack away while its slots are still being freed
    # (more of them on a loaded machine: 79 of 700 once with the other core busy);
    # most attacks must still reach the call handler and get its close code.
    assert codes.count(503) < len(codes) // 4, codes.count(503)
    assert {code for code in codes if code is not None and code >= 4000} >= {4400}
    await ready(server, within_s=10)
    await full_capacity(server, slots=_SLOTS, within_s=10)
    log = server.log_path.read_text()
    assert "Traceback" not in log
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:5]
    assert "internal error" not in log
    summary = json.dumps({str(c): codes.count(c) for c in sorted(set(codes), key=str)})
    print(f"fuzz: {len(cases)} connections, {sent} frames; close codes {summary}")
