"""Cells seen from the front process: start, place dialogs, submit jobs, restart.

One cell per allowed CPU. A dialog is placed on the least loaded ready cell when
admitted and all its engine jobs run there. A cell that dies fails only its own
dialogs' jobs (their calls are closed with a reason by their runtimes), is
restarted, and admits again once its engines are loaded.

VAD and audio codecs stay in the front process: Silero costs ~60 µs per 32 ms
window — less than a pipe round trip — and barge-in detection must not wait
behind a long, non-preemptible ASR or TTS job queued in the dialog's cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

from server.cell_worker import CellSpec, cell_main
from voicebot.errors import EngineError

__all__ = ["Cell", "CellFailed", "CellPool"]

log = logging.getLogger(__name__)

_RESTART_DELAY_S = 1.0


class CellFailed(EngineError):
    """The cell running a dialog's jobs died; the dialog cannot go on."""


class Cell:
    """One worker process and the futures of the jobs it owes."""

    def __init__(self, spec: CellSpec, *, on_exit: Callable[[Cell], None]) -> None:
        self.spec = spec
        self.ready = asyncio.get_running_loop().create_future()
        self.pid: int | None = None
        self.dialogs: set[str] = set()
        self.alive = True
        self._on_exit = on_exit
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=cell_main, args=(spec, child), daemon=True,
                                       name=f"voicebot-cell-{spec.index}")
        self.process.start()
        child.close()
        # A thread does the blocking reads: large results arrive in pieces, and event loops
        # such as uvloop make a watched fd non-blocking (a half-read message would fail).
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, name=f"cell-{spec.index}-reader",
                         daemon=True).start()

    @property
    def index(self) -> int:
        return self.spec.index

    def submit(self, call_id: str, method: str, args: tuple[Any, ...],
               tag: Hashable = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.alive:
            future.set_exception(CellFailed(f"cell {self.index} is down"))
            return future
        job_id = next(self._ids)
        self._pending[job_id] = future
        self._send(("job", job_id, call_id, method, args, tag))
        return future

    def cancel(self, call_id: str, tag: Hashable) -> None:
        self._send(("cancel", call_id, tag))

    def close_dialog(self, call_id: str) -> None:
        self.dialogs.discard(call_id)
        self._send(("close", call_id))

    def stop(self) -> None:
        self.alive = False
        self._detach()
        if self.process.is_alive():
            self.process.terminate()

    def _send(self, message: tuple[Any, ...]) -> None:
        if not self.alive:
            return
        try:
            self._conn.send(message)
        except OSError:
            self._died()

    def _read(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                self._loop.call_soon_threadsafe(self._dispatch, message)
        except (EOFError, OSError):
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._died)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            self.pid = message[1]
            if not self.ready.done():
                self.ready.set_result(None)
            return
        if kind == "failed":
            log.error("cell %d could not load its engines: %s", self.index, message[1])
            if not self.ready.done():
                self.ready.set_exception(EngineError(f"cell {self.index}: {message[1]}"))
            return
        future = self._pending.pop(message[1], None)
        if future is None or future.done():
            return
        if kind == "done":
            future.set_result(message[2])
        elif kind == "dropped":
            future.cancel()
        else:
            future.set_exception(EngineError(message[2]))

    def _detach(self) -> None:
        self._conn.close()

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._detach()
        self.process.join(timeout=1)
        log.error("cell %d (pid %s) died with exit code %s; %d dialogs lost", self.index,
                  self.pid, self.process.exitcode, len(self.dialogs))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CellFailed(f"cell {self.index} died"))
        self._pending.clear()
        if not self.ready.done():
            self.ready.set_exception(CellFailed(f"cell {self.index} died while loading"))
        self._on_exit(self)


class CellPool:
    """The cells of a server: one per CPU, restarted when they die."""

    def __init__(self, specs: list[CellSpec]) -> None:
        self._specs = specs
        self.cells: list[Cell] = []
        self.on_change: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self.cells = [Cell(spec, on_exit=self._exited) for spec in self._specs]
        await asyncio.gather(*(cell.ready for cell in self.cells))
        log.info("%d cells ready: %s", len(self.cells),
                 ", ".join(f"cell {c.index} pid {c.pid} on CPU {c.spec.cpu}" for c in self.cells))

    def ready_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.alive and c.ready.done()
                and c.ready.exception() is None]

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
        for cell in self.cells:
            cell.stop()

    def _exited(self, cell: Cell) -> None:
        self.on_change()
        asyncio.get_running_loop().call_later(_RESTART_DELAY_S, self._restart, cell)

    def _restart(self, dead: Cell) -> None:
        if dead not in self.cells:
            return
        log.info("restarting cell %d on CPU %d", dead.index, dead.spec.cpu)
        fresh = Cell(replace(dead.spec), on_exit=self._exited)
        self.cells[self.cells.index(dead)] = fresh
        fresh.ready.add_done_callback(lambda _: self.on_change())
