"""Carries out a Session's commands for one websocket call.

The reader loop feeds client frames to the session and runs the VAD inline
(it must be answered in order, and it backpressures a client that sends
faster than real time).  ASR, NLU and TTS jobs go to per-call lanes: bounded
queues, each drained in order by one task that hands the job to the call's
runner (the server's threads, or its cell).  The job table
(:mod:`voicebot.jobkinds`) gives each job its lane, what to feed when it fails
and the Session input its result goes back into; the new commands are carried
out in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicebot import protocol as p
from voicebot.commands import (
    BargedIn,
    CallEnded,
    CallWebhook,
    CancelReply,
    CloseConnection,
    Command,
    DetectSpeech,
    FinishTranscription,
    Mark,
    RecordingPause,
    ReplyAhead,
    ReplyStarted,
    SendAudio,
    SendEvent,
)
from voicebot.errors import EngineError
from voicebot.jobkinds import JOB_KINDS, EngineJob, Lane, apply_result, kind_of
from voicebot.session import Session

from .call_log import CallLog, CallLogSinks
from .cells import CellFailed
from .limits import AudioClock, CallLimits
from .runners import JobDropped, JobRunner, VadRunner
from .transports import NativeTransport, Transport
from .turn_events import turn_events
from .turn_timings import TurnObserver, TurnTimings
from .webhook import WebhookClient

__all__ = ["CallRuntime", "TurnObserver"]

log = logging.getLogger(__name__)

_LANE_DEPTH = 512  # jobs; ~16 s of 32 ms ASR feeds before the reader waits


class _Lane:
    """One bounded queue of jobs drained in order by one task."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[tuple[Any, float, Callable[[], Awaitable[None]]]] = (
            asyncio.Queue(_LANE_DEPTH)
        )
        self.max_wait_ms = 0.0  # longest queue wait since last read (turn log, metrics)
        self.dropped: set[Any] = set()
        self.task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._drain(), name=f"lane-{self.name}")

    async def put(self, tag: Any, job: Callable[[], Awaitable[None]]) -> None:
        if not self._closing:
            await self.queue.put((tag, time.perf_counter(), job))

    async def _drain(self) -> None:
        while not self._closing:
            tag, queued_at, job = await self.queue.get()
            if self._closing or tag in self.dropped:
                continue
            waited_ms = (time.perf_counter() - queued_at) * 1000
            self.max_wait_ms = max(self.max_wait_ms, waited_ms)
            self._busy = True
            try:
                await job()
            except Exception:  # one failed job must not stop the lane (puts would block)
                log.exception("%s lane: a job failed", self.name)
            finally:
                self._busy = False

    async def stop(self) -> None:
        """Drop what is queued; let a job already on a worker thread finish first,
        so no engine stream is released while a thread still uses it."""
        self._closing = True
        if self.task is None:
            return
        if not self._busy:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class CallRuntime:
    """Runs one call: websocket ⇄ Session ⇄ engine jobs."""

    def __init__(
        self, ws: ServerConnection, session: Session, runner: JobRunner, vad: VadRunner,
        *, observer: TurnObserver | None = None, transport: Transport | None = None,
        limits: CallLimits | None = None, call_log: CallLog | None = None,
        webhook_client: WebhookClient | None = None,
    ) -> None:
        self._clock = AudioClock(limits or CallLimits())
        self._transport: Transport = transport or NativeTransport(ws, session)
        self._webhooks: set[asyncio.Task[None]] = set()
        self._webhook_client = webhook_client
        self._observer = observer
        self._log = call_log or CallLog(CallLogSinks(), call_id=uuid.uuid4().hex,
                                        provider="native")
        self._runner = runner
        self._vad = vad
        self._ws = ws
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._lanes: dict[Lane, _Lane] = {
            lane: _Lane(lane.value) for lane in Lane if lane is not Lane.VAD  # VAD: inline
        }
        self._cancelled_replies: set[int] = set()
        self._closing = False
        self._input_end = 0.0  # wall time the caller's last input ended (speech or key)
        self._timings = TurnTimings(observer, self._log)  # what the jobs took, per turn
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            **{kind.job: self._queue_job for kind in JOB_KINDS if kind.lane is not Lane.VAD},
            DetectSpeech: self._detect,
            FinishTranscription: self._finish,
            SendEvent: self._send_event,
            SendAudio: self._send_audio,
            Mark: self._mark,
            CloseConnection: self._close,
            CancelReply: self._cancel_reply,
            CallWebhook: self._webhook,
            ReplyStarted: self._reply_started,
            BargedIn: self._barged_in,
            RecordingPause: self._recording_pause,
            CallEnded: self._call_ended,
            ReplyAhead: self._reply_ahead,
        }

    async def run(self, first: str | bytes | None = None) -> None:
        """Serve the call; ``first`` is a message already read (provider detection)."""
        for lane in self._lanes.values():
            lane.start()
        self._transport.start()
        self._clock.opened(self._loop.time(), received=first is not None)
        try:
            if first is not None:
                await self._receive(first)
            while not self._closing:
                wait_s, what = self._clock.deadline(self._loop.time())
                try:
                    message = await asyncio.wait_for(self._ws.recv(), max(wait_s, 0.0))
                except TimeoutError:
                    await self._timed_out(what)
                    break
                await self._receive(message)
                pause_s = self._clock.throttle_s(self._loop.time())
                if pause_s > 0:  # faster than real time: stop reading for a while
                    await asyncio.sleep(pause_s)
        except ConnectionClosed:
            pass
        finally:
            await self._release()

    async def _release(self) -> None:
        """Every step runs, whatever an earlier one raised: the cell must forget the dialog."""
        steps: list[Callable[[], Awaitable[object]]] = [
            lambda: self.execute(self._session.connection_lost()),
            self._transport.stop,
            *(lane.stop for lane in self._lanes.values()),
            self._runner.close,
            lambda: self._log.close(self._session.now_ms),
        ]
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("call %s: cleanup step failed", self._session.call_id)
        for task in list(self._webhooks):
            task.cancel()

    async def _timed_out(self, what: str) -> None:
        log.info("call %s: %s; closing", self._session.call_id, what)
        self._closing = True
        self._log.failed(what)
        await self._send_event(SendEvent(p.ErrorEvent(p.CloseCode.TIMEOUT, what)))
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close(p.CloseCode.TIMEOUT, what)

    async def _receive(self, message: str | bytes) -> None:
        commands = self._transport.receive(message)
        self._clock.received(self._loop.time(), audio_ms=self._session.now_ms)
        if self._transport.input_event:
            self._input_end = self._loop.time()  # start, dtmf: the turn's input
        await self.execute(commands)

    async def execute(self, commands: list[Command]) -> None:
        for command in commands:
            await self._handlers[type(command)](command)

    async def _run(self, job: EngineJob) -> Any:
        """Run an engine job; a dead cell ends the call (clean close with a reason)."""
        try:
            return await self._runner.run(job)
        except CellFailed:
            await self._cell_lost()
            raise

    async def _cell_lost(self) -> None:
        if self._closing:
            return
        self._closing = True
        log.error("call %s: its worker cell died; closing the call", self._session.call_id)
        self._log.failed("the worker cell serving the call died")
        event = p.ErrorEvent(p.CloseCode.INTERNAL_ERROR, "the worker serving this call failed")
        await self._send_event(SendEvent(event))
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close(p.CloseCode.INTERNAL_ERROR, "worker cell failed")

    # ------------------------------------------------------------------ sending

    async def _send_event(self, command: SendEvent) -> None:
        if isinstance(command.event, p.Ready) and self._session.start is not None:
            self._log.started(command.event, metadata=self._session.start.metadata)
        with contextlib.suppress(ConnectionClosed):
            await self._transport.send_event(command.event)

    async def _send_audio(self, command: SendAudio) -> None:
        if command.reply in self._cancelled_replies:
            return
        self._log.bot_audio(command.data)
        with contextlib.suppress(ConnectionClosed):
            await self._transport.send_audio(command.data)

    async def _mark(self, command: Mark) -> None:
        if command.reply in self._cancelled_replies:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._transport.send_mark(command.name)

    async def _close(self, command: CloseConnection) -> None:
        self._closing = True
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close(command.code, command.reason)

    # ------------------------------------------------------------------ engine jobs

    async def _detect(self, command: DetectSpeech) -> None:
        try:
            probabilities = await self._vad.detect(command.pcm)
        except Exception:
            log.exception("call %s: VAD failed; treating audio as silence", self._session.call_id)
            windows = len(command.pcm) // self._vad.window_samples
            probabilities = np.zeros(windows, dtype=np.float32)
        self._log.caller_audio(command.pcm, self._loop.time())
        await self.execute(apply_result(self._session, command, probabilities))

    async def _finish(self, command: FinishTranscription) -> None:
        """The utterance ended ``endpoint_delay_ms`` ago: the turn's latency runs from then."""
        self._input_end = self._loop.time() - command.endpoint_delay_ms / 1000.0
        self._timings.endpoint(command)
        await self._queue_job(command)

    async def _queue_job(self, job: EngineJob) -> None:
        """Queue ``job`` on its lane; its result (or its kind's fallback when it fails)
        goes to the Session.  A job lost with its cell, or dropped, is answered only
        where its kind must always be (the session counts speculations)."""
        kind = kind_of(job)

        async def run() -> None:
            started = time.perf_counter()
            try:
                result = await self._run(job)
            except (CellFailed, JobDropped):
                if not kind.always_answered:
                    return
                result = kind.failed(job)
            except Exception as exc:
                self._job_failed(kind.label, exc)
                if kind.failure_notice is not None:
                    await self._report(kind.failure_notice)
                result = kind.failed(job)
            self._timings.done(job, result, (time.perf_counter() - started) * 1000)
            await self.execute(apply_result(self._session, job, result))

        await self._lanes[kind.lane].put(kind.key(job), run)

    async def _cancel_reply(self, command: CancelReply) -> None:
        self._cancelled_replies.add(command.reply)
        self._lanes[Lane.TTS].dropped.add(command.reply)
        self._runner.cancel((Lane.TTS, command.reply))

    async def _webhook(self, command: CallWebhook) -> None:
        async def call() -> None:
            data: dict[str, Any] | None
            error: str | None = "webhooks are not configured"
            if self._webhook_client is not None:
                data, error = await self._webhook_client.post_json(
                    command.url, command.payload, timeout_s=command.timeout_ms / 1000)
            else:
                data = None
            await self.execute(self._session.webhook_result(command.request_id, data, error))

        task = asyncio.create_task(call(), name=f"webhook-{command.request_id}")
        self._webhooks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._webhooks.discard)

    def _job_failed(self, what: str, exc: Exception) -> None:
        """An engine job failed: the turn goes on without its result.  A deadline or a
        translated engine error is one line; anything else is a bug, with its traceback."""
        if isinstance(exc, EngineError):
            log.warning("call %s: %s failed: %s", self._session.call_id, what, exc)
        else:
            log.exception("call %s: %s failed", self._session.call_id, what)

    async def _report(self, message: str) -> None:
        event = p.ErrorEvent(p.CloseCode.INTERNAL_ERROR, message, fatal=False)
        await self._send_event(SendEvent(event))

    # ------------------------------------------------------------------ turn log

    async def _barged_in(self, command: BargedIn) -> None:
        if self._observer is not None:
            self._observer.barge_in()
        self._log.barged_in(command)

    async def _recording_pause(self, command: RecordingPause) -> None:
        self._log.pause(command)

    async def _call_ended(self, command: CallEnded) -> None:
        self._log.ended(command)

    async def _reply_ahead(self, command: ReplyAhead) -> None:
        self._log.reply_speculation("used" if command.used else "discarded")

    async def _reply_started(self, command: ReplyStarted) -> None:
        latency_ms = (self._loop.time() - self._input_end) * 1000
        parts = self._timings.take(max(lane.max_wait_ms for lane in self._lanes.values()))
        for lane in self._lanes.values():
            lane.max_wait_ms = 0.0
        if self._observer is not None:
            self._observer.turn(latency_ms=latency_ms, greeting=command.turn == 0,
                                parts_ms=parts)
        self._log.reply_started(command, at_ms=self._session.now_ms, latency_ms=latency_ms,
                                parts_ms=parts)
        for event in turn_events(self._session.start, command, latency_ms=latency_ms,
                                 parts_ms=parts):  # opt-in (start's "events")
            await self._send_event(SendEvent(event))

