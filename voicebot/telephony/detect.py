"""Guess the telephony provider from the first message of a websocket connection.

Servers that accept every provider on one path (``ws://host:port/``) look at
the first frame, and at the negotiated websocket subprotocol, before choosing a
codec.  Each rule below keys on fields the provider's documentation shows in
its first message; anything else is ``None`` ("unsure"), never a guess:

==================================================  ===========
first message                                        provider
==================================================  ===========
subprotocol ``audio.jambonz.org``                    jambonz
subprotocol ``audio.drachtio.org``                   freeswitch
``{"event":"connected","protocol":"Call",...}``      twilio
``{"event":"start","streamSid"|"sequenceNumber"}``   twilio
``{"event":"connected","version":...}`` (no proto)   telnyx
``{"event":"start","stream_id":...}``                telnyx
``{"event":"connected"}`` (nothing else)             exotel
``{"event":"start","stream_sid":...}``               exotel
``{"event":"websocket:connected",...}``              vonage
``MEDIA_START ...`` or ``{"event":"MEDIA_START"}``   asterisk
``{"callSid","sampleRate","mixType",...}``           jambonz
``{"type":"start","call_id":...}``                   native
==================================================  ===========

Binary frames, non-JSON text (or JSON nested too deep: see
:func:`voicebot.jsonsafe.load_json`) and anything ambiguous give ``None``;
:func:`detect_provider` never raises.  The module is pure: it parses the frame
it is given and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voicebot.jsonsafe import load_json
from voicebot.telephony.base import Frame

__all__ = ["NATIVE", "detect_provider"]

NATIVE = "native"
"""The name :func:`detect_provider` gives voicebot's own protocol (``docs/protocol.md``)."""

_BY_SUBPROTOCOL = {"audio.jambonz.org": "jambonz", "audio.drachtio.org": "freeswitch"}


def _connected(obj: Mapping[str, Any]) -> str | None:
    if obj.get("protocol") == "Call":
        return "twilio"
    if "version" in obj and "protocol" not in obj:
        return "telnyx"
    if set(obj) == {"event"}:
        return "exotel"
    return None


def _start(obj: Mapping[str, Any]) -> str | None:
    markers = (("streamSid", "twilio"), ("sequenceNumber", "twilio"),
               ("stream_id", "telnyx"), ("stream_sid", "exotel"))
    found = {provider for key, provider in markers if key in obj}
    return found.pop() if len(found) == 1 else None


_BY_EVENT: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "connected": _connected,
    "start": _start,
    "websocket:connected": lambda _: "vonage",
    "MEDIA_START": lambda _: "asterisk",
}


def _untagged(obj: Mapping[str, Any]) -> str | None:
    if obj.get("type") == "start" and "call_id" in obj:
        return NATIVE
    if {"callSid", "sampleRate", "mixType"} <= set(obj):
        return "jambonz"
    return None


def detect_provider(frame: Frame, *, subprotocol: str | None = None) -> str | None:
    """The provider (a :data:`~voicebot.telephony.base.PROVIDERS` key or ``"native"``)
    whose first message ``frame`` is, or None when unsure."""
    if subprotocol in _BY_SUBPROTOCOL:
        return _BY_SUBPROTOCOL[subprotocol]
    if isinstance(frame, bytes):
        return None
    text = frame.strip()
    if text.startswith("MEDIA_START ") or text == "MEDIA_START":
        return "asterisk"
    try:
        obj = load_json(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    event = obj.get("event")
    if isinstance(event, str):
        rule = _BY_EVENT.get(event)
        return rule(obj) if rule is not None else None
    return _untagged(obj)
