"""Where a call's engine jobs run: on the server's threads, or in the call's cell.

The runtime calls :class:`JobRunner` methods by job name (the methods of
:class:`voicebot.jobs.CallJobs`); the VAD always runs in the front process
(see server/cells.py for why) through :class:`VadRunner`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from concurrent.futures import Executor
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from server.cells import Cell
from voicebot.engines.base import Pcm, SpeechDetector
from voicebot.jobs import CallJobs

__all__ = ["CellRunner", "JobDropped", "JobRunner", "LocalRunner", "VadRunner"]


class JobDropped(Exception):
    """A queued job was dropped (its reply was cancelled) before it ran."""


class JobRunner(Protocol):
    async def run(self, method: str, *args: Any, tag: Hashable = None) -> Any: ...

    def cancel(self, tag: Hashable) -> None:
        """Drop queued jobs submitted with ``tag`` (e.g. a cancelled reply's sentences)."""
        ...

    async def close(self) -> None:
        """The call ended: release its engine state (open ASR streams...)."""
        ...


class LocalRunner:
    """Jobs on the server's own engine threads (``cells: false``)."""

    def __init__(self, jobs: CallJobs, executor: Executor) -> None:
        self._jobs = jobs
        self._executor = executor

    async def run(self, method: str, *args: Any, tag: Hashable = None) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, getattr(self._jobs, method), *args)

    def cancel(self, tag: Hashable) -> None:
        pass  # queued jobs wait in the runtime's lanes, which drop them themselves

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._jobs.close)


class CellRunner:
    """Jobs of one dialog in the cell it was placed on."""

    def __init__(self, cell: Cell, dialog: str) -> None:
        self.cell = cell
        self._dialog = dialog

    async def run(self, method: str, *args: Any, tag: Hashable = None) -> Any:
        future = self.cell.submit(self._dialog, method, args, tag)
        try:
            return await future
        except asyncio.CancelledError:
            if future.cancelled():  # the cell dropped the job; our task goes on
                raise JobDropped(method) from None
            raise

    def cancel(self, tag: Hashable) -> None:
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
