"""Cells seen from the front process: start, place dialogs, submit jobs, watch, restart.

One cell per allowed CPU. A dialog is placed on the least loaded serving cell when
admitted and all its engine jobs run there. A cell that dies fails only its own
dialogs' jobs (their calls are closed with a reason by their runtimes), is
restarted, and admits again once its engines are loaded.

"Process alive" is not enough: the pool pings every cell each
``heartbeat_interval_s`` and gives every job a deadline (see server/health.py).
A cell that stops answering (hung, e.g. SIGSTOPped) is killed and restarted like
a dead one; a job past its deadline fails with :class:`JobTimedOut` and makes its
cell *suspect* — it takes no new calls until its late jobs are back and it has
answered a heartbeat since (or, if the job runs past ``stuck_job_s``, it is
killed). One timer per pool drives the pings and deadlines.

VAD and audio codecs stay in the front process: Silero costs ~60 µs per 32 ms
window — less than a pipe round trip — and barge-in detection must not wait
behind a long, non-preemptible ASR or TTS job queued in the dialog's cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from voicebot.errors import EngineError
from voicebot.jobkinds import EngineJob, JobTag, kind_of

from . import cell_messages as msg
from .cell_worker import CellSpec, cell_main
from .health import CellHealth, HealthLimits, Verdict

__all__ = ["Cell", "CellFailed", "CellPool", "CellState", "JobTimedOut"]

log = logging.getLogger(__name__)

_RESTART_DELAY_S = 1.0
_MIN_TICK_S = 0.01
_OUTBOX = 1024  # messages to a cell not yet written; full: the cell stopped reading


class CellFailed(EngineError):
    """The cell running a dialog's jobs died or hung; the dialog cannot go on."""


class JobTimedOut(EngineError):
    """A job's result did not come back by its deadline (the cell may still deliver it
    later; it is then dropped). The turn failed; the dialog may go on."""


class CellState(enum.Enum):
    LOADING = "loading"
    SERVING = "serving"
    SUSPECT = "suspect"  # late jobs: takes no new calls
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class _Job:
    future: asyncio.Future[Any]
    call_id: str
    method: str


def _ignore(*_: object) -> None:
    pass


