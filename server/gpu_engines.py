"""A call's engines on the GPU worker: the ASR and the voice of a :class:`~voicebot.jobs.CallJobs`.

The GPU runner (``server/gpu_runner.py``) runs a call's GPU jobs through the job table
on an ordinary :class:`~voicebot.jobs.CallJobs`, so its utterance bookkeeping (open
streams, a speculation kept or discarded) is the cells' own.  Only its engines differ:

* :class:`GpuTranscriber` opens streams that keep the utterance's audio (``feed`` is
  cheap) and send it to the worker as one decode request when ``transcribe_so_far`` or
  ``finish`` is called;
* :class:`GpuSynthesizer` sends each sentence to the worker at the voice's own rate
  (``CallJobs.synthesize`` resamples it to the call's, on the job's thread).

Those calls block: they run on the threads the server lends the GPU backend, each
waiting on its job's :class:`concurrent.futures.Future` while the worker gathers a
batch.  The worker wants the job's tag (to drop it by lane) and urgency (how long it may
be held): the runner sets them in :data:`CURRENT_JOB`, a context variable of the job's
thread, before it runs the job (:func:`job_context`).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from voicebot.engines.base import Pcm, Transcript
from voicebot.engines.engine_set import EngineSet
from voicebot.engines.gpu_batch import DecodeRequest, SynthesisRequest
from voicebot.errors import EngineError
from voicebot.jobkinds import EngineJob, JobTag, Urgency, job_tag, kind_of
from voicebot.types import IntentResult

from .cells import JobTimedOut
from .gpu_worker import GpuWorker
from .runners import JobDropped

__all__ = ["CURRENT_JOB", "GpuCall", "GpuSynthesizer", "GpuTranscriber", "gpu_engine_set",
           "job_context"]

CURRENT_JOB: contextvars.ContextVar[tuple[JobTag, Urgency]] = contextvars.ContextVar(
    "voicebot_gpu_job")
"""The tag and urgency of the job the current thread runs (set by :func:`job_context`)."""


def job_context(job: EngineJob) -> contextvars.Context:
    """A context in which :data:`CURRENT_JOB` is ``job``'s (run the job in it)."""
    context = contextvars.copy_context()
    context.run(CURRENT_JOB.set, (job_tag(job), kind_of(job).urgency(job)))
    return context


class GpuCall:
    """One dialog's side of the worker: submit a request as the current job, wait for it.

    ``wait_s`` bounds the wait (a thread is never held longer): past it the request is
    dropped and :class:`~server.cells.JobTimedOut` raised.  A request dropped before its
    batch ran (its lane was cancelled) raises :class:`~server.runners.JobDropped`.
    """

    def __init__(self, worker: GpuWorker, dialog: str, *, wait_s: float) -> None:
        self.worker = worker
        self.dialog = dialog
        self._wait_s = wait_s

    def run(self, request: DecodeRequest | SynthesisRequest) -> Any:
        try:
            tag, urgency = CURRENT_JOB.get()
        except LookupError:
            raise EngineError("a GPU request outside a job (no job_context)") from None
        future = self.worker.submit(self.dialog, tag, urgency, request)
        try:
            return future.result(timeout=self._wait_s)
        except concurrent.futures.CancelledError:
            raise JobDropped(f"GPU job {tag[0].value} {tag[1]}") from None
        except TimeoutError:
            future.cancel()
            self.worker.cancel(self.dialog, tag)
            raise JobTimedOut(f"no GPU result within {self._wait_s:.1f} s") from None


class _GpuStream:
    """One utterance: its audio kept here, decoded whole by the worker when asked."""

    def __init__(self, call: GpuCall, domain: str | None) -> None:
        self._call = call
        self._domain = domain
        self._chunks: list[Pcm] = []

    def feed(self, pcm: Pcm) -> None:
        if len(pcm):
            self._chunks.append(pcm.copy())

    def _pcm(self) -> Pcm:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks
                            else np.zeros(0, dtype=np.int16)]
        return self._chunks[0]

    def transcribe_so_far(self) -> Transcript:
        result: Transcript = self._call.run(DecodeRequest(pcm=self._pcm(), domain=self._domain))
        return result

    def finish(self) -> Transcript:
        transcript = self.transcribe_so_far()
        self._chunks = []
        return transcript

    def cancel(self) -> None:
        self._chunks = []


class GpuTranscriber:
    """A call's :class:`~voicebot.engines.base.Transcriber` on the worker (whose batch
    transcriber was prepared for every scenario's domains at load)."""

    def __init__(self, call: GpuCall) -> None:
        self._call = call
        transcriber = call.worker.transcriber
        self._rate_hz = 16_000 if transcriber is None else transcriber.sample_rate_hz

    @property
    def sample_rate_hz(self) -> int:
        return self._rate_hz

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        pass  # the worker's batch transcriber is prepared once, at load (gpu_setup)

    def open_stream(self, *, domain: str | None = None) -> _GpuStream:
        return _GpuStream(self._call, domain)


class GpuSynthesizer:
    """A call's :class:`~voicebot.engines.base.Synthesizer` on the worker."""

    def __init__(self, call: GpuCall) -> None:
        self._call = call
        synthesizer = call.worker.synthesizer
        self._rate_hz = 16_000 if synthesizer is None else synthesizer.sample_rate_hz
        self._voice = "none" if synthesizer is None else synthesizer.voice_id

    @property
    def sample_rate_hz(self) -> int:
        return self._rate_hz

    @property
    def voice_id(self) -> str:
        return self._voice

    def synthesize(self, text: str) -> Pcm:
        pcm: Pcm = self._call.run(SynthesisRequest(text=text, sample_rate_hz=self._rate_hz))
        return pcm


class _OnTheCpu:
    """The NLU of a GPU engine set: never called (the runner sends NLU jobs to the CPU)."""

    def train(self, *, domain: str, examples: Mapping[str, Sequence[str]],
              out_of_scope: Sequence[str] = ()) -> None:
        pass

    def classify(self, text: str, *, domain: str) -> IntentResult:
        raise EngineError("the NLU runs on the CPU side, not on the GPU worker")


def gpu_engine_set(worker: GpuWorker, dialog: str, *, wait_s: float) -> EngineSet:
    """The engines of one dialog's GPU jobs (for a :class:`~voicebot.jobs.CallJobs`)."""
    call = GpuCall(worker, dialog, wait_s=wait_s)
    return EngineSet(detector=None, transcriber=GpuTranscriber(call), classifier=_OnTheCpu(),
                     synthesizer=GpuSynthesizer(call))
