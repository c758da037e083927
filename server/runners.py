"""Where a call's engine jobs run: on the server's threads, or in the call's cell.

The runtime hands a :class:`JobRunner` the session's job records; the job table
(:mod:`voicebot.jobkinds`) says which :class:`voicebot.jobs.CallJobs` method runs
each.  The VAD always runs in the front process (see server/cells.py for why)
through :class:`VadRunner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Executor, Future
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.jobkinds import EngineJob, JobTag, kind_of, run_job
from voicebot.jobs import CallJobs

from .cells import Cell, JobTimedOut

__all__ = ["CellRunner", "JobDropped", "JobRunner", "LocalRunner", "VadRunner"]

log = logging.getLogger(__name__)


class JobDropped(Exception):
    """A queued job was dropped (its reply was cancelled) before it ran."""


class JobRunner(Protocol):
    async def run(self, job: EngineJob) -> Any:
        """Run ``job``; returns its engine method's result."""
        ...

    def cancel(self, tag: JobTag) -> None:
        """Drop queued jobs of ``tag`` (e.g. a cancelled reply's sentences)."""
        ...

    async def close(self) -> None:
        """The call ended: release its engine state (open ASR streams...)."""
        ...


class LocalRunner:
    """Jobs on the server's own engine threads (``cells: false``).

    A job whose result is not back within ``job_timeout_s`` fails with
    :class:`JobTimedOut`; its thread cannot be stopped and runs on, so closing the
    call's engine state waits (off the event loop) until such stragglers end.
    """

    def __init__(self, jobs: CallJobs, executor: Executor, *,
                 job_timeout_s: float = 10.0) -> None:
        self._jobs = jobs
        self._executor = executor
        self._job_timeout_s = job_timeout_s
        self._running: set[Future[Any]] = set()

    async def run(self, job: EngineJob) -> Any:
        method = kind_of(job).method
        running = self._executor.submit(run_job, self._jobs, job)
        self._running = {j for j in self._running if not j.done()}  # few: lanes, stragglers
        self._running.add(running)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(running), self._job_timeout_s)
        except TimeoutError:
            if running.done() and not running.cancelled():
                raise  # the job's own error
            log.warning("%s job timed out after %.1f s", method, self._job_timeout_s)
            raise JobTimedOut(f"{method} took more than {self._job_timeout_s:.1f} s") from None

    def cancel(self, tag: JobTag) -> None:
        pass  # queued jobs wait in the runtime's lanes, which drop them themselves

    async def close(self) -> None:
        stragglers = [job for job in self._running if not job.done()]
        if not stragglers:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._jobs.close)
            return
        log.warning("closing a call while %d timed-out job(s) still run; its engine state "
                    "is released when they end", len(stragglers))
        lock = threading.Lock()
        remaining = set(stragglers)

        def straggler_done(job: Future[Any]) -> None:  # on the straggler's thread
            with lock:
                remaining.discard(job)
                last = not remaining
            if last:
                with contextlib.suppress(RuntimeError):  # the executor is shut down
                    self._executor.submit(self._jobs.close)

        for job in stragglers:
            job.add_done_callback(straggler_done)


class CellRunner:
    """Jobs of one dialog in the cell it was placed on."""

    def __init__(self, cell: Cell, dialog: str) -> None:
        self.cell = cell
        self._dialog = dialog

    async def run(self, job: EngineJob) -> Any:
        future = self.cell.submit(self._dialog, job)
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled():  # the cell dropped the job; our task goes on
                raise JobDropped(kind_of(job).method) from None
            raise

    def cancel(self, tag: JobTag) -> None:
        self.cell.cancel(self._dialog, tag)

    async def close(self) -> None:
        self.cell.close_dialog(self._dialog)


class VadRunner:
    """A call's VAD state, run on a front-process thread."""

    def __init__(self, detector: SpeechDetector, executor: Executor) -> None:
        self._stream = detector.open_stream()
        self._executor = executor
        self.window_samples = detector.window_samples

    async def detect(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._stream.probabilities, pcm)
