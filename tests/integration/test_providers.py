"""Telephony providers end to end: the real server, `voicebot simulate`'s provider callers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import CallerTurn, CallOptions, prepare_turns
from server.simulate import DIALECTS, SimOptions, SimResult, simulate
from tests.integration.conftest import ServerProcess, http_status, running_server
from voicebot.engines.base import Pcm

__all__: list[str] = []

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("providers"), "--stack", "lite",
                        "--dialogs-per-core", "4") as process:
        yield process


def _turns(provider: str, *texts: str) -> list[tuple[CallerTurn, Pcm | None]]:
    turns = [CallerTurn("dtmf", t[1:]) if t.startswith("#") else CallerTurn("text", t)
             for t in texts]
    return prepare_turns(turns, CallOptions(sample_rate_hz=DIALECTS[provider].rate))


async def _idle(server: ServerProcess) -> None:
    """Until the server admits calls again (earlier calls may still be closing)."""
    async with asyncio.timeout(30):
        while await asyncio.to_thread(http_status, f"{server.http}/readyz") != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the last calls' slots free as their sockets close


async def _simulate(server: ServerProcess, provider: str, *texts: str,
                    auto_detect: bool = False) -> SimResult:
    turns = await asyncio.to_thread(_turns, provider, *texts)
    options = SimOptions(provider=provider, url=server.url, auto_detect=auto_detect,
                         call_id=f"{provider}-{'auto' if auto_detect else 'path'}-call")
    return await simulate(turns, options)


_PROVIDERS = ("twilio", "telnyx", "exotel", "vonage", "asterisk", "jambonz", "freeswitch")
_HANGUP_MESSAGE = ("asterisk", "jambonz", "freeswitch")  # providers told to hang up by a message


async def test_full_calls_with_keys_in_each_provider_format(server: ServerProcess) -> None:
    results = []
    for group in (_PROVIDERS[:4], _PROVIDERS[4:]):  # the test server admits 8 calls
        await _idle(server)
        results += await asyncio.gather(*(
            _simulate(server, name, "what is my balance", "#9031", "goodbye") for name in group))
    await _idle(server)
    results.append(await _simulate(server, "twilio", "I want to speak to an agent",
                                   auto_detect=True))
    for name, result in zip(_PROVIDERS, results, strict=False):
        reports = result.reports
        assert len(reports) == 4, (name, reports)
        assert all(r.bot_audio_s > 1.0 for r in reports), (name, reports)
        assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in reports), reports
        way = "hangup" if name in _HANGUP_MESSAGE else "closed"
        assert reports[-1].end == f"{way}:1000:hangup", (name, reports)
        assert np.abs(result.audio.astype(np.int32)).max() > 1000  # real speech came back
        if name not in ("jambonz", "freeswitch"):
            assert result.marks_echoed >= 4, name  # one mark per sentence, echoed as played
    log = await asyncio.to_thread(server.log_once, "twilio-auto-call (twilio)",
                                  *(f"call={name}-path-call turn=2 " for name in _PROVIDERS))
    for name in _PROVIDERS:  # the keys filled the card digits
        assert f"call={name}-path-call turn=2 " in log
        line = next(x for x in log.splitlines() if f"call={name}-path-call turn=2 " in x)
        assert "intent=dtmf" in line and "87.15" in line, line
    transfer = results[-1].reports
    assert transfer[-1].end == "closed:1000:transfer", transfer
    assert "twilio-auto-call (twilio)" in log  # routed by its first message


async def _barge_in(server: ServerProcess, provider: str, speech: Pcm) -> list[str]:
    """Talk over the greeting; the provider's events seen until its flush."""
    dialect = DIALECTS[provider](f"{provider}-barge")
    from voicebot.audio.codecs import encode

    data = encode(speech, dialect.encoding)
    size = dialect.rate // 50 * (2 if dialect.encoding == "pcm16" else 1)
    frames = [data[i : i + size] for i in range(0, len(data), size)]
    silence = encode(np.zeros(dialect.rate // 50, np.int16), dialect.encoding)
    kinds: list[str] = []
    subprotocols = [dialect.subprotocol] if dialect.subprotocol else None
    async with connect(f"{server.url}{dialect.path}",
                       subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        for message in dialect.opening(None):
            await ws.send(message)

        async def talk() -> None:
            for frame in [silence] * 50 + frames + [silence] * 300:
                await ws.send(dialect.media(frame))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(talk())
        try:
            async with asyncio.timeout(20):
                async for message in ws:
                    kinds += [kind for kind, _ in dialect.parse(message)]
                    if "clear" in kinds:
                        break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
    return kinds


async def test_barge_in_sends_each_provider_flush(server: ServerProcess) -> None:
    [(_, speech)] = await asyncio.to_thread(_turns, "twilio", "I want to speak to an agent")
    assert speech is not None
    wide = np.repeat(speech, 2)  # 16 kHz for Vonage's L16 (pitch does not matter to the VAD)
    seen: list[list[str]] = []
    for group in (_PROVIDERS[:4], _PROVIDERS[4:]):
        await _idle(server)
        seen += await asyncio.gather(*(
            _barge_in(server, name, wide if DIALECTS[name].rate == 16000 else speech)
            for name in group))
    for kinds in seen:
        assert "audio" in kinds and kinds[-1] == "clear", kinds
        assert kinds.index("audio") < kinds.index("clear")
    log = await asyncio.to_thread(server.log_once, "barge_in reply=1 heard_sentences=")
    assert "barge_in reply=1 heard_sentences=" in log


async def _expect_close(url: str, frames: list[str | bytes], code: int,
                        **kwargs: object) -> str:
    async with connect(url, **kwargs) as ws:  # type: ignore[arg-type]
        for frame in frames:
            await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code == code, (url, frames, ws.close_code, ws.close_reason)
        assert ws.close_reason
        return ws.close_reason


async def test_malformed_provider_messages_close_only_their_call(server: ServerProcess) -> None:
    await _idle(server)
    good = asyncio.create_task(_simulate(server, "twilio", "I lost my card", "no", "goodbye"))
    await asyncio.sleep(2)
    twilio = DIALECTS["twilio"]("CA-bad")
    connected, start = twilio.opening(None)
    media = twilio.media(b"\xff" * 160)
    assert isinstance(start, str) and isinstance(media, str)
    url = f"{server.url}/twilio"
    assert "before 'start'" in await _expect_close(url, [connected, media], 4409)
    no_call = json.loads(start)
    del no_call["start"]["callSid"]
    assert "callSid" in await _expect_close(url, [json.dumps(no_call)], 4400)
    bad_b64 = json.loads(media)
    bad_b64["media"]["payload"] = "%%% not base64"
    assert "base64" in await _expect_close(url, [start, json.dumps(bad_b64)], 4400)
    opus = start.replace("audio/x-mulaw", "audio/opus")
    await _expect_close(url, [opus], 4415)
    await _expect_close(f"{server.url}/asterisk", [b"\xff" * 160], 4409)
    await _expect_close(f"{server.url}/vonage",
                        ['{"event":"websocket:connected","content-type":"audio/l16;rate=44100"}'],
                        4415)
    await _expect_close(f"{server.url}/vonage", ["{not json"], 4400)
    # The root path: a first message no provider sends.
    assert "first message" in await _expect_close(server.url, ['{"event":"hello"}'], 4400)
    result = await good
    assert result.reports[-1].end == "closed:1000:hangup", result.reports
    assert len(result.reports) == 4


async def test_routing_paths_and_subprotocols(server: ServerProcess) -> None:
    await _idle(server)
    assert http_status(f"{server.http}/no-such-provider") == 404
    assert http_status(f"{server.http}/healthz") == 200
    async with connect(f"{server.url}/", subprotocols=["audio.jambonz.org"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "audio.jambonz.org"
        first = {"callSid": "jz-1", "sampleRate": 8000, "mixType": "mono", "from": "+1"}
        await ws.send(json.dumps(first))
        message = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(message, bytes)  # the greeting, as L16 binary frames
    async with connect(f"{server.url}/freeswitch",
                       subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "audio.drachtio.org"


def test_simulate_cli_prints_a_line_per_turn(server: ServerProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.integration.conftest import REPO

    done = subprocess.run(
        [sys.executable, "-m", "server", "simulate", "asterisk", "--url", server.url,
         "--text", "I want to speak to an agent"],
        cwd=REPO, capture_output=True, text=True, timeout=90, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["turn"] for x in lines] == [0, 1]
    assert lines[1]["bot_audio_s"] > 1 and lines[1]["latency_ms"] > 0
    assert lines[1]["end"].startswith("hangup:1000:")


async def _arrivals(
    server: ServerProcess, provider: str, seconds: float
) -> list[tuple[float, int]]:
    """(arrival time, audio bytes) of the greeting's messages over ``seconds``."""
    dialect = DIALECTS[provider](f"{provider}-pace")
    subprotocols = [dialect.subprotocol] if dialect.subprotocol else None
    loop = asyncio.get_running_loop()
    got: list[tuple[float, int]] = []
    async with connect(f"{server.url}{dialect.path}",
                       subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        for message in dialect.opening(None):
            await ws.send(message)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for message in ws:
                    for kind, value in dialect.parse(message):
                        if kind == "audio":
                            got.append((loop.time(), len(value)))
    return got


async def test_pacing_buffered_ahead_and_realtime_exact(server: ServerProcess) -> None:
    await _idle(server)
    twilio, jambonz = await asyncio.gather(_arrivals(server, "twilio", 3.0),
                                           _arrivals(server, "jambonz", 3.0))
    # Twilio: 160-byte μ-law 20 ms messages, sent ~0.5 s ahead of real time, no further.
    assert {size for _, size in twilio} == {160}
    start = twilio[0][0]
    ahead = [(i + 1) * 0.02 - (at - start) for i, (at, _) in enumerate(twilio)]
    assert max(ahead) > 0.4 and max(ahead) < 0.7, max(ahead)
    # jambonz: exact 20 ms L16 frames (640 bytes at 16 kHz) at real-time pace.
    assert {size for _, size in jambonz} == {640}
    start = jambonz[0][0]
    late = [(at - start) - i * 0.02 for i, (at, _) in enumerate(jambonz)]
    assert max(abs(x) for x in late) < 0.1, (min(late), max(late))
    assert len(jambonz) >= 120  # ~2.5 s of frames in the window, none piled up
