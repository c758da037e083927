"""The inside of a cell: a worker process pinned to one core that runs engine jobs.

It pins itself before importing any model runtime, loads the ASR, NLU and TTS
engines once (one intra-op thread each), prepares every scenario, then serves
jobs from the front process in earliest-deadline-first order: a receiver thread
reads the pipe into the queue (so the front never blocks on a full pipe while a
long job runs) and the main thread executes one job at a time.

The receiver thread also answers the front's heartbeat, ``("ping", seq)``, at
once with ``("pong", seq, job_id, running_s)``: the job running now (None when
idle) and for how long, so the front tells a busy cell from a hung one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_METHODS", "CellSpec", "cell_main", "serve_jobs"]

log = logging.getLogger(__name__)

ALLOWED_METHODS = frozenset({
    "start_transcription", "feed_transcription", "finish_transcription",
    "cancel_transcription", "speculate_transcription", "discard_speculation",
    "understand", "synthesize",
})


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
    from server.logsafe import configure_logging

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
        conn.send(("failed", repr(exc)))
        return
    _pin(spec.cpu)  # threads the runtimes started while loading
    serve_jobs(engines, conn)


def serve_jobs(engines: Any, conn: Connection) -> None:
    """Announce the cell ready, then run jobs on ``engines`` until the front goes away."""
    conn.send(("ready", os.getpid()))
    _Worker(engines, conn).run()


class _Worker:
    def __init__(self, engines: Any, conn: Connection) -> None:
        from server.edf import EdfQueue

        self._engines = engines
        self._conn = conn
        self._queue = EdfQueue()
        self._lock = threading.Condition()
        self._calls: dict[str, Any] = {}
        self._stopping = False
        self._send_lock = threading.Lock()
        self._current: tuple[int, float] | None = None  # (job id, started), main thread

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

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ping":  # answered here, without waiting for the job that runs
            current = self._current
            if current is None:
                self._send(("pong", message[1], None, 0.0))
            else:
                self._send(("pong", message[1], current[0], time.monotonic() - current[1]))
            return
        with self._lock:
            if kind == "job":
                _, job_id, call_id, method, args, tag = message
                self._queue.push(now_ms=time.monotonic() * 1000, job_id=job_id,
                                 call_id=call_id, method=method, args=tuple(args), tag=tag)
                self._lock.notify()
            elif kind == "cancel":
                _, call_id, tag = message
                for job in self._queue.drop(call_id, tag):
                    self._send(("dropped", job.job_id))
            elif kind == "close":
                _, call_id = message
                for job in self._queue.drop(call_id):
                    self._send(("dropped", job.job_id))
                self._queue.push(now_ms=0, job_id=-1, call_id=call_id, method="_close",
                                 args=())
                self._lock.notify()

    def _execute(self, job: Any) -> None:
        from voicebot.jobs import CallJobs

        if job.method == "_close":
            jobs = self._calls.pop(job.call_id, None)
            if jobs is not None:
                jobs.close()
            return
        if job.method not in ALLOWED_METHODS:
            self._send(("error", job.job_id, f"unknown job {job.method!r}"))
            return
        jobs = self._calls.get(job.call_id)
        if jobs is None:
            jobs = self._calls[job.call_id] = CallJobs(self._engines)
        try:
            result = getattr(jobs, job.method)(*job.args)
        except Exception as exc:
            log.exception("job %s of call %s failed", job.method, job.call_id)
            self._send(("error", job.job_id, f"{type(exc).__name__}: {exc}"))
            return
        self._send(("done", job.job_id, result))

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(message)
