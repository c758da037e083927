"""The GPU worker: one thread that owns the GPU and runs batches gathered across calls.

Calls' ASR decodes and sentences arrive from any thread (:meth:`GpuWorker.submit`; a
call's GPU jobs wait on the server's threads, server/gpu_runner.py); the pure
:class:`~server.gpu_batching.BatchPolicy` holds them for at most the bound of their
urgency class and says when a batch goes; the worker's one thread (started by the
server, which owns every thread; the batch engines create none) runs it on the
:class:`~voicebot.engines.gpu_batch.BatchTranscriber` or
:class:`~voicebot.engines.gpu_batch.BatchSynthesizer` and sets each job's
:class:`concurrent.futures.Future`.  A batch that raises fails each of its jobs with an
:class:`~voicebot.errors.EngineError` naming the batch, and the worker goes on with
the next: other calls are not affected.  Cancelling a held job removes it from the
batch it waits for; :meth:`GpuWorker.close` stops taking jobs, runs what is held
without waiting (drain) and ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from voicebot.engines.gpu_batch import (
    BatchSynthesizer,
    BatchTranscriber,
    DecodeRequest,
    SynthesisRequest,
)
from voicebot.errors import EngineError
from voicebot.jobkinds import JobTag, Urgency

from .gpu_batching import Batch, BatchLimits, BatchPolicy

__all__ = ["DECODE", "SYNTHESIZE", "GpuClosed", "GpuWorker"]

log = logging.getLogger(__name__)

DECODE = "decode"
SYNTHESIZE = "synthesize"


class GpuClosed(EngineError):
    """The GPU worker is closed (the server is stopping)."""


@dataclass(slots=True)
class _Held:
    future: Future[Any]
    request: DecodeRequest | SynthesisRequest


BatchHook = Callable[[Batch], None]
"""Called on the GPU thread with each batch before it runs (tests, metrics)."""


class GpuWorker:
    """One GPU, one thread; ``clock`` (seconds) is injectable for tests; ``on_batch``
    sees each batch before it runs (which dialogs' jobs went together)."""

    def __init__(self, *, transcriber: BatchTranscriber | None = None,
                 synthesizer: BatchSynthesizer | None = None, limits: BatchLimits | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str = "voicebot-gpu",
                 on_batch: BatchHook | None = None) -> None:
        self.transcriber = transcriber
        self.synthesizer = synthesizer
        self._policy = BatchPolicy(limits)
        self._clock = clock
        self._cond = threading.Condition()
        self._held: dict[int, _Held] = {}
        self._ids = itertools.count()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stopped: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._on_batch = on_batch
        self.batches_run = 0
        self.largest_batch: dict[str, int] = {}
        """Per batch kind (``decode``, ``synthesize``), the most jobs one batch held."""

    @property
    def limits(self) -> BatchLimits:
        return self._policy.limits

    @property
    def held(self) -> int:
        """Jobs held for a batch now."""
        with self._cond:
            return len(self._held)

    def start(self) -> None:
        self._thread.start()

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    # ------------------------------------------------------------------ the callers' side

    def submit(self, dialog: str, tag: JobTag, urgency: Urgency,
               request: DecodeRequest | SynthesisRequest) -> Future[Any]:
        """Hold ``request`` for a batch (from any thread); the future gets its result (or
        the batch's error); cancelled when the job is dropped before its batch runs."""
        kind = DECODE if isinstance(request, DecodeRequest) else SYNTHESIZE
        if (self.transcriber if kind == DECODE else self.synthesizer) is None:
            raise EngineError(f"this GPU worker does not {kind}")
        future: Future[Any] = Future()
        with self._cond:
            if self._closing:
                raise GpuClosed("the GPU worker is closed")
            job_id = next(self._ids)
            self._policy.push(now_ms=self._now_ms(), job_id=job_id, dialog=dialog, kind=kind,
                              tag=tag, urgency=urgency)
            self._held[job_id] = _Held(future, request)
            self._cond.notify()
        return future

    def cancel(self, dialog: str, tag: JobTag | None = None) -> int:
        """Drop a dialog's held jobs (of ``tag`` when given); their futures are cancelled.
        Jobs already in a running batch finish; their results are not wanted."""
        with self._cond:
            dropped = [self._held.pop(p.job_id) for p in self._policy.drop(dialog, tag)]
        for held in dropped:
            held.future.cancel()
        return len(dropped)

    async def close(self) -> None:
        """Stop taking jobs, run the held ones now, end the thread (awaited, not joined)."""
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._closing = True
            alive = self._thread.is_alive()
            if alive:
                self._stopped.append((loop, stopped))
            self._cond.notify()
        if alive:
            await stopped
        else:  # never started: nothing will run what is held
            with self._cond:
                held, self._held = list(self._held.values()), {}
            for h in held:
                h.future.cancel()

    # ------------------------------------------------------------------ the GPU thread

    def _serve(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
                if batch is None:
                    stopped, self._stopped = self._stopped, []
                    break
                held = [self._held.pop(j.job_id) for j in batch.jobs]
            self._run(batch, held)
        log.info("GPU worker stopped after %d batches", self.batches_run)
        for loop, future in stopped:
            with contextlib.suppress(RuntimeError):  # a closed loop wants nothing
                loop.call_soon_threadsafe(_stopped, future)

    def _next(self) -> Batch | None:
        """The next batch, waiting on the condition until one is due (None: closed and
        drained).  Called with the lock held."""
        while True:
            batch = self._policy.next_batch(self._now_ms(), flush=self._closing)
            if batch is not None:
                return batch
            if self._closing:
                return None
            wake = self._policy.wake_at_ms()
            self._cond.wait(None if wake is None else max(0.0, (wake - self._now_ms()) / 1000))

    def _run(self, batch: Batch, held: Sequence[_Held]) -> None:
        requests = [h.request for h in held]
        self.largest_batch[batch.kind] = max(len(held), self.largest_batch.get(batch.kind, 0))
        try:
            if self._on_batch is not None:
                self._on_batch(batch)
            if batch.kind == DECODE:
                assert self.transcriber is not None
                results: list[Any] = list(self.transcriber.transcribe_batch(
                    [r for r in requests if isinstance(r, DecodeRequest)]))
            else:
                assert self.synthesizer is not None
                results = list(self.synthesizer.synthesize_batch(
                    [r for r in requests if isinstance(r, SynthesisRequest)]))
            if len(results) != len(held):
                raise EngineError(f"{len(results)} results for {len(held)} requests")
        except Exception as exc:  # one batch's failure fails its jobs, not the worker
            log.warning("GPU %s batch of %d failed: %s", batch.kind, len(held), exc)
            error = EngineError(f"GPU {batch.kind} batch of {len(held)} failed: {exc}")
            error.__cause__ = exc
            for h in held:
                _settle(h.future, None, error)
            return
        finally:
            self.batches_run += 1
        for h, result in zip(held, results, strict=True):
            _settle(h.future, result, None)


def _stopped(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(future: Future[Any], result: Any, error: BaseException | None) -> None:
    """Give a job its result (on the GPU thread); one cancelled meanwhile wants nothing."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
