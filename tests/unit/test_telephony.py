"""Telephony codecs: golden-trace replay per provider, detection, and the registry.

Each ``tests/conformance/<provider>/*.jsonl`` file is a realistic call built from
the provider's documented examples.  Line 1 (``"step": "codec"``) names the
provider and its expected properties; every later line is either an inbound
websocket message with the normalized events it must decode to, or a call to
an ``encode_*`` method with the exact outbound messages it must produce.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from voicebot.errors import ConfigError
from voicebot.telephony import PROVIDERS, ProviderCodec, codec_for, detect_provider
from voicebot.telephony.asterisk import AsteriskCodec
from voicebot.telephony.base import Frame, Inbound
from voicebot.telephony.exotel import ExotelCodec
from voicebot.telephony.freeswitch import FreeswitchCodec
from voicebot.telephony.jambonz import JambonzCodec
from voicebot.telephony.telnyx import TelnyxCodec
from voicebot.telephony.twilio import TwilioCodec
from voicebot.telephony.vonage import VonageCodec

__all__: list[str] = []

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
TRACES = sorted(CONFORMANCE.glob("*/*.jsonl"))


def load_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def event_json(event: Inbound) -> dict[str, Any]:
    """An event in the trace notation: ``{"AudioIn": {"data_b64": ...}}`` etc."""
    body: dict[str, Any] = {f.name: getattr(event, f.name) for f in fields(event)}
    if "data" in body:
        body = {"data_b64": base64.b64encode(body.pop("data")).decode()}
    if "metadata" in body:
        body["metadata"] = dict(body["metadata"])
    return {type(event).__name__: body}


def frame_json(frame: Frame) -> dict[str, Any]:
    """An outbound message in the trace notation: binary, JSON or plain text."""
    if isinstance(frame, bytes):
        return {"binary_b64": base64.b64encode(frame).decode()}
    try:
        obj = json.loads(frame)
    except ValueError:
        return {"text": frame}
    return {"json": obj} if isinstance(obj, dict) else {"text": frame}


def inbound_frame(step: dict[str, Any]) -> Frame:
    if "json" in step:
        return json.dumps(step["json"], separators=(",", ":"))
    if "text" in step:
        return str(step["text"])
    return base64.b64decode(step["binary_b64"])


def _run(codec: ProviderCodec, step: dict[str, Any]) -> list[dict[str, Any]]:
    if step["step"] == "in":
        return [event_json(event) for event in codec.decode(inbound_frame(step))]
    calls: dict[str, Callable[[], list[Frame]]] = {
        "audio": lambda: codec.encode_audio(base64.b64decode(step["data_b64"])),
        "mark": lambda: codec.encode_mark(step["name"]),
        "clear": codec.encode_clear,
        "hangup": lambda: codec.encode_hangup(step["reason"]),
    }
    return [frame_json(frame) for frame in calls[step["step"]]()]


@pytest.mark.parametrize("path", TRACES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_trace(path: Path) -> None:
    header, *steps = load_trace(path)
    assert header["step"] == "codec"
    codec = codec_for(header["provider"])
    assert codec.name == header["provider"] == path.parent.name
    assert codec.subprotocol == header["subprotocol"]
    assert codec.pacing == header["pacing"]
    assert codec.has_marks is header["has_marks"]
    first = next(step for step in steps if step["step"] == "in")
    assert detect_provider(inbound_frame(first), subprotocol=codec.subprotocol) == header["detect"]
    for number, step in enumerate(steps, start=2):
        assert _run(codec, step) == step["expect"], f"{path.name} line {number}"


def test_every_provider_has_a_trace() -> None:
    assert {path.parent.name for path in TRACES} == set(PROVIDERS)


def test_counters_in_traces_are_strings() -> None:
    """Providers send sequence numbers, chunks and timestamps as strings; so do the traces."""
    counters = ("sequenceNumber", "sequence_number", "chunk", "timestamp")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert key not in counters or isinstance(value, str), key
                walk(value)

    for path in TRACES:
        for step in load_trace(path):
            walk(step.get("json"))


# --------------------------------------------------------------------- registry


def test_codec_for_builds_a_new_codec_per_call() -> None:
    for name in PROVIDERS:
        first, second = codec_for(name), codec_for(name)
        assert first is not second
        assert first.name == name


def test_codec_for_rejects_unknown_providers() -> None:
    with pytest.raises(ConfigError, match="unknown telephony provider 'sinch'"):
        codec_for("sinch")


def test_provider_modules_are_imported_lazily() -> None:
    code = (
        "import sys, voicebot.telephony as t\n"
        "assert not [m for m in sys.modules if m.startswith('voicebot.telephony.')"
        " and m.rsplit('.', 1)[1] in t.PROVIDERS]\n"
        "t.codec_for('twilio')\n"
        "assert 'voicebot.telephony.twilio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_codecs_satisfy_the_protocol() -> None:
    codecs: list[ProviderCodec] = [
        TwilioCodec(), VonageCodec(), TelnyxCodec(), ExotelCodec(), FreeswitchCodec(),
        JambonzCodec(), AsteriskCodec(),
    ]
    assert sorted(c.name for c in codecs) == sorted(PROVIDERS)


# --------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("frame", "subprotocol", "expected"),
    [
        ('{"type":"start","version":1,"call_id":"c-42","encoding":"mulaw",'
         '"sample_rate_hz":8000}', None, "native"),
        ('{"event":"connected","protocol":"Call","version":"1.0.0"}', None, "twilio"),
        ('{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{}}', None, "twilio"),
        ('{"event":"connected","version":"1.0.0"}', None, "telnyx"),
        ('{"event":"start","sequence_number":"1","stream_id":"32DE","start":{}}', None,
         "telnyx"),
        ('{"event":"connected"}', None, "exotel"),
        ('{"event":"start","sequence_number":"1","stream_sid":"MZ1","start":{}}', None,
         "exotel"),
        ('{"event":"websocket:connected","content-type":"audio/l16;rate=16000"}', None,
         "vonage"),
        ("MEDIA_START connection_id:x channel:WebSocket/c format:ulaw", None, "asterisk"),
        ('{"event":"MEDIA_START","format":"ulaw"}', None, "asterisk"),
        ('{"callSid":"c","sampleRate":8000,"mixType":"mono"}', None, "jambonz"),
        ('{"callid":"c","sampleRate":8000}', "audio.drachtio.org", "freeswitch"),
        ('{"anything":1}', "audio.jambonz.org", "jambonz"),
        ('{"callid":"c","sampleRate":8000}', None, None),
        ('{"event":"start"}', None, None),
        ('{"event":"start","streamSid":"MZ1","stream_id":"x"}', None, None),
        ('{"event":"connected","protocol":"Other"}', None, None),
        ('{"event":"media"}', None, None),
        ("not json", None, None),
        ("[1, 2]", None, None),
        (b"\x00\x01", None, None),
    ],
)
def test_detect_provider(frame: Frame, subprotocol: str | None, expected: str | None) -> None:
    assert detect_provider(frame, subprotocol=subprotocol) == expected
