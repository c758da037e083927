"""Transports: one call's wire format between its websocket and its :class:`Session`.

:class:`NativeTransport` speaks voicebot's own protocol (``docs/protocol.md``):
JSON events, binary audio sent at once (native clients buffer).
:class:`ProviderTransport` wraps a telephony :class:`ProviderCodec`
(``docs/telephony.md``): provider messages become session inputs, and session
outputs become provider messages — audio through a :class:`~server.pacing.Pacer`,
``clear`` as the provider's flush, transfer/hang-up as its hang-up then close
1000.  Events a provider has no message for (transcript, intent, ready, …) are
only logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicebot import protocol as p
from voicebot.commands import Command
from voicebot.errors import ProtocolError
from voicebot.session import Session
from voicebot.telephony import (
    PROVIDERS,
    AudioIn,
    CallStarted,
    CallStopped,
    DtmfIn,
    FlowControl,
    Frame,
    Inbound,
    MarkPlayed,
    ProviderCodec,
)

from .pacing import Pacer

__all__ = [
    "PATHS",
    "SUBPROTOCOLS",
    "NativeTransport",
    "ProviderTransport",
    "Transport",
    "provider_for_path",
    "select_subprotocol",
]

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("audio.jambonz.org", "audio.drachtio.org")
PATHS: dict[str, str | None] = {"/": None, "/native": "native"} | {
    f"/{name}": name for name in PROVIDERS
}
"""Websocket path → provider (``None``: detect from the first message)."""


def provider_for_path(path: str) -> tuple[bool, str | None]:
    """``(known, provider)`` for a request path (query string ignored)."""
    path = path.split("?", 1)[0]
    if path != "/":
        path = path.rstrip("/")
    return (path in PATHS, PATHS.get(path))


def select_subprotocol(connection: Any, offered: Any) -> Any:
    """Accept the jambonz / drachtio subprotocols when offered; otherwise none."""
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


class Transport(Protocol):
    """What :class:`server.runtime.CallRuntime` needs from a wire format."""

    name: str
    input_event: bool
    """Whether the last :meth:`receive` carried a caller input (start, keys): turn timing."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def receive(self, frame: Frame) -> list[Command]: ...

    async def send_event(self, event: p.ServerEvent) -> None: ...

    async def send_audio(self, data: bytes) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


async def _send(ws: ServerConnection, frame: Frame) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(frame)


class NativeTransport:
    """voicebot's own protocol, exactly as before transports existed."""

    name = "native"

    def __init__(self, ws: ServerConnection, session: Session) -> None:
        self._ws = ws
        self._session = session
        self.input_event = False

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def receive(self, frame: Frame) -> list[Command]:
        if isinstance(frame, str):
            self.input_event = True  # start, dtmf: the turn's input
            return self._session.receive_text(frame)
        self.input_event = False
        return self._session.receive_bytes(frame)

    async def send_event(self, event: p.ServerEvent) -> None:
        await _send(self._ws, p.encode_server_event(event))

    async def send_audio(self, data: bytes) -> None:
        await _send(self._ws, data)

    async def send_mark(self, name: str) -> None:
        pass  # native clients learn what played from their own playback

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, p.close_reason(reason))


