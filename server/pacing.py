"""Outbound pacing: send a call's bot audio to a provider at the pace it plays.

One :class:`Pacer` per provider call: a task drains a BOUNDED queue of frames
(a full queue makes the producer — the TTS lane — wait).  Audio frames carry
their duration; other frames (marks) ride in order between them.

* ``buffered`` providers (Twilio, Telnyx, Vonage, Exotel, FreeSWITCH, Asterisk)
  buffer what they are sent: audio goes out at most ``lead_ms`` ahead of real
  time, so a barge-in ``clear`` has little to flush and marks stay meaningful.
* ``realtime`` providers (jambonz) play what arrives: each 20 ms frame is sent
  on an absolute schedule (``start + sent audio``), so timing never drifts.

``clear()`` drops everything queued (and the frame waiting for its slot);
``pause()``/``resume()`` follow Asterisk's ``MEDIA_XOFF``/``MEDIA_XON``.  Clock
and sleep are injected so tests run without real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Literal

__all__ = ["DEFAULT_DEPTH", "DEFAULT_LEAD_MS", "Pacer", "PacingMode"]

PacingMode = Literal["buffered", "realtime"]
DEFAULT_LEAD_MS = 500.0
DEFAULT_DEPTH = 1024  # frames: ~20 s of 20 ms audio
_DRAIN_TIMEOUT_S = 5.0
_UNDERRUN_S = 0.1  # this late for a frame's slot: the queue ran dry, start a new schedule

Send = Callable[[str | bytes], Awaitable[None]]


class Pacer:
    """Sends queued frames through ``send`` on the provider's schedule."""

    def __init__(
        self, send: Send, *, mode: PacingMode, lead_ms: float = DEFAULT_LEAD_MS,
        depth: int = DEFAULT_DEPTH, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self._lead_s = (lead_ms if mode == "buffered" else 0.0) / 1000.0
        self._clock = clock
        self._sleep = sleep
        self._queue: asyncio.Queue[tuple[int, str | bytes, float]] = asyncio.Queue(depth)
        self._generation = 0
        self._origin: float | None = None  # when the audio sent since the last rebase starts
        self._sent_s = 0.0
        self._running = asyncio.Event()
        self._running.set()
        self._task: asyncio.Task[None] | None = None
        self.mode = mode
        self.frames_sent = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def audio(self, frame: str | bytes, duration_ms: float) -> None:
        """Queue one audio message of ``duration_ms`` (waits while the queue is full)."""
        await self._queue.put((self._generation, frame, duration_ms / 1000.0))

    async def control(self, frame: str | bytes) -> None:
        """Queue a message sent in order with the audio (a mark)."""
        await self._queue.put((self._generation, frame, 0.0))

    def clear(self) -> int:
        """Drop every queued frame; the next audio starts a new schedule.  Returns the count."""
        self._generation += 1
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            dropped += 1
        self._origin = None
        return dropped

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        if not self._running.is_set():
            self._origin = None  # the provider drained meanwhile: start a new schedule
            self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def drain(self, timeout_s: float = _DRAIN_TIMEOUT_S) -> None:
        """Wait until every queued frame went out (bounded: a paused provider may never ask)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)

    async def _drain(self) -> None:
        while True:
            generation, frame, duration_s = await self._queue.get()
            try:
                await self._one(generation, frame, duration_s)
            finally:
                self._queue.task_done()

    async def _one(self, generation: int, frame: str | bytes, duration_s: float) -> None:
        while True:
            await self._running.wait()
            if generation != self._generation:
                return  # cleared while it waited
            now = self._clock()
            if self._origin is None or now > self._origin + self._sent_s + _UNDERRUN_S:
                # First frame, or the provider ran dry: schedule from now.
                self._origin, self._sent_s = now, 0.0
            delay = self._origin + self._sent_s - self._lead_s - now
            if delay <= 0 or not duration_s:
                break
            await self._sleep(delay)
        await self._send(frame)
        self._sent_s += duration_s
        self.frames_sent += 1
