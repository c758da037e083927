"""Transports: provider messages → session inputs, session outputs → provider messages."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from websockets.asyncio.server import ServerConnection

from server.transports import (
    NativeTransport,
    ProviderTransport,
    provider_for_path,
    select_subprotocol,
)
from voicebot import protocol as p
from voicebot.commands import CloseConnection, SendEvent, Synthesize
from voicebot.dialog.scenario import Scenario
from voicebot.session import Session, SessionConfig
from voicebot.telephony import codec_for

__all__: list[str] = []

_TWILIO_START = json.dumps({
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
    "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
              "customParameters": {"scenario": "bank_card"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
})
_ASTERISK_START = json.dumps({"event": "MEDIA_START", "connection_id": "c1", "channel_id": "ch1",
                              "format": "ulaw", "optimal_frame_size": 160, "ptime": 20})


class FakeWs:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, frame: str | bytes) -> None:
        self.sent.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _provider(bank_card: Scenario, name: str) -> tuple[ProviderTransport, FakeWs]:
    codec = codec_for(name)
    session = Session(scenarios={"bank_card": bank_card}, config=SessionConfig(),
                      marks=codec.has_marks)
    ws = FakeWs()
    return ProviderTransport(cast(ServerConnection, ws), session, codec), ws


def _events(commands: list[Any]) -> list[p.ServerEvent]:
    return [c.event for c in commands if isinstance(c, SendEvent)]


def test_paths_and_subprotocols() -> None:
    assert provider_for_path("/") == (True, None)
    assert provider_for_path("/twilio?x=1") == (True, "twilio")
    assert provider_for_path("/asterisk/") == (True, "asterisk")
    assert provider_for_path("/native") == (True, "native")
    assert provider_for_path("/nope")[0] is False
    assert select_subprotocol(None, ["x", "audio.jambonz.org"]) == "audio.jambonz.org"
    assert select_subprotocol(None, ["audio.drachtio.org"]) == "audio.drachtio.org"
    assert select_subprotocol(None, []) is None


def test_twilio_start_media_dtmf_stop_reach_the_session(bank_card: Scenario) -> None:
    transport, _ = _provider(bank_card, "twilio")
    out = transport.receive(json.dumps({"event": "connected", "protocol": "Call"}))
    assert out == [] and not transport.input_event
    out = transport.receive(_TWILIO_START)
    ready = _events(out)[0]
    assert isinstance(ready, p.Ready) and (ready.call_id, ready.encoding) == ("CA1", "mulaw")
    assert transport.input_event
    assert any(isinstance(c, Synthesize) for c in out)  # the greeting
    media = {"event": "media", "streamSid": "MZ1",
             "media": {"track": "inbound", "chunk": "1", "timestamp": "0",
                       "payload": "//////////8="}}
    transport.receive(json.dumps(media))
    assert not transport.input_event
    key = {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}}
    out = transport.receive(json.dumps(key))  # a key while the greeting plays: barge-in
    assert transport.input_event and not any(isinstance(c, CloseConnection) for c in out)
    stop = transport.receive(json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {}}))
    assert CloseConnection(1000, "stop") in stop


def test_malformed_provider_messages_close_with_a_reason(bank_card: Scenario) -> None:
    cases = [
        ('{"event":"media","media":{"payload":"AA=="}}', 4409),  # media before start
        ('{"event":"start","start":{"callSid":"CA1"}}', 4400),  # missing fields
        (_TWILIO_START.replace("audio/x-mulaw", "audio/opus"), 4415),  # wrong codec
    ]
    for frame, code in cases:
        transport, _ = _provider(bank_card, "twilio")
        out = transport.receive(frame)
        close = [c for c in out if isinstance(c, CloseConnection)]
        assert close and close[0].code == code and close[0].reason, (frame, out)
    transport, _ = _provider(bank_card, "twilio")
    transport.receive(_TWILIO_START)
    bad = {"event": "media", "streamSid": "MZ1", "media": {"payload": "not base64!"}}
    close = [c for c in transport.receive(json.dumps(bad)) if isinstance(c, CloseConnection)]
    assert close[0].code == 4400 and "base64" in close[0].reason


async def test_twilio_audio_marks_and_clear(bank_card: Scenario) -> None:
    transport, ws = _provider(bank_card, "twilio")
    transport.receive(_TWILIO_START)
    transport.start()
    await transport.send_audio(b"\xff" * 160)
    await transport.send_mark("vb-1-0")
    await transport.send_event(p.TranscriptEvent(1, "hello"))  # not for Twilio: logged only
    await transport.pacer.drain()
    sent = [json.loads(f) for f in ws.sent]
    assert [m["event"] for m in sent] == ["media", "mark"]
    assert sent[0]["streamSid"] == "MZ1" and sent[1]["mark"]["name"] == "vb-1-0"
    await transport.send_event(p.Clear(1))
    assert json.loads(ws.sent[-1]) == {"event": "clear", "streamSid": "MZ1"}
    await transport.stop()


async def test_asterisk_flow_control_and_hangup(bank_card: Scenario) -> None:
    transport, ws = _provider(bank_card, "asterisk")
    transport.receive(_ASTERISK_START)
    transport.start()
    transport.receive('{"event":"MEDIA_XOFF"}')
    assert transport.pacer.paused
    transport.receive('{"event":"MEDIA_XON"}')
    assert not transport.pacer.paused
    await transport.send_audio(b"\xff" * 160)
    await transport.send_event(p.Hangup("completed"))
    await transport.close(1000, "hangup")
    assert ws.sent == [b"\xff" * 160, '{"command":"HANGUP"}']
    assert ws.closed == (1000, "hangup")
    await transport.stop()


async def test_native_is_unchanged(bank_card: Scenario) -> None:
    session = Session(scenarios={"bank_card": bank_card}, config=SessionConfig())
    ws = FakeWs()
    transport = NativeTransport(cast(ServerConnection, ws), session)
    start = p.Start(call_id="n1", encoding="pcm16", sample_rate_hz=16000)
    out = transport.receive(p.encode_client_message(start))
    assert transport.input_event and isinstance(_events(out)[0], p.Ready)
    await transport.send_event(p.Clear(1))
    await transport.send_audio(b"\x00\x00")
    await transport.send_mark("vb-1-0")
    assert ws.sent == ['{"type":"clear","reply":1}', b"\x00\x00"]


async def test_exotel_chunks_are_paced_by_the_audio_they_carry(bank_card: Scenario) -> None:
    transport, ws = _provider(bank_card, "exotel")
    start = {"event": "start", "stream_sid": "MZ9", "start": {
        "stream_sid": "MZ9", "call_sid": "CA9", "account_sid": "a",
        "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}}
    transport.receive(json.dumps(start))
    queued: list[float] = []

    async def audio(frame: str | bytes, duration_ms: float) -> None:
        queued.append(duration_ms)

    async def control(frame: str | bytes) -> None:
        queued.append(-1.0)

    transport.pacer.audio = audio  # type: ignore[method-assign]
    transport.pacer.control = control  # type: ignore[method-assign]
    for _ in range(12):  # 240 ms of 8 kHz pcm16 in 20 ms frames
        await transport.send_audio(bytes(320))
    await transport.send_mark("vb-1-0")  # flushes the 40 ms left, padded, then the mark
    assert queued == [pytest.approx(200.0), pytest.approx(40.0), -1.0]
    assert [json.loads(f)["event"] for f in ws.sent] == []  # all through the pacer
