"""The caller's side of a call, per provider: what a telephony platform sends and reads.

Used by ``voicebot simulate`` (server/simulate.py) and by the Locust load tests
(loadtests/caller.py).  Each dialect writes the messages a provider sends
(opening, 20 ms media, keys, mark echoes, stop) and reads the ones voicebot
sends back into simple events: ``("audio", bytes)``, ``("mark", name)``,
``("clear", None)``, ``("hangup", None)``; the native protocol also yields
``("event", ServerEvent)`` for its transcripts, intents and reply boundaries.
Shapes follow the golden traces in ``tests/conformance``.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding

__all__ = ["DIALECTS", "Dialect", "Event"]

Event = tuple[str, Any]
"""``("audio", bytes)``, ``("mark", name)``, ``("clear", None)``, ``("hangup", None)``
or, native protocol only, ``("event", ServerEvent)``."""


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Twilio:
    """Twilio Media Streams; Telnyx and Exotel below share its JSON stream shape."""

    path, encoding, rate, subprotocol = "/twilio", AudioEncoding.MULAW, 8000, None
    name, sid_key, seq_key, check_sid = "twilio", "streamSid", "sequenceNumber", True

    def __init__(self, call_id: str) -> None:
        self.call_id, self.sid = call_id, f"MZ{uuid.uuid4().hex}"
        self.account, self.seq, self.chunk = f"AC{uuid.uuid4().hex}", 0, 0

    def _message(self, event: str, **body: Any) -> str:
        self.seq += 1
        return _json({"event": event, self.seq_key: str(self.seq), **body,
                      self.sid_key: self.sid})

    def connected(self) -> dict[str, Any]:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self, params: dict[str, str]) -> dict[str, Any]:
        return {"accountSid": self.account, "streamSid": self.sid, "callSid": self.call_id,
                "tracks": ["inbound"], "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}

    def opening(self, scenario: str | None) -> list[str | bytes]:
        params = {"scenario": scenario} if scenario else {}
        return [_json(self.connected()), self._message("start", start=self.start(params))]

    def media(self, data: bytes) -> str | bytes:
        self.chunk += 1
        media = {"track": "inbound", "chunk": str(self.chunk),
                 "timestamp": str((self.chunk - 1) * 20),
                 "payload": base64.b64encode(data).decode()}
        return self._message("media", media=media)

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})]

    def mark_echo(self, name: str) -> str | bytes:
        return self._message("mark", mark={"name": name})

    def stop(self) -> list[str | bytes]:
        return [self._message("stop", stop={"accountSid": self.account,
                                             "callSid": self.call_id})]

    def parse(self, message: str | bytes) -> list[Event]:
        obj = json.loads(message)
        if self.check_sid and obj.get(self.sid_key) != self.sid:
            raise ValueError(f"{self.name}: message for another stream: {message!r:.120}")
        kind = obj["event"]
        if kind == "media":
            return [("audio", base64.b64decode(obj["media"]["payload"], validate=True))]
        if kind == "mark":
            return [("mark", obj["mark"]["name"])]
        return [("clear", None)] if kind == "clear" else []


class _Telnyx(_Twilio):
    path, encoding = "/telnyx", AudioEncoding.ALAW
    name, sid_key, seq_key, check_sid = "telnyx", "stream_id", "sequence_number", False

    def connected(self) -> dict[str, Any]:
        return {"event": "connected", "version": "1.0.0"}

    def start(self, params: dict[str, str]) -> dict[str, Any]:
        return {"user_id": self.account, "call_control_id": self.call_id,
                "call_session_id": self.sid, "from": "+13125550100", "to": "+13125550199",
                "custom_parameters": params,
                "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}}

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [self._message("dtmf", dtmf={"digit": digit})]

    def stop(self) -> list[str | bytes]:
        return [self._message("stop", stop={"user_id": self.account,
                                             "call_control_id": self.call_id})]


class _Exotel(_Twilio):
    path, encoding = "/exotel", AudioEncoding.PCM16
    name, sid_key, seq_key = "exotel", "stream_sid", "sequence_number"

    def connected(self) -> dict[str, Any]:
        return {"event": "connected"}

    def start(self, params: dict[str, str]) -> dict[str, Any]:
        return {"stream_sid": self.sid, "call_sid": self.call_id, "account_sid": self.account,
                "from": "+919800000001", "to": "+918000000002", "custom_parameters": params,
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000",
                                 "bit_rate": "16"}}

    def media(self, data: bytes) -> str | bytes:
        self.chunk += 1
        media = {"chunk": str(self.chunk), "timestamp": str(self.chunk * 20),
                 "payload": base64.b64encode(data).decode()}
        return self._message("media", media=media)

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [self._message("dtmf", dtmf={"digit": digit, "duration": "100"})]

    def stop(self) -> list[str | bytes]:
        return [self._message("stop", stop={"call_sid": self.call_id,
                                             "account_sid": self.account, "reason": "callended"})]


class _Jambonz:
    path, encoding, rate, subprotocol = "/jambonz", AudioEncoding.PCM16, 16000, "audio.jambonz.org"

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    def opening(self, scenario: str | None) -> list[str | bytes]:
        extra = {"scenario": scenario} if scenario else {}
        return [_json({"callSid": self.call_id, "direction": "inbound", "from": "+15085550100",
                       "to": "+15085550199", "sampleRate": 16000, "mixType": "mono", **extra})]

    def media(self, data: bytes) -> str | bytes:
        return data

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [_json({"event": "dtmf", "dtmf": digit, "duration": 250})]

    def mark_echo(self, name: str) -> str | bytes:
        raise ValueError("jambonz has no marks")

    def stop(self) -> list[str | bytes]:
        return []  # the listen verb ends: the socket closes

    def parse(self, message: str | bytes) -> list[Event]:
        if isinstance(message, bytes):
            return [("audio", message)]
        kind = json.loads(message).get("type")
        return {"killAudio": [("clear", None)], "disconnect": [("hangup", None)]}.get(kind, [])


class _Vonage:
    path, encoding, rate, subprotocol = "/vonage", AudioEncoding.PCM16, 16000, None

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    def opening(self, scenario: str | None) -> list[str | bytes]:
        extra = {"scenario": scenario} if scenario else {}
        return [_json({"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
                       "uuid": self.call_id, **extra})]

    def media(self, data: bytes) -> str | bytes:
        return data

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [_json({"event": "websocket:dtmf", "digit": digit, "duration": 260})]

    def mark_echo(self, name: str) -> str | bytes:
        return _json({"event": "websocket:notify", "payload": {"name": name}})

    def stop(self) -> list[str | bytes]:
        return []  # Vonage ends the stream by closing the socket

    def parse(self, message: str | bytes) -> list[Event]:
        if isinstance(message, bytes):
            return [("audio", message)]
        obj = json.loads(message)
        action = obj.get("action")
        if action == "notify":
            return [("mark", obj["payload"]["name"])]
        return [("clear", None)] if action == "clear" else []


class _Asterisk:
    path, encoding, rate, subprotocol = "/asterisk", AudioEncoding.MULAW, 8000, None

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    def opening(self, scenario: str | None) -> list[str | bytes]:
        variables = {"VOICEBOT_SCENARIO": scenario} if scenario else {}
        return [_json({"event": "MEDIA_START", "connection_id": uuid.uuid4().hex,
                       "channel": "WebSocket/voicebot/0x1", "channel_id": self.call_id,
                       "format": "ulaw", "optimal_frame_size": 160, "ptime": 20,
                       "channel_variables": variables})]

    def media(self, data: bytes) -> str | bytes:
        return data

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [_json({"event": "DTMF_END", "channel_id": self.call_id, "digit": digit})]

    def mark_echo(self, name: str) -> str | bytes:
        return _json({"event": "MEDIA_MARK_PROCESSED", "channel_id": self.call_id,
                      "correlation_id": name})

    def stop(self) -> list[str | bytes]:
        return []  # the channel hangs up: the socket closes

    def parse(self, message: str | bytes) -> list[Event]:
        if isinstance(message, bytes):
            return [("audio", message)]
        obj = json.loads(message)
        command = obj.get("command")
        events: dict[str, list[Event]] = {
            "MARK_MEDIA": [("mark", obj.get("correlation_id"))],
            "FLUSH_MEDIA": [("clear", None)], "HANGUP": [("hangup", None)],
        }
        return events.get(command, [])


class _Freeswitch(_Jambonz):
    """mod_audio_fork (drachtio): metadata JSON, L16 8 kHz up; ``playAudio`` JSON down."""

    path, rate, subprotocol = "/freeswitch", 8000, "audio.drachtio.org"

    def opening(self, scenario: str | None) -> list[str | bytes]:
        extra = {"scenario": scenario} if scenario else {}
        return [_json({"callid": self.call_id, "from": "2065550100", "to": "2065550199",
                       "sampleRate": 8000, **extra})]

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [_json({"event": "dtmf", "digit": digit})]

    def parse(self, message: str | bytes) -> list[Event]:
        if isinstance(message, str) and json.loads(message).get("type") == "playAudio":
            content = json.loads(message)["data"]["audioContent"]
            return [("audio", base64.b64decode(content, validate=True))]
        return super().parse(message)


class _Native:
    """voicebot's own protocol (docs/protocol.md): 16 kHz PCM16; no marks (the server's
    audio clock tracks playback); transcripts, intents and reply ends as events."""

    path, encoding, rate, subprotocol = "/", AudioEncoding.PCM16, 16000, None

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id

    def opening(self, scenario: str | None) -> list[str | bytes]:
        start = p.Start(call_id=self.call_id, encoding=self.encoding.value,
                        sample_rate_hz=self.rate, scenario=scenario)
        return [p.encode_client_message(start)]

    def media(self, data: bytes) -> str | bytes:
        return data

    def dtmf(self, digit: str) -> list[str | bytes]:
        return [p.encode_client_message(p.Dtmf(digit))]

    def mark_echo(self, name: str) -> str | bytes:
        raise ValueError("the native protocol has no marks")

    def stop(self) -> list[str | bytes]:
        return [p.encode_client_message(p.Stop())]

    def parse(self, message: str | bytes) -> list[Event]:
        if isinstance(message, bytes):
            return [("audio", message)]
        event = p.decode_server_event(message)
        if isinstance(event, p.Clear):
            return [("clear", None), ("event", event)]
        if isinstance(event, p.Hangup | p.Transfer):
            return [("hangup", None), ("event", event)]
        return [("event", event)]


class _NativeMulaw(_Native):
    """The native protocol with telephone audio: 8 kHz G.711 μ-law."""

    encoding, rate = AudioEncoding.MULAW, 8000


Dialect = _Twilio | _Vonage | _Asterisk | _Jambonz | _Native

DIALECTS: dict[str, type[Dialect]] = {
    "native": _Native, "native-mulaw": _NativeMulaw,
    "twilio": _Twilio, "telnyx": _Telnyx, "exotel": _Exotel, "vonage": _Vonage,
    "asterisk": _Asterisk, "jambonz": _Jambonz, "freeswitch": _Freeswitch,
}
"""Caller sides the simulator and the load tests speak, by name."""
