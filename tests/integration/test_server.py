"""End to end: the real server, real engines, a real websocket client, espeak-ng callers."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from tests.integration.conftest import http_status
from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode

__all__: list[str] = []

pytestmark = pytest.mark.slow


def _turns(*texts: str) -> list[CallerTurn]:
    return [CallerTurn("dtmf", t[1:]) if t.startswith("#") else CallerTurn("text", t)
            for t in texts]


async def _call(url: str, *texts: str, encoding: str = "pcm16",
                rate: int = 16000) -> list[TurnReport]:
    options = CallOptions(url=url, encoding=encoding, sample_rate_hz=rate)
    prepared = await asyncio.to_thread(prepare_turns, _turns(*texts), options)
    reports, audio = await place_call(prepared, options)
    assert len(audio) > rate  # the bot spoke, in audio we can play
    assert np.abs(audio.astype(np.int32)).max() > 1000
    return reports


def test_health(server_url: str) -> None:
    base = server_url.replace("ws://", "http://")
    assert http_status(f"{base}/healthz") == 200
    assert http_status(f"{base}/readyz") == 200


async def test_every_intent_completes(server_url: str) -> None:
    lost, balance, operator, goodbye = await asyncio.gather(
        _call(server_url, "I lost my card", "yes", "goodbye"),
        _call(server_url, "what is my balance", "four two one seven", "goodbye"),
        _call(server_url, "I want to speak to an agent"),
        _call(server_url, "goodbye", encoding="alaw", rate=8000),
    )
    assert lost[0].bot_text is not None and lost[0].bot_text.startswith("Hello")
    assert lost[0].latency_ms is not None
    assert (lost[1].intent, lost[3].intent) == ("lost_card", "goodbye")
    assert "blocked" in (lost[2].bot_text or "")
    assert lost[-1].end == "hangup:completed"

    assert balance[1].intent == "check_balance"
    assert "1,250.40" in (balance[2].bot_text or ""), balance
    assert balance[-1].end == "hangup:completed"

    assert operator[1].intent == "operator"
    assert operator[-1].end == "transfer:card_services_agents"

    assert goodbye[1].intent == "goodbye"
    assert goodbye[-1].end == "hangup:completed"
    for report in (*lost, *balance, *operator, *goodbye):
        assert report.latency_ms is not None and report.latency_ms > 0, report


async def test_dtmf_fills_digits(server_url: str) -> None:
    # Telephony audio: 8 kHz mu-law; the card digits come from the keypad.
    reports = await _call(server_url, "check my balance", "#9031#", "goodbye",
                          encoding="mulaw", rate=8000)
    assert reports[2].intent == "dtmf"
    assert "87.15" in (reports[2].bot_text or "")


async def test_barge_in_sends_clear(server_url: str) -> None:
    options = CallOptions(url=server_url)
    [(_, speech)] = await asyncio.to_thread(
        prepare_turns, _turns("I want to speak to an agent"), options
    )
    assert speech is not None
    events: list[p.ServerEvent] = []
    async with connect(server_url) as ws:
        await ws.send(p.encode_client_message(
            p.Start(call_id="barge", encoding="pcm16", sample_rate_hz=16000)))
        frames = [encode(speech[i : i + 320], AudioEncoding.PCM16)
                  for i in range(0, len(speech), 320)]
        silence = bytes(640)
        got_audio = False
        async def sender() -> None:
            # 1 s of line silence while the greeting starts, then talk over it.
            for frame in [silence] * 50 + frames + [silence] * 400:
                await ws.send(frame)
                await asyncio.sleep(0.02)
        task = asyncio.create_task(sender())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    got_audio = True
                    continue
                events.append(p.decode_server_event(message))
                if isinstance(events[-1], p.Transfer | p.Hangup):
                    break
        except ConnectionClosed:
            pass
        finally:
            task.cancel()
    assert got_audio
    kinds = [e.type for e in events]
    assert "clear" in kinds, kinds
    end = next(e for e in events if isinstance(e, p.BotSpeechEnd))
    assert end.interrupted and end.reply == 1
    assert kinds.index("clear") < kinds.index("transcript")
    assert isinstance(events[-1], p.Transfer)


async def _expect_close(url: str, frames: list[str | bytes], code: int) -> None:
    async with connect(url, max_size=2**22) as ws:
        for frame in frames:
            await ws.send(frame)
        texts = []
        with pytest.raises(ConnectionClosed):
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, str):
                    texts.append(json.loads(message))
        assert ws.close_code == code, (ws.close_code, texts)
        if code != 1009:
            assert texts[-1]["type"] == "error" and texts[-1]["code"] == code


async def test_bad_input_never_harms_another_call(server_url: str) -> None:
    good = asyncio.create_task(_call(server_url, "I lost my card", "no", "goodbye"))
    await asyncio.sleep(2)
    start = p.encode_client_message(p.Start(call_id="b", encoding="pcm16", sample_rate_hz=16000))
    await _expect_close(server_url, ["{garbage"], 4400)
    await _expect_close(server_url, [bytes(640)], 4409)
    await _expect_close(server_url, [
        '{"type":"start","call_id":"x","encoding":"opus","sample_rate_hz":16000}'], 4415)
    await _expect_close(server_url, [start, bytes(200_000)], 1009)
    # Abrupt disconnect in the middle of speech.
    options = CallOptions(url=server_url)
    [(_, speech)] = await asyncio.to_thread(prepare_turns, _turns("what is my balance"), options)
    assert speech is not None
    ws = await connect(server_url)
    await ws.send(start)
    for i in range(0, len(speech) // 2, 320):
        await ws.send(encode(speech[i : i + 320], AudioEncoding.PCM16))
    assert ws.transport is not None
    ws.transport.abort()
    reports = await good
    assert reports[1].intent == "lost_card"
    assert "not blocked" in (reports[2].bot_text or "")
    assert reports[-1].end == "hangup:completed"
    assert http_status(server_url.replace("ws://", "http://") + "/healthz") == 200