class Cell:
    """One worker process, the futures of the jobs it owes, and its health."""

    def __init__(self, spec: CellSpec, *, on_exit: Callable[[Cell], None],
                 on_change: Callable[[Cell], None] = _ignore,
                 on_deadline: Callable[[float], None] = _ignore,
                 limits: HealthLimits | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 worker: Callable[[CellSpec, Connection], None] = cell_main) -> None:
        self.spec = spec
        self.ready = asyncio.get_running_loop().create_future()
        self.pid: int | None = None
        self.dialogs: set[str] = set()
        self.alive = True
        self.state = CellState.LOADING
        self._killed = False  # by us, as hung: the pipe's end still has to be reaped
        self._clock = clock
        self.health = CellHealth(limits or HealthLimits(), now_s=clock())
        self._on_exit, self._on_change, self._on_deadline = on_exit, on_change, on_deadline
        self._pending: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=worker, args=(spec, child), daemon=True,
                                       name=f"voicebot-cell-{spec.index}")
        self.process.start()
        child.close()
        # Threads do the blocking reads and writes: large results arrive in pieces, event
        # loops such as uvloop make a watched fd non-blocking (a half-read message would
        # fail), and a write to a cell that stopped reading must not block the event loop.
        self._loop = asyncio.get_running_loop()
        self._outbox: queue.Queue[msg.ToCell | None] = queue.Queue(_OUTBOX)
        self._handlers: dict[type, Callable[[Any, float], None]] = {
            msg.Ready: self._ready, msg.LoadFailed: self._load_failed, msg.Pong: self._pong,
            msg.Done: self._answered, msg.Failed: self._answered, msg.Dropped: self._answered,
        }
        for target, role in ((self._read, "reader"), (self._write, "writer")):
            threading.Thread(target=target, name=f"cell-{spec.index}-{role}",
                             daemon=True).start()

    @property
    def index(self) -> int:
        return self.spec.index

    def submit(self, call_id: str, job: EngineJob) -> asyncio.Future[Any]:
        """Run ``job`` of dialog ``call_id``; the future gets the engine method's result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_exception(CellFailed(f"cell {self.index} is down"))
            return future
        job_id = next(self._ids)
        self._pending[job_id] = _Job(future, call_id, kind_of(job).method)
        self._on_deadline(self.health.submitted(job_id, now_s=self._clock()))
        self._send(msg.RunJob(job_id=job_id, call_id=call_id, job=job))
        return future

    def cancel(self, call_id: str, tag: JobTag) -> None:
        """Drop the dialog's queued jobs of ``tag`` (see :func:`voicebot.jobkinds.job_tag`)."""
        self._send(msg.CancelJobs(call_id=call_id, tag=tag))

    def close_dialog(self, call_id: str) -> None:
        self.dialogs.discard(call_id)
        self._send(msg.CloseCall(call_id=call_id))

    def check(self, now_s: float) -> None:
        """Fail jobs past their deadline, judge the cell, ping it when a ping is due."""
        if self.state not in (CellState.SERVING, CellState.SUSPECT):
            return
        for job_id in self.health.expire(now_s):
            job = self._pending.pop(job_id, None)
            if job is None or job.future.done():
                continue
            timeout_s = self.health.limits.job_timeout_s
            log.warning("cell %d (pid %s): %s job of call %s timed out after %.1f s",
                        self.index, self.pid, job.method, job.call_id, timeout_s)
            job.future.set_exception(JobTimedOut(
                f"{job.method} on cell {self.index} took more than {timeout_s:.1f} s"))
        self._assess(now_s)
        seq = self.health.ping(now_s) if self.alive else None
        if seq is not None:
            self._send(msg.Ping(seq=seq))

    def stop(self) -> None:
        self.alive = False
        self.state = CellState.DOWN
        self._end_writer()
        self._detach()
        if self.process.is_alive():
            self.process.terminate()

    def _send(self, message: msg.ToCell) -> None:
        if not self.alive:
            return
        try:
            self._outbox.put_nowait(message)
        except queue.Full:
            self._hung(f"{_OUTBOX} messages to it are unread")

    def _write(self) -> None:
        try:
            while (message := self._outbox.get()) is not None:
                self._conn.send(message)
        except OSError:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._broken)

    def _end_writer(self) -> None:
        with contextlib.suppress(queue.Full):  # else it is stuck in a write; it fails
            self._outbox.put_nowait(None)

    def _broken(self) -> None:
        if self.alive:
            log.error("cell %d (pid %s): its pipe broke", self.index, self.pid)
            self._kill()
            self._down(f"cell {self.index}: its pipe broke")

    def _read(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                self._loop.call_soon_threadsafe(self._dispatch, message, self._clock())
        except (EOFError, OSError):
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._died)

    def _dispatch(self, message: msg.FromCell, received_s: float) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message, received_s)

    def _ready(self, message: msg.Ready, _received_s: float) -> None:
        self.pid = message.pid
        if self.alive:
            self.state = CellState.SERVING
        if not self.ready.done():
            self.ready.set_result(None)

    def _load_failed(self, message: msg.LoadFailed, _received_s: float) -> None:
        log.error("cell %d could not load its engines: %s", self.index, message.error)
        if not self.ready.done():
            self.ready.set_exception(EngineError(f"cell {self.index}: {message.error}"))

    def _pong(self, message: msg.Pong, received_s: float) -> None:
        self.health.answered(message.seq, now_s=received_s, running_job=message.running_job,
                             running_s=message.running_s)
        self._assess(self._clock())

    def _answered(self, message: msg.Done | msg.Failed | msg.Dropped, received_s: float) -> None:
        self.health.finished(message.job_id, now_s=received_s)  # late: the future has failed
        job = self._pending.pop(message.job_id, None)
        if job is not None and not job.future.done():
            message.settle(job.future)
        self._assess(self._clock())

    def _assess(self, now_s: float) -> None:
        if self.state not in (CellState.SERVING, CellState.SUSPECT):
            return
        verdict = self.health.verdict(now_s)
        if verdict is Verdict.HUNG:
            self._hung(self.health.reason(now_s))
            return
        state = CellState.SUSPECT if verdict is Verdict.SUSPECT else CellState.SERVING
        if state is not self.state:
            if state is CellState.SUSPECT:
                log.warning("cell %d (pid %s) is suspect, taking no new calls: %s",
                            self.index, self.pid, self.health.reason(now_s))
            else:
                log.warning("cell %d (pid %s) is healthy again: its late jobs are back and it "
                            "answers heartbeats", self.index, self.pid)
            self.state = state
            self._on_change(self)

    def _hung(self, reason: str) -> None:
        log.error("cell %d (pid %s) hung: %s; killing it (%d dialogs lost)", self.index,
                  self.pid, reason, len(self.dialogs))
        self._kill()
        self._down(f"cell {self.index} hung")

    def _kill(self) -> None:
        self._killed = True
        with contextlib.suppress(OSError):
            self.process.kill()  # SIGKILL also ends a stopped process

    def _detach(self) -> None:
        self._conn.close()

    def _died(self) -> None:
        """The pipe reached its end: the process is gone (or we killed it)."""
        if not self.alive and not self._killed:
            return  # stopped with the pool
        self._detach()
        self.process.join(timeout=1)
        if self.alive:
            log.error("cell %d (pid %s) died with exit code %s; %d dialogs lost", self.index,
                      self.pid, self.process.exitcode, len(self.dialogs))
        self._down(f"cell {self.index} died")

    def _down(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.state = CellState.DOWN
        self._end_writer()
        for job in self._pending.values():
            if not job.future.done():
                job.future.set_exception(CellFailed(reason))
        self._pending.clear()
        if not self.ready.done():
            self.ready.set_exception(CellFailed(f"{reason} while loading"))
        self._on_exit(self)


class CellPool:
    """The cells of a server: one per CPU, watched, restarted when they die or hang."""

    def __init__(self, specs: list[CellSpec], *, heartbeat_interval_s: float = 1.0,
                 heartbeat_timeout_s: float = 3.0, job_timeout_s: float = 10.0,
                 stuck_job_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 worker: Callable[[CellSpec, Connection], None] = cell_main) -> None:
        self._specs = specs
        self._worker = worker
        self._limits = HealthLimits(
            heartbeat_interval_s=heartbeat_interval_s, heartbeat_timeout_s=heartbeat_timeout_s,
            job_timeout_s=job_timeout_s, stuck_job_s=stuck_job_s)
        self._clock = clock
        self.cells: list[Cell] = []
        self.on_change: Callable[[], None] = lambda: None
        self.on_restart: Callable[[int], None] = lambda index: None  # a cell's index
        self._timer: asyncio.TimerHandle | None = None
        self._wake_s = math.inf
        self._stopped = False

    async def start(self) -> None:
        self.cells = [self._new_cell(spec) for spec in self._specs]
        await asyncio.gather(*(cell.ready for cell in self.cells))
        log.info("%d cells ready: %s", len(self.cells),
                 ", ".join(f"cell {c.index} pid {c.pid} on CPU {c.spec.cpu}" for c in self.cells))
        self._wake_by(self._clock())

    def ready_cells(self) -> list[Cell]:
        """Cells that take new dialogs: loaded, answering, no late jobs."""
        return [c for c in self.cells if c.state is CellState.SERVING]

    def place(self, call_id: str, index: int | None = None) -> Cell:
        """Cell ``index`` (the one admission reserved) takes the dialog, or, if it is not
        ready (any more), the least loaded ready cell."""
        cells = self.ready_cells()
        if not cells:
            raise CellFailed("no cell is ready")
        chosen = [c for c in cells if c.index == index]
        cell = chosen[0] if chosen else min(cells, key=lambda c: (len(c.dialogs), c.index))
        cell.dialogs.add(call_id)
        return cell

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cell in self.cells:
            cell.stop()

    def _new_cell(self, spec: CellSpec) -> Cell:
        return Cell(spec, on_exit=self._exited, on_change=lambda _: self.on_change(),
                    on_deadline=self._wake_by, limits=self._limits, clock=self._clock,
                    worker=self._worker)

    def _wake_by(self, when_s: float) -> None:
        """Make sure the pool's one timer fires no later than ``when_s``."""
        if self._stopped or (self._timer is not None and self._wake_s <= when_s):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._wake_s = when_s
        delay_s = max(_MIN_TICK_S, when_s - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._tick)

    def _tick(self) -> None:
        self._timer, self._wake_s = None, math.inf
        now_s = self._clock()
        for cell in list(self.cells):
            cell.check(now_s)
        wake_s = now_s + self._limits.heartbeat_interval_s
        for cell in self.cells:
            if cell.state in (CellState.SERVING, CellState.SUSPECT):
                wake_s = min(wake_s, cell.health.next_check_s(now_s))
        self._wake_by(wake_s)

    def _exited(self, cell: Cell) -> None:
        self.on_change()
        if not self._stopped:
            asyncio.get_running_loop().call_later(_RESTART_DELAY_S, self._restart, cell)

    def _restart(self, dead: Cell) -> None:
        if self._stopped or dead not in self.cells:
            return
        log.info("restarting cell %d on CPU %d", dead.index, dead.spec.cpu)
        self.on_restart(dead.index)
        fresh = self._new_cell(replace(dead.spec))
        self.cells[self.cells.index(dead)] = fresh
        fresh.ready.add_done_callback(lambda _: self.on_change())