class ProviderTransport:
    """A telephony provider's websocket, through its codec and an outbound pacer."""

    def __init__(self, ws: ServerConnection, session: Session, codec: ProviderCodec) -> None:
        self.name = codec.name
        self.input_event = False
        self._ws = ws
        self._session = session
        self._codec = codec
        self._bytes_per_ms = 0.0
        self._owed_ms = 0.0  # audio given to the codec and not yet out in a message (Exotel)
        self._hangup: str | None = None
        self.pacer = Pacer(self._send_now, mode=codec.pacing)
        self._inbound: dict[type, Callable[[Any], list[Command]]] = {
            CallStarted: self._on_started,
            AudioIn: lambda e: self._session.receive_audio(e.data),
            DtmfIn: lambda e: self._session.receive_message(p.Dtmf(e.digits)),
            MarkPlayed: lambda e: self._session.mark_played(e.name),
            CallStopped: lambda e: self._session.receive_message(p.Stop(e.reason)),
            FlowControl: self._on_flow,
        }
        self._outbound: dict[type, Callable[[Any], list[Frame]]] = {
            p.Clear: self._on_clear,
            p.Transfer: lambda e: self._end(f"transfer:{e.target}"),
            p.Hangup: lambda e: self._end(e.reason),
        }

    def start(self) -> None:
        self.pacer.start()

    async def stop(self) -> None:
        await self.pacer.stop()

    # ----------------------------------------------------------------- inbound

    def receive(self, frame: Frame) -> list[Command]:
        try:
            events: list[Inbound] = self._codec.decode(frame)
        except ProtocolError as exc:
            self.input_event = False
            return self._session.protocol_error(exc)
        except Exception as exc:  # a codec bug: the message was still not one we serve
            log.exception("call %s (%s): codec failed on a message", self._session.call_id,
                          self.name)
            self.input_event = False
            return self._session.protocol_error(
                ProtocolError(f"{self.name}: malformed message ({type(exc).__name__})"))
        self.input_event = any(isinstance(e, CallStarted | DtmfIn) for e in events)
        out: list[Command] = []
        for event in events:
            out += self._inbound[type(event)](event)
        return out

    def _on_started(self, event: CallStarted) -> list[Command]:
        self._bytes_per_ms = event.sample_rate_hz / 1000 * (2 if event.encoding == "pcm16" else 1)
        start = p.Start(call_id=event.call_id, encoding=event.encoding,
                        sample_rate_hz=event.sample_rate_hz, scenario=event.scenario,
                        metadata=dict(event.metadata))
        return self._session.receive_message(start)

    def _on_flow(self, event: FlowControl) -> list[Command]:
        if event.paused:
            self.pacer.pause()
        else:
            self.pacer.resume()
        return []

    # ----------------------------------------------------------------- outbound

    async def _send_now(self, frame: Frame) -> None:
        await _send(self._ws, frame)

    async def send_event(self, event: p.ServerEvent) -> None:
        handler = self._outbound.get(type(event))
        if handler is None:
            log.debug("call %s (%s): %s", self._session.call_id, self.name,
                      p.encode_server_event(event))
            return
        for frame in handler(event):
            await self._send_now(frame)

    def _on_clear(self, event: p.Clear) -> list[Frame]:
        dropped = self.pacer.clear()
        self._owed_ms = 0.0
        log.debug("call %s (%s): clear dropped %d queued frames", self._session.call_id,
                  self.name, dropped)
        return self._codec.encode_clear()

    def _end(self, reason: str) -> list[Frame]:
        self._hangup = reason  # sent on close, after the queued audio
        return []

    async def send_audio(self, data: bytes) -> None:
        if self._bytes_per_ms:
            self._owed_ms += len(data) / self._bytes_per_ms
        await self._audio(self._codec.encode_audio(data))

    async def _audio(self, frames: list[Frame]) -> None:
        """Pace ``frames``: together they carry the audio owed (codecs may coalesce)."""
        if not frames:
            return
        each_ms, self._owed_ms = self._owed_ms / len(frames), 0.0
        for frame in frames:
            await self.pacer.audio(frame, each_ms)

    async def send_mark(self, name: str) -> None:
        if not self._codec.has_marks:
            return
        *media, mark = self._codec.encode_mark(name)  # a codec may flush audio first
        await self._audio(media)
        await self.pacer.control(mark)

    async def close(self, code: int, reason: str) -> None:
        if self._hangup is not None:
            await self.pacer.drain()  # the last words, then the hang-up
            with contextlib.suppress(ProtocolError):
                for frame in self._codec.encode_hangup(self._hangup):
                    await self._send_now(frame)
        await self._ws.close(code, p.close_reason(reason))
