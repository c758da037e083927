"""A call's jobs side by side: its GPU engines' jobs to the GPU worker, the rest to its CPU runner.

:class:`GpuRunner` is the call's :class:`~server.runners.JobRunner` when a GPU worker
serves some engine kinds (``asr`` and ``tts``: Whisper and the voice on the GPU).  The
job table's ``engine`` column says which kind does each job, so a speculative reply's
first sentence (``SynthesizeAhead``) goes to the GPU and its NLU to the cell; every
other job (NLU, the end-of-turn model) goes to the call's CPU runner (its cell, or the
server's threads) unchanged.  The VAD is not a runner job: it stays in the front process.

There is no GPU dispatcher here: a GPU job runs through the job table (``run_job``) on
an ordinary :class:`voicebot.jobs.CallJobs` whose engines send their work to the worker
(``server/gpu_engines.py``), so the utterance bookkeeping -- streams opened, fed,
speculated on, a speculation kept by ``finish`` or discarded -- is the one the cells
run.  The job runs on one of the threads the server lends the GPU backend (``start`` /
``feed`` only keep audio; a decode or a sentence waits there for its batch), in a
context that tells the worker its tag and urgency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from concurrent.futures import Executor
from typing import Any

from voicebot.errors import EngineError
from voicebot.jobkinds import EngineJob, JobTag, job_tag, kind_of, run_job
from voicebot.jobs import CallJobs

from .cells import JobTimedOut
from .gpu_engines import gpu_engine_set, job_context
from .gpu_worker import GpuWorker
from .runners import JobRunner

__all__ = ["GPU_ENGINES", "GpuRunner"]

log = logging.getLogger(__name__)

GPU_ENGINES: frozenset[str] = frozenset({"asr", "tts"})
"""The engine kinds a GPU worker can serve (VAD and NLU stay on CPU: faster there)."""

_WAIT_GRACE_S = 1.0
"""A job's thread waits this much longer than the job's deadline for its GPU result
(the runner has given up by then and dropped the request)."""


class GpuRunner:
    """One dialog's jobs: those of ``engines`` on ``worker`` (waiting on ``executor``'s
    threads), the rest on ``cpu``."""

    def __init__(self, worker: GpuWorker, dialog: str, cpu: JobRunner, *, executor: Executor,
                 engines: Collection[str] = GPU_ENGINES, job_timeout_s: float = 10.0) -> None:
        unknown = set(engines) - GPU_ENGINES
        if unknown:
            raise EngineError(f"the GPU worker cannot serve {sorted(unknown)}")
        self._worker = worker
        self._dialog = dialog
        self._cpu = cpu
        self._executor = executor
        self._engines = frozenset(engines)
        self._timeout_s = job_timeout_s
        self._jobs = CallJobs(gpu_engine_set(worker, dialog,
                                             wait_s=job_timeout_s + _WAIT_GRACE_S))

    @property
    def cpu(self) -> JobRunner:
        return self._cpu

    @property
    def speculations_kept(self) -> int:
        return self._jobs.speculations_kept

    @property
    def speculations_discarded(self) -> int:
        return self._jobs.speculations_discarded

    async def run(self, job: EngineJob) -> Any:
        kind = kind_of(job)
        if kind.engine not in self._engines:
            return await self._cpu.run(job)
        tag = job_tag(job)
        running = self._executor.submit(job_context(job).run, run_job, self._jobs, job)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(running), self._timeout_s)
        except TimeoutError:
            if running.done() and not running.cancelled():
                raise  # the job's own error
            self._worker.cancel(self._dialog, tag)  # its thread lets go of the request
            log.warning("%s job timed out after %.1f s on the GPU", kind.method,
                        self._timeout_s)
            raise JobTimedOut(f"{kind.method} took more than {self._timeout_s:.1f} s "
                              "on the GPU") from None
        except asyncio.CancelledError:
            self._worker.cancel(self._dialog, tag)  # not wanted: free its thread
            raise

    def cancel(self, tag: JobTag) -> None:
        self._worker.cancel(self._dialog, tag)  # a lane's jobs may be on either side
        self._cpu.cancel(tag)

    async def close(self) -> None:
        self._worker.cancel(self._dialog)
        self._jobs.close()  # drops the kept audio of open utterances: no engine call
        await self._cpu.close()
