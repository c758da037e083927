"""The inside of a cell: a worker process pinned to one core that runs engine jobs.

It pins itself before importing any model runtime, loads the ASR, NLU and TTS
engines (and the end-of-turn model, where one is configured) once, one intra-op
thread each, prepares every scenario, warms them up, then serves
jobs from the front process in earliest-deadline-first order: a receiver thread
reads the pipe into the queue (so the front never blocks on a full pipe while a
long job runs) and the main thread executes one job at a time.

The front and the cell talk in the messages of :mod:`server.cell_messages`; a
job travels as its own record and the cell runs only kinds of the job table
(:mod:`voicebot.jobkinds`).  The receiver thread also answers the front's
heartbeat, ``Ping``, at once with a ``Pong`` naming the job running now (None
when idle) and for how long, so the front tells a busy cell from a hung one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cell_messages import (
    CancelJobs,
    CloseCall,
    Done,
    Dropped,
    Failed,
    FromCell,
    LoadFailed,
    Ping,
    Pong,
    Ready,
    RunJob,
    ToCell,
)

if TYPE_CHECKING:  # imported after pinning at run time: numpy must start with one thread
    from .edf import QueuedJob

__all__ = ["CellSpec", "cell_main", "serve_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CellSpec:
    """Everything a cell needs to build its engines (picklable)."""

    index: int
    cpu: int
    engine_names: Mapping[str, str]
    engine_options: Mapping[str, Any]  # kind -> voicebot.engines.registry.EngineOptions
    scenario_paths: tuple[Path, ...]
    default_scenario: str
    prompt_cache_dir: Path | None
    log_level: str = "INFO"


def _pin(cpu: int) -> None:
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})


def cell_main(spec: CellSpec, conn: Connection) -> None:
    """Entry point of a cell process (``multiprocessing`` spawn target)."""
    _pin(spec.cpu)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    from .logsafe import configure_logging

    configure_logging(spec.log_level,
                      fmt=f"%(asctime)s %(levelname)s cell{spec.index} %(name)s: %(message)s")
    from voicebot.dialog.loader import load_scenarios
    from voicebot.engines.registry import build_engine_set

    try:
        engines = build_engine_set(
            {**spec.engine_names, "vad": "none"}, spec.engine_options,
            prompt_cache_dir=spec.prompt_cache_dir,
        )
        for scenario in load_scenarios(spec.scenario_paths).values():
            engines.prepare(scenario)
        engines.warm_up(domain=spec.default_scenario)
    except Exception as exc:
        log.exception("cell %d failed to load its engines", spec.index)
        conn.send(LoadFailed(error=repr(exc)))
        return
    _pin(spec.cpu)  # threads the runtimes started while loading
    serve_jobs(engines, conn)


def serve_jobs(engines: Any, conn: Connection) -> None:
    """Announce the cell ready, then run jobs on ``engines`` until the front goes away."""
    conn.send(Ready(pid=os.getpid()))
    _Worker(engines, conn).run()


class _Worker:
    def __init__(self, engines: Any, conn: Connection) -> None:
        from .edf import EdfQueue

        self._engines = engines
        self._conn = conn
        self._queue = EdfQueue()
        self._lock = threading.Condition()
        self._calls: dict[str, Any] = {}
        self._stopping = False
        self._send_lock = threading.Lock()
        self._current: tuple[int, float] | None = None  # (job id, started), main thread
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunJob: self._queue_job, CancelJobs: self._cancel, CloseCall: self._close,
        }

    def run(self) -> None:
        threading.Thread(target=self._receive, name="cell-receiver", daemon=True).start()
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._queue.pop()
            self._current = (job.job_id, time.monotonic())
            try:
                self._execute(job)
            finally:
                self._current = None

    def _receive(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                self._handle(message)
        except (EOFError, OSError):
            pass  # the front process went away
        except Exception:
            log.exception("cell receiver failed; stopping the cell")
        with self._lock:
            self._stopping = True
            self._lock.notify()

    def _handle(self, message: ToCell) -> None:
        if isinstance(message, Ping):  # answered here, without waiting for the job that runs
            current = self._current
            running_s = 0.0 if current is None else time.monotonic() - current[1]
            self._send(Pong(seq=message.seq, running_job=None if current is None else current[0],
                            running_s=running_s))
            return
        handler = self._handlers.get(type(message))
        if handler is not None:
            with self._lock:
                handler(message)

    def _queue_job(self, message: RunJob) -> None:
        from voicebot.jobkinds import is_engine_job

        if not is_engine_job(message.job):
            self._send(Failed(job_id=message.job_id,
                              error=f"unknown job {type(message.job).__name__!r}"))
            return
        self._queue.push(now_ms=time.monotonic() * 1000, job_id=message.job_id,
                         call_id=message.call_id, job=message.job)
        self._lock.notify()

    def _cancel(self, message: CancelJobs) -> None:
        for job in self._queue.drop(message.call_id, message.tag):
            self._send(Dropped(job_id=job.job_id))

    def _close(self, message: CloseCall) -> None:
        for job in self._queue.drop(message.call_id):
            self._send(Dropped(job_id=job.job_id))
        self._queue.push_release(job_id=-1, call_id=message.call_id)
        self._lock.notify()

    def _execute(self, queued: QueuedJob) -> None:
        from voicebot.jobkinds import kind_of
        from voicebot.jobs import CallJobs

        if queued.job is None:  # the call ended
            jobs = self._calls.pop(queued.call_id, None)
            if jobs is not None:
                jobs.close()
            return
        jobs = self._calls.get(queued.call_id)
        if jobs is None:
            jobs = self._calls[queued.call_id] = CallJobs(self._engines)
        kind = kind_of(queued.job)
        try:
            result = kind.run(jobs, queued.job)
        except Exception as exc:
            log.exception("job %s of call %s failed", kind.method, queued.call_id)
            self._send(Failed(job_id=queued.job_id, error=f"{type(exc).__name__}: {exc}"))
            return
        self._send(Done(job_id=queued.job_id, result=result))

    def _send(self, message: FromCell) -> None:
        with self._send_lock, contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(message)
