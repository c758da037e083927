"""The one seam where engines run: blocking job functions over an
:class:`~voicebot.engines.engine_set.EngineSet`.

The session returns commands; the runtime (``server/``) runs its engine jobs on
threads or cells it owns by calling :class:`CallJobs` methods, the
:class:`voicebot.jobkinds.JobEngine` of the job table.  Nothing here
creates a thread or reads configuration; every method runs to completion and
returns a finished result.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from voicebot.audio.resample import resample
from voicebot.engines.base import (
    Pcm,
    SpeculativeStream,
    Transcript,
    TranscriptionStream,
)
from voicebot.engines.engine_set import EngineSet
from voicebot.errors import EngineError
from voicebot.jobkinds import Understanding
from voicebot.nlu.entities import extract_entities

__all__ = ["CallJobs", "Understanding"]

log = logging.getLogger(__name__)


class CallJobs:
    """Per-call engine state (VAD state, open ASR streams) and the blocking jobs."""

    def __init__(self, engines: EngineSet) -> None:
        self._engines = engines
        self._vad = engines.detector.open_stream() if engines.detector is not None else None
        self._asr: dict[int, TranscriptionStream] = {}
        self._speculation: dict[int, Transcript] = {}
        self.speculations_kept = 0
        self.speculations_discarded = 0

    def detect(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        if self._vad is None:
            raise EngineError("this engine set has no speech detector")
        return self._vad.probabilities(pcm)

    def start_transcription(self, utterance: int, domain: str, pcm: Pcm) -> None:
        stream = self._engines.transcriber.open_stream(domain=domain)
        self._asr[utterance] = stream
        stream.feed(pcm)

    def feed_transcription(self, utterance: int, pcm: Pcm) -> None:
        stream = self._asr.get(utterance)
        if stream is not None:
            stream.feed(pcm)

    def speculate_transcription(self, utterance: int) -> Transcript | None:
        """Transcribe the utterance so far, if the stream can; kept for ``finish`` and
        returned (the session may end the turn on it); None when the stream cannot."""
        stream = self._asr.get(utterance)
        if not isinstance(stream, SpeculativeStream):
            return None
        transcript = stream.transcribe_so_far()
        self._speculation[utterance] = transcript
        return transcript

    def discard_speculation(self, utterance: int) -> None:
        if self._speculation.pop(utterance, None) is not None:
            self.speculations_discarded += 1

    def finish_transcription(self, utterance: int) -> Transcript:
        stream = self._asr.pop(utterance, None)
        speculative = self._speculation.pop(utterance, None)
        if speculative is not None:
            # The caller stayed silent since the speculation: its result stands.
            self.speculations_kept += 1
            if stream is not None:
                stream.cancel()
            return speculative
        return stream.finish() if stream is not None else Transcript("")

    def cancel_transcription(self, utterance: int) -> None:
        self._speculation.pop(utterance, None)
        stream = self._asr.pop(utterance, None)
        if stream is not None:
            stream.cancel()

    def detect_turn_end(self, pcm: Pcm) -> float:
        """The end-of-turn model's probability that the turn whose audio so far (16 kHz,
        its end last) is ``pcm`` is complete."""
        turn = self._engines.turn
        if turn is None:
            raise EngineError("this engine set has no end-of-turn model")
        return turn.predict(pcm).complete_prob

    def understand(self, text: str, domain: str) -> Understanding:
        intent = self._engines.classifier.classify(text, domain=domain)
        return Understanding(intent, extract_entities(text))

    def synthesize(self, text: str, sample_rate_hz: int, index: int = 0) -> Pcm:
        """One sentence at the call's rate (``index``: its place in the reply, for schedulers)."""
        synth = self._engines.synthesizer
        pcm = synth.synthesize(text)
        if synth.sample_rate_hz == sample_rate_hz or not len(pcm):
            return pcm
        return resample(pcm, in_rate_hz=synth.sample_rate_hz, out_rate_hz=sample_rate_hz)

    def close(self) -> None:
        """Release every open ASR stream (their decoders go back to the engine)."""
        for utterance in list(self._asr):
            self.cancel_transcription(utterance)
