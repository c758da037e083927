"""What a GPU worker runs: engines that take a batch of requests from many calls at once.

On a GPU one kernel launch serves many calls, so the GPU worker (``server/gpu_worker.py``)
gathers the requests of many dialogs for a few milliseconds and hands each batch to
one of these engines:

* :class:`BatchTranscriber`: whole utterances in, one transcript each, in order
  (:class:`voicebot.engines.whisper_batch.WhisperBatchTranscriber`: the Whisper
  encoder and greedy decoder run once over the whole batch).
* :class:`BatchSynthesizer`: sentences in, their audio out, in order.  Piper's VITS
  graph takes one utterance per run, so :class:`SequentialSynthesizer` runs a batch
  back to back on the one GPU session (no gain from batching, only from the GPU).

A batch engine runs on the worker's one thread; it creates no thread of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm, Synthesizer, Transcript

__all__ = ["BatchSynthesizer", "BatchTranscriber", "DecodeRequest", "SequentialSynthesizer",
           "SynthesisRequest"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DecodeRequest:
    """One utterance so far (16 kHz int16) of one call, and its ASR domain."""

    pcm: Pcm
    domain: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SynthesisRequest:
    """One sentence, wanted at the call's rate."""

    text: str
    sample_rate_hz: int


class BatchTranscriber(Protocol):
    @property
    def sample_rate_hz(self) -> int: ...

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        """Bias the ASR for domain ``name`` (as :class:`voicebot.engines.base.Transcriber`)."""
        ...

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcript]:
        """One transcript per request, in order; raises for the whole batch."""
        ...


class BatchSynthesizer(Protocol):
    @property
    def sample_rate_hz(self) -> int:
        """The voice's own rate (a request at this rate is not resampled)."""
        ...

    @property
    def voice_id(self) -> str: ...

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Pcm]:
        """Each request's audio at its own rate, in order; raises for the whole batch."""
        ...


class SequentialSynthesizer:
    """A :class:`BatchSynthesizer` over any one-utterance synthesizer (Piper on CUDA,
    behind the prompt cache): the batch's sentences run back to back."""

    def __init__(self, synthesizer: Synthesizer) -> None:
        self._synth = synthesizer

    @property
    def sample_rate_hz(self) -> int:
        return self._synth.sample_rate_hz

    @property
    def voice_id(self) -> str:
        return self._synth.voice_id

    @property
    def synthesizer(self) -> Synthesizer:
        return self._synth

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Pcm]:
        out: list[Pcm] = []
        rate = self._synth.sample_rate_hz
        for request in requests:
            pcm = self._synth.synthesize(request.text) if request.text.strip() \
                else np.zeros(0, dtype=np.int16)
            if len(pcm) and rate != request.sample_rate_hz:
                pcm = resample(pcm, in_rate_hz=rate, out_rate_hz=request.sample_rate_hz)
            out.append(pcm)
        return out
