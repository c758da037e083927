"""Testing without models: :class:`SessionDriver` runs a Session's commands against
engines in-process; the deterministic fakes (:mod:`voicebot.engines.fakes`) are
re-exported here for tests and demos.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.commands import (
    BargedIn,
    CallEnded,
    CallWebhook,
    CancelReply,
    CloseConnection,
    Command,
    DetectTurnEnd,
    Mark,
    RecordingPause,
    ReplyAhead,
    ReplyStarted,
    SendAudio,
    SendEvent,
    SpeculateTranscription,
)
from voicebot.engines.base import Pcm
from voicebot.engines.engine_set import EngineSet
from voicebot.engines.fakes import (
    FakeIntentClassifier,
    FakeSpeechDetector,
    FakeSynthesizer,
    FakeTranscriber,
    FakeTurnDetector,
    tone,
)
from voicebot.jobkinds import apply_result, is_engine_job, run_job
from voicebot.jobs import CallJobs
from voicebot.session import Session

T = TypeVar("T")

__all__ = [
    "FakeIntentClassifier",
    "FakeSpeechDetector",
    "FakeSynthesizer",
    "FakeTranscriber",
    "FakeTurnDetector",
    "SessionDriver",
    "fake_engines",
    "tone",
]


class SessionDriver:
    """Runs a :class:`~voicebot.session.Session`'s commands synchronously, no I/O.

    Engine jobs run at once on ``jobs`` and their results go back through the job
    table (:mod:`voicebot.jobkinds`), as in the server; sent events, audio and the
    close are recorded.  Webhook requests are recorded for the test to answer.
    """

    def __init__(self, session: Session, jobs: CallJobs) -> None:
        self.session = session
        self.jobs = jobs
        self.events: list[p.ServerEvent] = []
        self.audio: list[bytes] = []
        self.cancelled_replies: list[int] = []
        self.webhooks: list[CallWebhook] = []
        self.replies: list[ReplyStarted] = []
        self.speculations: list[int] = []
        self.turn_requests: list[DetectTurnEnd] = []
        self.barge_ins: list[int] = []
        self.barged: list[BargedIn] = []
        self.marks: list[Mark] = []
        self.pauses: list[RecordingPause] = []
        self.ended: list[CallEnded] = []
        self.replies_ahead: list[ReplyAhead] = []  # speculative replies used or discarded
        self.close: CloseConnection | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            SendEvent: self._event,
            Mark: self.marks.append,
            SendAudio: self._audio,
            CloseConnection: self._closed,
            CancelReply: self._cancel_reply,
            CallWebhook: self.webhooks.append,
            ReplyStarted: self.replies.append,
            BargedIn: self._barged_in,
            RecordingPause: self.pauses.append,
            CallEnded: self.ended.append,
            ReplyAhead: self.replies_ahead.append,
        }

    def text(self, message: str | p.ClientMessage) -> None:
        if not isinstance(message, str):
            message = p.encode_client_message(message)
        self.run(self.session.receive_text(message))

    def audio_in(self, pcm: Pcm, *, encoding: str = "pcm16", frame_ms: int = 20,
                 sample_rate_hz: int = 16_000) -> None:
        """Stream ``pcm`` as the caller, in ``frame_ms`` frames."""
        step = sample_rate_hz * frame_ms // 1000
        enc = AudioEncoding(encoding)
        for i in range(0, len(pcm), step):
            self.run(self.session.receive_bytes(encode(pcm[i : i + step], enc)))

    def silence(self, duration_ms: int, **kwargs: Any) -> None:
        rate = kwargs.get("sample_rate_hz", 16_000)
        self.audio_in(np.zeros(duration_ms * rate // 1000, dtype=np.int16), **kwargs)

    def of_type(self, cls: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, cls)]

    def run(self, commands: list[Command]) -> None:
        queue = deque(commands)
        while queue:
            queue.extend(self._one(queue.popleft()))

    def _one(self, c: Command) -> list[Command]:
        if is_engine_job(c):
            if isinstance(c, SpeculateTranscription):
                self.speculations.append(c.utterance)
            if isinstance(c, DetectTurnEnd):
                self.turn_requests.append(c)
            return apply_result(self.session, c, run_job(self.jobs, c))
        handler = self._handlers.get(type(c))
        if handler is not None:
            handler(c)
        return []

    def _event(self, c: SendEvent) -> None:
        # Round-trip through the native codec: what a native client would read.
        self.events.append(p.decode_server_event(p.encode_server_event(c.event)))

    def _audio(self, c: SendAudio) -> None:
        if c.reply not in self.cancelled_replies:
            self.audio.append(c.data)

    def _closed(self, c: CloseConnection) -> None:
        self.close = c

    def _cancel_reply(self, c: CancelReply) -> None:
        self.cancelled_replies.append(c.reply)

    def _barged_in(self, c: BargedIn) -> None:
        self.barge_ins.append(c.reply)
        self.barged.append(c)


def fake_engines(*transcripts: str) -> tuple[EngineSet, FakeTranscriber]:
    """Fake engines; the transcriber answers ``transcripts`` in order; the end-of-turn
    model judges every turn complete (``engines.turn.script(...)`` says otherwise)."""
    asr = FakeTranscriber(transcripts)
    engines = EngineSet(FakeSpeechDetector(), asr, FakeIntentClassifier(), FakeSynthesizer(),
                        turn=FakeTurnDetector())
    return engines, asr
