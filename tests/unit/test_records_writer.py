"""RecordWriter (server/records/writer.py): submit without waiting, write in order,
drop (and count) when the store falls behind, survive store errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from server.records import (
    CallRecord,
    Outcome,
    RecordingPause,
    RecordStoreError,
    RecordWriter,
    TurnEntry,
    open_store,
)
from tests.unit.test_records_sqlite import NOW, TRICKY_TURN, make_call, make_turn

__all__: list[str] = []


class RecordingStore:
    """A RecordStore that notes each write; ``gate`` holds every write until set."""

    def __init__(self, *, delay_s: float = 0.0, fail_turns: frozenset[int] = frozenset()) -> None:
        self.writes: list[tuple[str, str, int | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.delay_s = delay_s
        self.fail_turns = fail_turns
        self.closed = False

    async def _wait(self) -> None:
        await self.gate.wait()
        await asyncio.sleep(self.delay_s)

    async def start_call(self, record: CallRecord) -> None:
        await self._wait()
        self.writes.append(("start", record.call_id, None))

    async def put_turn(self, call_id: str, turn: TurnEntry) -> None:
        await self._wait()
        if turn.turn in self.fail_turns:
            raise RecordStoreError(f"turn {turn.turn} of {call_id} refused")
        self.writes.append(("turn", call_id, turn.turn))

    async def end_call(self, call_id: str, *, ended_at: datetime, outcome: Outcome,
                       end_reason: str | None = None, recording: str | None = None,
                       recording_pauses: Sequence[RecordingPause] = ()) -> None:
        await self._wait()
        self.writes.append(("end", call_id, None))

    async def get(self, call_id: str) -> CallRecord | None:
        return None

    async def list_calls(self, *, since: datetime | None = None,
                         outcome: Outcome | None = None, limit: int = 100,
                         with_turns: bool = True) -> list[CallRecord]:
        return []

    async def iter_calls(self, *, since: datetime | None = None) -> AsyncIterator[CallRecord]:
        records: list[CallRecord] = []
        for record in records:
            yield record

    async def delete_ended_before(self, cutoff: datetime) -> int:
        return 0

    async def recover(self, *, now: datetime) -> int:
        return 0

    async def close(self) -> None:
        self.closed = True


def _submit_call(writer: RecordWriter, call_id: str, turns: int) -> list[tuple[str, str,
                                                                            int | None]]:
    writer.submit_start(make_call(call_id))
    expected: list[tuple[str, str, int | None]] = [("start", call_id, None)]
    for n in range(turns):
        writer.submit_turn(call_id, make_turn(n))
        expected.append(("turn", call_id, n))
    writer.submit_end(call_id, ended_at=NOW, outcome=Outcome.COMPLETED)
    expected.append(("end", call_id, None))
    return expected


async def test_writes_keep_submission_order_across_calls() -> None:
    store = RecordingStore(delay_s=0.0005)
    writer = RecordWriter(store)
    writer.start()
    expected = []
    writer.submit_start(make_call("a"))
    writer.submit_start(make_call("b"))
    for n in range(20):
        writer.submit_turn("a", make_turn(n))
        writer.submit_turn("b", make_turn(n))
        expected += [("turn", "a", n), ("turn", "b", n)]
    writer.submit_end("b", ended_at=NOW, outcome=Outcome.CALLER_HUNG_UP)
    writer.submit_end("a", ended_at=NOW, outcome=Outcome.COMPLETED)
    await writer.flush()
    assert store.writes == [("start", "a", None), ("start", "b", None), *expected,
                            ("end", "b", None), ("end", "a", None)]
    assert writer.pending == 0 and writer.dropped == 0 and writer.failed == 0
    await writer.close()
    assert store.closed


async def test_a_stalled_store_never_blocks_submit() -> None:
    store = RecordingStore()
    store.gate.clear()  # the store is stuck
    writer = RecordWriter(store)
    writer.start()
    await asyncio.sleep(0)
    started = time.perf_counter()
    expected = []
    for i in range(300):
        expected += _submit_call(writer, f"call-{i}", turns=5)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # 2,100 submits, no waiting on the store
    assert writer.pending == 2100 and store.writes == []
    store.gate.set()
    await asyncio.wait_for(writer.flush(), 30)
    assert store.writes == expected
    await writer.close()


async def test_flush_waits_only_for_what_was_submitted_before_it() -> None:
    store = RecordingStore(delay_s=0.001)
    writer = RecordWriter(store)
    writer.start()
    _submit_call(writer, "first", turns=3)
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(0)
    _submit_call(writer, "second", turns=50)  # keeps the writer busy after "first"
    await asyncio.wait_for(flushing, 10)
    assert ("end", "first", None) in store.writes
    assert ("end", "second", None) not in store.writes
    await writer.close()  # close writes the rest
    assert store.writes[-1] == ("end", "second", None)


async def test_a_full_queue_drops_and_counts_logging_once_per_burst(
        caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    writer = RecordWriter(store, max_pending=5)  # not started: nothing drains yet
    caplog.set_level(logging.WARNING, logger="server.records.writer")
    for n in range(20):
        writer.submit_turn("c1", make_turn(n))
    assert writer.dropped == 15 and writer.pending == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "c1" in errors[0].getMessage()
    writer.start()
    await writer.flush()
    assert store.writes == [("turn", "c1", n) for n in range(5)]
    writer.submit_turn("c1", make_turn(99))  # writing again, said once
    assert "writing again" in caplog.records[-1].getMessage()
    for _ in range(10):
        writer.submit_turn("c2", make_turn(1))
    assert writer.dropped == 21  # a second burst: 6 of the 10 did not fit...
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2  # ...logged once
    await writer.close()


async def test_a_refused_write_is_logged_without_values_and_the_writer_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore(fail_turns=frozenset({3}))
    writer = RecordWriter(store)
    writer.start()
    writer.submit_start(make_call("c1"))
    writer.submit_turn("c1", TRICKY_TURN)  # turn 3: refused
    writer.submit_turn("c1", make_turn(4))
    writer.submit_end("c1", ended_at=NOW, outcome=Outcome.COMPLETED)
    await writer.flush()
    assert store.writes == [("start", "c1", None), ("turn", "c1", 4), ("end", "c1", None)]
    assert writer.failed == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = error.getMessage()
    assert "c1" in message and "turn" in message
    for value in (TRICKY_TURN.heard, TRICKY_TURN.reply, *TRICKY_TURN.slots.values()):
        assert value not in message
    await writer.close()


async def test_close_writes_everything_then_drops(caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore(delay_s=0.0005)
    writer = RecordWriter(store, max_pending=3)
    expected = _submit_call(writer, "c1", turns=1)  # 3 writes, never started
    await writer.close()  # starts, drains, closes the store
    assert store.writes == expected and store.closed
    writer.submit_turn("c1", make_turn(2))
    assert writer.dropped == 1
    await writer.flush()  # nothing pending: returns
    await writer.close()  # twice is fine


async def test_flush_needs_a_running_writer() -> None:
    writer = RecordWriter(RecordingStore())
    await writer.flush()  # nothing submitted
    writer.submit_start(make_call("c1"))
    with pytest.raises(RuntimeError, match="start"):
        await writer.flush()
    with pytest.raises(ValueError):
        RecordWriter(RecordingStore(), max_pending=0)


async def test_writer_into_sqlite(tmp_path: Path) -> None:
    writer = RecordWriter(open_store("sqlite", data_dir=tmp_path))
    writer.start()
    writer.submit_start(make_call("c1"))
    writer.submit_turn("c1", make_turn(0))
    writer.submit_turn("c1", make_turn(1))
    writer.submit_turn("c1", make_turn(1, barged_in=True, heard_ms=300))
    writer.submit_turn("ghost", make_turn(0))  # no such call: logged, skipped
    pauses = [RecordingPause(start_ms=100.0, end_ms=200.0, reason="sensitive slot pin")]
    writer.submit_end("c1", ended_at=NOW + timedelta(seconds=30), outcome=Outcome.COMPLETED,
                      end_reason="goodbye", recording="/r/c1.wav", recording_pauses=pauses)
    await writer.flush()
    assert writer.failed == 1
    got = await writer.store.get("c1")
    assert got == make_call("c1", turns=(make_turn(0), make_turn(1, barged_in=True,
                                                                 heard_ms=300)),
                            ended_at=NOW + timedelta(seconds=30), outcome=Outcome.COMPLETED,
                            end_reason="goodbye", recording="/r/c1.wav",
                            recording_pauses=tuple(pauses))
    await writer.close()
