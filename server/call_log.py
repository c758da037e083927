"""What a call leaves behind: its turn log lines, its record, its recording, its webhook.

The runtime hands :class:`CallLog` what the Session tells it (``ReplyStarted``,
``BargedIn``, ``RecordingPause``, ``CallEnded``: every text already masked by the
Session, :mod:`voicebot.session_privacy`), the caller's audio (the VAD windows, 16
kHz) and the bot's audio as sent.  Nothing here blocks the event loop: records go
to the :class:`~server.records.writer.RecordWriter` queue (each turn written as it
completes), recording chunks to the recordings thread, the end-of-call webhook to
its notifier's background task.  With ``counters``, each reply and the call's end
are counted in the server's contact-center metrics (:class:`~server.metrics.CallCounters`),
and how its turns end (the rule, the end-of-turn model's jobs, the speculations) in the
turn-taking ones (:class:`~server.metrics.TurnCounters`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, decode
from voicebot.audio.resample import StreamResampler
from voicebot.commands import BargedIn, CallEnded, CallOutcome, RecordingPause, ReplyStarted
from voicebot.recording import CallRecorder
from voicebot.types import Pcm

from .call_webhook import CallEndNotifier
from .metrics import CallCounters
from .recording_file import StereoWavFile, create_recording
from .records.model import CallRecord, Outcome, TurnEntry
from .records.model import RecordingPause as PauseEntry
from .records.writer import RecordWriter

__all__ = ["CallLog", "CallLogSinks"]

log = logging.getLogger(__name__)
turn_log = logging.getLogger("voicebot.turns")

_RATE_HZ = 16_000
_FLUSH_S = 1.0  # a recording's header is brought up to date this often


@dataclass(frozen=True, slots=True, kw_only=True)
class CallLogSinks:
    """Where calls' records, recordings and end-of-call webhooks go (None: nowhere)."""

    records: RecordWriter | None = None
    recordings_dir: Path | None = None
    recordings_io: Executor | None = None  # one thread: keeps each file's writes in order
    notifier: CallEndNotifier | None = None
    recorded: Callable[[str], bool] = lambda scenario: True
    """Whether a call of this scenario is recorded (with ``recordings_dir`` set): the
    scenario's ``settings.recording``, else the server's ``recordings``."""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class CallLog:
    """One call's log lines, record, recording and end-of-call webhook."""

    def __init__(self, sinks: CallLogSinks, *, call_id: str, provider: str,
                 counters: CallCounters | None = None) -> None:
        self._sinks = sinks
        self._counters = counters
        self.call_id = call_id
        self._provider = provider
        self._record: CallRecord | None = None
        self._provider_call_id: str | None = None
        self._turns: dict[int, TurnEntry] = {}
        self._outcome: tuple[Outcome, str] | None = None
        self._recorder: CallRecorder | None = None
        self._file: StereoWavFile | None = None
        self._bot_decode: tuple[AudioEncoding, StreamResampler] | None = None
        self._io: asyncio.Future[Any] | None = None
        self._path: Path | None = None  # the recording, once its file exists
        self._last_flush_s = 0.0

    # ------------------------------------------------------------------ the call

    @property
    def _shown_id(self) -> str:
        """The id log lines name a call by: the provider's (or native client's) call id,
        the one operators know; ``record=`` adds the record's."""
        return self._provider_call_id or self.call_id

    def started(self, ready: p.Ready, *, metadata: Mapping[str, str]) -> None:
        """The call is set up (its ``ready`` event is sent)."""
        if self._record is not None:
            return
        self._provider_call_id = ready.call_id
        now = self._sinks.now()
        folder = self._sinks.recordings_dir
        if (folder is not None and self._sinks.recordings_io is not None
                and self._sinks.recorded(ready.scenario)):
            self._recorder = CallRecorder(sample_rate_hz=_RATE_HZ)
            self._bot_decode = (AudioEncoding(ready.encoding),
                                StreamResampler(in_rate_hz=ready.sample_rate_hz,
                                                out_rate_hz=_RATE_HZ))
            self._io_run(self._open_file, folder, now)
        self._record = CallRecord(
            call_id=self.call_id, provider=self._provider, provider_call_id=ready.call_id,
            stream_id=_first(metadata, "streamSid", "stream_sid", "stream_id"),
            caller=_first(metadata, "from", "caller"), callee=_first(metadata, "to", "callee"),
            scenario=ready.scenario, started_at=now, ended_at=None,
            outcome=Outcome.IN_PROGRESS, end_reason=None,
            recording=None, recording_pauses=(), turns=())
        if self._sinks.records is not None:
            self._sinks.records.submit_start(self._record)

    def ended(self, command: CallEnded) -> None:
        """How the call ended, as the Session saw it (the first word stands)."""
        if self._outcome is None:
            self._outcome = (Outcome(command.outcome.value), command.reason)

    def failed(self, reason: str) -> None:
        """The server ended the call (a dead cell, a timeout)."""
        self.ended(CallEnded(CallOutcome.FAILED, reason))

    async def close(self, at_ms: float) -> None:
        """The call is over: finish the recording, write the record's end, post it."""
        record = self._record
        if record is None:
            return
        recorder = self._recorder
        pauses: tuple[PauseEntry, ...] = ()
        if recorder is not None:
            if self._bot_decode is not None:  # what the resampler still holds
                recorder.bot(self._bot_decode[1].flush())
            tail = recorder.finish()  # closes a pause still open
            pauses = tuple(PauseEntry(start_ms=x.start_ms, end_ms=x.end_ms, reason=x.reason)
                           for x in recorder.pauses)
            await self._io_wait(self._io_run(self._finish_file, tail))
        outcome, reason = self._outcome or (Outcome.CALLER_HUNG_UP, "connection closed")
        if self._counters is not None:
            self._counters.ended(record.scenario, outcome.value)
        ended = replace(record, ended_at=self._sinks.now(), outcome=outcome, end_reason=reason,
                        recording=str(self._path) if self._path is not None else None,
                        recording_pauses=pauses,
                        turns=tuple(self._turns[k] for k in sorted(self._turns)))
        self._record = None
        if self._sinks.records is not None:
            self._sinks.records.submit_end(
                self.call_id, ended_at=ended.ended_at or self._sinks.now(), outcome=outcome,
                end_reason=reason, recording=ended.recording, recording_pauses=pauses)
        if self._sinks.notifier is not None:
            self._sinks.notifier.notify(ended.to_json())
        log.info("call %s: %s (%s), %d turns, %.1f s of audio; record %s", self._shown_id,
                 outcome.value, reason, len(self._turns), at_ms / 1000, self.call_id)

    # ------------------------------------------------------------------ turns

    def reply_started(self, command: ReplyStarted, *, at_ms: float, latency_ms: float,
                      parts_ms: Mapping[str, float]) -> None:
        timings = " ".join(f"{k}_ms={v:.0f}" for k, v in parts_ms.items())
        if command.end_rule is not None:  # a spoken turn: what ended it, how long it took
            score = "-" if command.turn_score is None else f"{command.turn_score:.2f}"
            wait = parts_ms.get("endpoint_wait")
            timings += (f" end_rule={command.end_rule} turn_score={score} waited_ms="
                        + ("-" if wait is None else f"{wait:.0f}"))
        turn_log.info(
            "call=%s turn=%d state=%s intent=%s confidence=%.2f latency_ms=%.0f %s "
            "transcript=%r reply=%r record=%s", self._shown_id, command.turn, command.state,
            command.intent, command.confidence, latency_ms, timings, command.transcript,
            command.text, self.call_id)
        dtmf = command.source == "dtmf"
        entry = TurnEntry(
            turn=command.reply - 1, at_ms=at_ms, source=command.source,
            heard="" if dtmf else command.transcript, intent=command.intent,
            confidence=command.confidence, slots=dict(command.slots), reply=command.text,
            state=command.state, dtmf=command.transcript if dtmf else None,
            latency_ms=latency_ms,
            parts_ms=dict(parts_ms))
        self._put(command.reply, entry)
        if self._counters is not None and self._record is not None:
            self._counters.reply(self._record.scenario, command)

    def turn_model(self, ms: float) -> None:
        """An end-of-turn model job took ``ms`` (sent to verdict)."""
        if self._counters is not None:
            self._counters.turns.model_ran(ms)

    def speculation(self, result: str) -> None:
        """A speculative transcription was ``started``, ``used`` or ``discarded``."""
        if self._counters is not None:
            self._counters.turns.speculation(result)

    def reply_speculation(self, result: str) -> None:
        """A speculative reply was ``started``, ``used`` or ``discarded``."""
        if self._counters is not None:
            self._counters.turns.reply_speculation(result)

    def barged_in(self, command: BargedIn) -> None:
        turn_log.info("call=%s barge_in reply=%d heard_sentences=%d heard_ms=%d unheard=%r "
                      "record=%s", self._shown_id, command.reply, command.heard_sentences,
                      command.heard_ms, command.unheard, self.call_id)
        entry = self._turns.get(command.reply - 1)
        if entry is not None:
            self._put(command.reply, replace(entry, barged_in=True, heard_ms=command.heard_ms))
        if self._recorder is not None:
            self._recorder.bot_cleared()
        if self._bot_decode is not None:
            self._bot_decode[1].reset()  # the cleared reply's samples it still held

    def _put(self, reply: int, entry: TurnEntry) -> None:
        self._turns[reply - 1] = entry
        if self._sinks.records is not None and self._record is not None:
            self._sinks.records.submit_turn(self.call_id, entry)

    # ------------------------------------------------------------------ recording

    def pause(self, command: RecordingPause) -> None:
        if self._recorder is not None:
            if command.paused:
                self._recorder.pause(command.reason)
            else:
                self._recorder.resume()

    def caller_audio(self, pcm: Pcm, now_s: float) -> None:
        """Caller audio, 16 kHz, contiguous from the call's start (the VAD windows)."""
        if self._recorder is None:
            return
        self._recorder.caller(pcm)
        if now_s - self._last_flush_s >= _FLUSH_S:
            self._last_flush_s = now_s
            self._io_run(self._append, self._recorder.take(), True)

    def bot_audio(self, data: bytes) -> None:
        """Bot audio as sent to the caller (the call's encoding and rate)."""
        if self._recorder is None or self._bot_decode is None:
            return
        encoding, resampler = self._bot_decode
        self._recorder.bot(resampler.process(decode(data, encoding)))

    # ------------------------------------------------------------------ file I/O (thread)

    def _io_run(self, job: Callable[..., None], *args: Any) -> asyncio.Future[Any] | None:
        executor = self._sinks.recordings_io
        if executor is None:
            return None
        self._io = asyncio.get_running_loop().run_in_executor(executor, job, *args)
        self._io.add_done_callback(self._io_done)
        return self._io

    def _io_done(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("call %s: recording write failed: %s", self.call_id, future.exception())

    @staticmethod
    async def _io_wait(future: asyncio.Future[Any] | None) -> None:
        if future is not None:
            try:
                await future
            except Exception:  # reported by _io_done
                pass

    def _open_file(self, folder: Path, started: datetime) -> None:
        self._file = create_recording(folder, self.call_id, started, sample_rate_hz=_RATE_HZ)
        self._path = self._file.path

    def _append(self, frames: bytes, flush: bool) -> None:
        if self._file is not None:
            self._file.append(frames)
            if flush:
                self._file.flush()

    def _finish_file(self, frames: bytes) -> None:
        if self._file is not None:
            self._file.append(frames)
            self._file.close()
            self._file = None


def _first(metadata: Mapping[str, str], *keys: str) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if value:
            return value
    return None
