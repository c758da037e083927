"""Writes call records off the audio path: ``submit_*`` now, the store later, in order.

The server calls ``writer.submit_start(record)``, ``writer.submit_turn(call_id,
turn)`` and ``writer.submit_end(call_id, ...)`` from the event loop without awaiting:
each puts one write on a bounded queue and returns at once; it never blocks and
never raises. One task (``start()``) drains the queue in submission order into the
store, one write at a time, so a turn never reaches the store before its call.

When the store falls behind by ``max_pending`` writes, new writes are dropped (and
counted in ``dropped``; an error is logged once per burst): the calls go on, their
records have holes. A write the store refuses is logged -- call id and error, never
a stored value -- counted in ``failed``, and the writer goes on with the next.

``await writer.flush()`` returns when everything submitted before it is written
(or has failed); ``await writer.close()`` writes everything left, then closes the
store. ``submit_*`` must be called on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .model import CallRecord, Outcome, RecordingPause, TurnEntry
from .store import RecordStore, RecordStoreError

__all__ = ["DEFAULT_MAX_PENDING", "RecordWriter"]

_log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class _Start:
    record: CallRecord
    kind = "start"

    @property
    def call_id(self) -> str:
        return self.record.call_id


@dataclass(frozen=True, slots=True)
class _Turn:
    call_id: str
    turn: TurnEntry
    kind = "turn"


@dataclass(frozen=True, slots=True)
class _End:
    call_id: str
    ended_at: datetime
    outcome: Outcome
    end_reason: str | None
    recording: str | None
    recording_pauses: tuple[RecordingPause, ...]
    kind = "end"


_Write = _Start | _Turn | _End


class RecordWriter:
    """Queues record writes for ``store``; see the module docstring."""

    def __init__(self, store: RecordStore, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.store = store
        self.dropped = 0
        """Writes lost because the queue was full (or the writer closed)."""
        self.failed = 0
        """Writes the store refused."""
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None
        self._submitted = 0
        self._done = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = (
            collections.deque())
        self._dropping = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Writes submitted and not yet done."""
        return self._submitted - self._done

    def start(self) -> None:
        """Start draining the queue (on the running event loop); idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="records-writer")

    # -- from the audio path: never block, never raise -----------------------------

    def submit_start(self, record: CallRecord) -> None:
        self._submit(_Start(record))

    def submit_turn(self, call_id: str, turn: TurnEntry) -> None:
        self._submit(_Turn(call_id, turn))

    def submit_end(self, call_id: str, *, ended_at: datetime, outcome: Outcome,
                   end_reason: str | None = None, recording: str | None = None,
                   recording_pauses: Sequence[RecordingPause] = ()) -> None:
        self._submit(_End(call_id, ended_at, outcome, end_reason, recording,
                          tuple(recording_pauses)))

    def _submit(self, write: _Write) -> None:
        if not self._closed:
            try:
                self._queue.put_nowait(write)
            except asyncio.QueueFull:
                pass
            else:
                self._submitted += 1
                if self._dropping:
                    self._dropping = False
                    _log.warning("call records: writing again; %d write(s) dropped so far",
                                 self.dropped)
                return
        self.dropped += 1
        if not self._dropping:
            self._dropping = True
            why = ("the writer is closed" if self._closed
                   else f"{self._queue.maxsize} writes are waiting for the store")
            _log.error("call records: dropping writes (%s), from call %s on; %d dropped "
                       "so far", why, write.call_id, self.dropped)

    # -- the drain task ------------------------------------------------------------

    async def _apply(self, write: _Write) -> None:
        if isinstance(write, _Start):
            await self.store.start_call(write.record)
        elif isinstance(write, _Turn):
            await self.store.put_turn(write.call_id, write.turn)
        else:
            await self.store.end_call(
                write.call_id, ended_at=write.ended_at, outcome=write.outcome,
                end_reason=write.end_reason, recording=write.recording,
                recording_pauses=write.recording_pauses)

    async def _drain(self) -> None:
        try:
            while True:
                write = await self._queue.get()
                if write is None:
                    return
                try:
                    await self._apply(write)
                except RecordStoreError as exc:  # its message holds no stored value
                    self.failed += 1
                    _log.error("call records: %s of call %s not written: %s", write.kind,
                               write.call_id, exc)
                except Exception as exc:
                    self.failed += 1
                    _log.error("call records: %s of call %s not written: %s", write.kind,
                               write.call_id, type(exc).__name__)
                self._done += 1
                while self._waiters and self._waiters[0][0] <= self._done:
                    _, waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            while self._waiters:
                _, waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(RuntimeError("the record writer stopped"))

    async def flush(self) -> None:
        """Until every write submitted so far is done (written or failed)."""
        target = self._submitted
        if self._done >= target:
            return
        if self._task is None or self._task.done():
            raise RuntimeError("the record writer is not running (call start())")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    async def close(self) -> None:
        """Write everything submitted, stop, close the store; later writes are dropped."""
        if self._closed:
            return
        self._closed = True
        self.start()
        assert self._task is not None
        if not self._task.done():
            await self._queue.put(None)
            await self._task
        if self._submitted > self._done:
            _log.error("call records: %d write(s) left unwritten at close",
                       self._submitted - self._done)
        await self.store.close()
