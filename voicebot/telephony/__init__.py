"""Telephony provider codecs: speak Twilio, Vonage, Telnyx, Exotel, FreeSWITCH,
jambonz and Asterisk websockets through one interface.

:func:`codec_for` builds a per-call :class:`ProviderCodec` (its provider module
is imported on first use); :func:`detect_provider` guesses the provider from a
connection's first message.  Everything here is pure: no I/O, no clock.
"""

from voicebot.telephony.base import (
    PROVIDERS,
    AudioIn,
    CallStarted,
    CallStopped,
    DtmfIn,
    FlowControl,
    Frame,
    Inbound,
    MarkPlayed,
    Pacing,
    ProviderCodec,
    codec_for,
)
from voicebot.telephony.detect import NATIVE, detect_provider

__all__ = [
    "NATIVE",
    "PROVIDERS",
    "AudioIn",
    "CallStarted",
    "CallStopped",
    "DtmfIn",
    "FlowControl",
    "Frame",
    "Inbound",
    "MarkPlayed",
    "Pacing",
    "ProviderCodec",
    "codec_for",
    "detect_provider",
]
