"""What a call's engine jobs tell about its turns: the parts of each turn's latency, the
end-of-turn model's time, and what became of the speculative transcriptions.

The runtime (:mod:`server.runtime`) hands :class:`TurnTimings` every job it carries out
once the job is done, with its result and how long it took; the turn's parts go to the
turn log line and the turn-latency metrics when its reply starts
(:meth:`TurnTimings.take`).  Per job, the end-of-turn model's time and the
speculations (started, used by the final transcription, or discarded when the caller
went on) go to the call's log, which counts them in the server's metrics; so do the
speculative replies started (:class:`~voicebot.commands.UnderstandAhead`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from voicebot.commands import (
    CancelTranscription,
    DetectTurnEnd,
    DiscardSpeculation,
    FinishTranscription,
    SpeculateTranscription,
    Synthesize,
    Understand,
    UnderstandAhead,
)
from voicebot.types import Pcm, Transcript

from .call_log import CallLog

__all__ = ["TurnObserver", "TurnTimings"]

log = logging.getLogger(__name__)


class TurnObserver(Protocol):
    """Receives what the runtime measures (metrics, admission control)."""

    def turn(self, *, latency_ms: float, greeting: bool, parts_ms: Mapping[str, float]) -> None:
        ...

    def barge_in(self) -> None: ...

    def engine_rtf(self, engine: str, rtf: float) -> None: ...


class TurnTimings:
    """One call's measurements of its jobs (ms of the runtime's clock)."""

    def __init__(self, observer: TurnObserver | None, call_log: CallLog) -> None:
        self._observer = observer
        self._log = call_log
        self._parts: dict[str, float] = {}
        self._speculating: set[int] = set()  # utterances whose speculation is kept
        self._done: dict[type, Any] = {
            FinishTranscription: self._asr, Understand: self._nlu, Synthesize: self._tts,
            DetectTurnEnd: self._turn_model, SpeculateTranscription: self._speculated,
            DiscardSpeculation: self._dropped, CancelTranscription: self._dropped,
            UnderstandAhead: self._ahead,
        }

    def endpoint(self, job: FinishTranscription) -> None:
        """The utterance ended: the caller stopped speaking ``endpoint_delay_ms`` ago."""
        self._parts["endpoint_wait"] = float(job.endpoint_delay_ms)

    def done(self, job: Any, result: Any, ms: float) -> None:
        """``job`` is done (``result``: its result, or the fallback fed for a failure)."""
        measure = self._done.get(type(job))
        if measure is not None:
            measure(job, result, ms)

    def take(self, queue_wait_ms: float) -> dict[str, float]:
        """The parts of the turn whose reply starts now (and the lanes' longest wait);
        the next turn starts from nothing."""
        parts, self._parts = self._parts, {}
        parts["queue_wait"] = queue_wait_ms
        return parts

    # ------------------------------------------------------------------ per kind

    def _asr(self, job: FinishTranscription, transcript: Transcript, ms: float) -> None:
        self._parts["asr"] = ms
        if job.utterance in self._speculating:
            self._speculating.discard(job.utterance)
            self._log.speculation("used")
        if transcript.audio_ms and ms > 1.0:  # ~0 when a speculation was kept
            self._rtf("asr", ms / transcript.audio_ms)

    def _nlu(self, _job: Understand, _result: object, ms: float) -> None:
        self._parts["nlu"] = ms

    def _tts(self, job: Synthesize, pcm: Pcm, ms: float) -> None:
        if job.index == 0:
            self._parts["tts_first_audio"] = ms
        if len(pcm):
            self._rtf("tts", ms / (len(pcm) * 1000 / job.sample_rate_hz))

    def _turn_model(self, _job: DetectTurnEnd, _prob: float | None, ms: float) -> None:
        self._parts["turn_model"] = ms
        self._log.turn_model(ms)

    def _speculated(self, job: SpeculateTranscription, result: Transcript | None,
                    _ms: float) -> None:
        if result is None:
            return  # the ASR cannot speculate (or the job failed): nothing is kept
        self._speculating.add(job.utterance)
        self._log.speculation("started")

    def _dropped(self, job: DiscardSpeculation | CancelTranscription, _r: None,
                 _ms: float) -> None:
        if job.utterance in self._speculating:
            self._speculating.discard(job.utterance)
            self._log.speculation("discarded")

    def _ahead(self, _job: UnderstandAhead, _result: object, _ms: float) -> None:
        self._log.reply_speculation("started")  # used or discarded: ReplyAhead

    def _rtf(self, engine: str, rtf: float) -> None:
        if self._observer is not None:
            self._observer.engine_rtf(engine, rtf)
