"""The record-store contract, held against SQLite here and against PostgreSQL in
tests/integration/test_records_postgres.py (which imports :class:`StoreContract`).

A backend's test class subclasses :class:`StoreContract` and supplies the fixture
``store_target`` (a :class:`StoreTarget` naming an empty store); every ``test_*`` of
the contract then runs on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from server.records import (
    RECOVER_REASON,
    CallRecord,
    Outcome,
    RecordingPause,
    RecordStore,
    RecordStoreError,
    SqliteRecordStore,
    TurnEntry,
    open_store,
)
from server.records.store import SCHEMA_VERSION
from voicebot.errors import ConfigError

__all__ = ["NOW", "StoreContract", "StoreTarget", "make_call", "make_turn"]

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class StoreTarget:
    target: str
    """What ``records:`` says: sqlite, sqlite:///PATH, postgresql://..."""
    data_dir: Path


def make_turn(turn: int, **changes: Any) -> TurnEntry:
    fields: dict[str, Any] = {
        "turn": turn, "at_ms": 1500.0 * turn, "source": "speech" if turn else "greeting",
        "heard": f"caller words {turn}" if turn else "", "intent": "lost_card" if turn else None,
        "confidence": 0.5 + turn / 100, "slots": {}, "reply": f"bot words {turn}",
        "state": f"state_{turn}", "latency_ms": 600.0 + turn,
        "parts_ms": {"asr": 210.5, "nlu": 12.25, "tts_first_audio": 95.0}}
    return TurnEntry(**{**fields, **changes})


def make_call(call_id: str, *, started_at: datetime = NOW, **changes: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "call_id": call_id, "provider": "twilio", "provider_call_id": f"CA-{call_id}",
        "stream_id": f"MZ-{call_id}", "caller": "+1555***0100", "callee": "+15550199",
        "scenario": "bank_card", "started_at": started_at}
    return CallRecord(**{**fields, **changes})


# Masked data with everything that might trip a backend: quotes, SQL, newlines, NUL-free
# control characters, accents, emoji, awkward floats, non-UTC and sub-second times.
TRICKY_TURN = TurnEntry(
    turn=3, at_ms=0.1 + 0.2, source="dtmf", heard="my card ends in ****",
    intent="give_card", confidence=1 / 3,
    slots={"card_last4": "****", "name": "Zoë \"O'Brien\"; DROP TABLE calls;--"},
    reply="Thanks \u2014 card ending ****.\nAnything else? \U0001f642\t\x1b[31m",
    state="confirm_block", barged_in=True, heard_ms=2**40, dtmf="****",
    latency_ms=1234.5678901234567,
    parts_ms={"asr": 1e-7, "nlu": 5e300, "tts_first_audio": 0.0, "queue_wait": 123456.789})
TRICKY_CALL = make_call(
    "call-\u00e9\U0001f4de'\"", provider="telnyx", caller=None, callee="sip:bot@example.com",
    started_at=datetime(2026, 12, 1, 17, 30, 5, 123456,
                        tzinfo=timezone(timedelta(hours=5, minutes=30))))

_CHILD = """
import asyncio, json, sys
from pathlib import Path
from server.records import CallRecord, TurnEntry, open_store

async def main() -> None:
    target, data_dir, record, turn = sys.argv[1:5]
    store = open_store(target, data_dir=Path(data_dir))
    record = CallRecord.from_json(json.loads(record))
    await store.start_call(record)
    await store.put_turn(record.call_id, TurnEntry.from_json(json.loads(turn)))
    print("written", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


class StoreContract:
    """Every :class:`RecordStore` behaves like this (subclass it; see the module doc)."""

    @pytest.fixture
    async def store(self, store_target: StoreTarget) -> AsyncIterator[RecordStore]:
        store = open_store(store_target.target, data_dir=store_target.data_dir)
        yield store
        await store.close()

    async def test_start_get_and_turns_upserted(self, store: RecordStore) -> None:
        call = make_call("c1")
        await store.start_call(call)
        assert await store.get("c1") == call
        assert await store.get("nope") is None
        await store.put_turn("c1", make_turn(0))
        await store.put_turn("c1", make_turn(2))
        await store.put_turn("c1", make_turn(1))
        barged = make_turn(1, barged_in=True, heard_ms=850)
        await store.put_turn("c1", barged)  # the same turn again replaces it
        got = await store.get("c1")
        assert got is not None
        assert got.turns == (make_turn(0), barged, make_turn(2))
        assert got.outcome is Outcome.IN_PROGRESS and got.ended_at is None

    async def test_end_call(self, store: RecordStore) -> None:
        await store.start_call(make_call("c1"))
        pauses = (RecordingPause(start_ms=4000.0, end_ms=9000.5, reason="sensitive slot "
                                 "card_last4"),
                  RecordingPause(start_ms=12000.0, end_ms=None, reason="sensitive slot pin"))
        ended = NOW + timedelta(seconds=63, microseconds=7)
        await store.end_call("c1", ended_at=ended, outcome=Outcome.TRANSFERRED,
                             end_reason="transfer to agent", recording="/rec/c1.wav",
                             recording_pauses=pauses)
        assert await store.get("c1") == make_call(
            "c1", ended_at=ended, outcome=Outcome.TRANSFERRED, end_reason="transfer to agent",
            recording="/rec/c1.wav", recording_pauses=pauses)

    async def test_masked_data_and_numbers_are_stored_exactly_as_given(
            self, store: RecordStore) -> None:
        call = replace(TRICKY_CALL, turns=(make_turn(0),))
        await store.start_call(call)  # turns given with the call are stored too
        await store.put_turn(call.call_id, TRICKY_TURN)
        got = await store.get(call.call_id)
        assert got == replace(call, turns=(make_turn(0), TRICKY_TURN))
        assert got.started_at.tzinfo is UTC
        assert got.to_json() == replace(call, turns=(make_turn(0), TRICKY_TURN)).to_json()

    async def test_errors_are_record_store_errors_and_the_store_goes_on(
            self, store: RecordStore) -> None:
        await store.start_call(make_call("c1"))
        with pytest.raises(RecordStoreError):
            await store.start_call(make_call("c1"))
        with pytest.raises(RecordStoreError):
            await store.put_turn("unknown", make_turn(0))
        with pytest.raises(RecordStoreError, match="unknown"):
            await store.end_call("unknown", ended_at=NOW, outcome=Outcome.COMPLETED)
        await store.put_turn("c1", make_turn(0))
        got = await store.get("c1")
        assert got is not None and got.turns == (make_turn(0),)

    async def test_list_calls_newest_first_with_filters(self, store: RecordStore) -> None:
        calls = {
            "a": make_call("a", started_at=NOW - timedelta(hours=3), outcome=Outcome.COMPLETED,
                           ended_at=NOW - timedelta(hours=2, minutes=58)),
            "b": make_call("b", started_at=NOW - timedelta(hours=2), outcome=Outcome.FAILED,
                           ended_at=NOW - timedelta(hours=1, minutes=59)),
            "c": make_call("c", started_at=NOW - timedelta(hours=1), outcome=Outcome.COMPLETED,
                           ended_at=NOW - timedelta(minutes=59),
                           turns=(make_turn(0), make_turn(1))),
            "d": make_call("d", started_at=NOW),
        }
        for call in calls.values():
            await store.start_call(call)

        async def ids(**query: Any) -> list[str]:
            return [r.call_id for r in await store.list_calls(**query)]

        assert await store.list_calls() == [calls[k] for k in "dcba"]
        assert await ids(since=NOW - timedelta(hours=2)) == ["d", "c", "b"]
        assert await ids(outcome=Outcome.COMPLETED) == ["c", "a"]
        assert await ids(outcome=Outcome.COMPLETED, since=NOW - timedelta(hours=2)) == ["c"]
        assert await ids(limit=2) == ["d", "c"]
        assert await ids(limit=0) == []
        light = await store.list_calls(with_turns=False)
        assert [r.turns for r in light] == [()] * 4
        assert light[1] == replace(calls["c"], turns=())

    async def test_iter_calls_oldest_first_with_turns_in_pages(
            self, store: RecordStore) -> None:
        # 450 calls, three per second (ties on started_at), stored in random order:
        # more than two pages of iter_calls.
        calls = [make_call(f"call-{i:04d}", started_at=NOW + timedelta(seconds=i // 3),
                           turns=(make_turn(0),) if i % 50 == 0 else ())
                 for i in range(450)]
        for call in random.Random(7).sample(calls, len(calls)):
            await store.start_call(call)
        assert [r async for r in store.iter_calls()] == calls
        since = NOW + timedelta(seconds=100)
        assert [r async for r in store.iter_calls(since=since)] == calls[300:]
        assert [r async for r in store.iter_calls(since=NOW + timedelta(days=1))] == []

    async def test_delete_ended_before_keeps_calls_in_progress(
            self, store: RecordStore) -> None:
        old = make_call("old", started_at=NOW - timedelta(days=30), turns=(make_turn(0),))
        await store.start_call(old)
        await store.end_call("old", ended_at=NOW - timedelta(days=10),
                             outcome=Outcome.COMPLETED)
        await store.start_call(make_call("recent", started_at=NOW - timedelta(days=2)))
        await store.end_call("recent", ended_at=NOW - timedelta(days=1),
                             outcome=Outcome.CALLER_HUNG_UP)
        await store.start_call(make_call("running", started_at=NOW - timedelta(days=40)))
        assert await store.delete_ended_before(NOW - timedelta(days=5)) == 1
        assert await store.get("old") is None
        assert {r.call_id for r in await store.list_calls()} == {"recent", "running"}
        await store.start_call(make_call("old"))  # its turns went with it
        got = await store.get("old")
        assert got is not None and got.turns == ()
        assert await store.delete_ended_before(NOW - timedelta(days=5)) == 0

    async def test_recover_fails_calls_left_in_progress(self, store: RecordStore) -> None:
        await store.start_call(make_call("done"))
        await store.end_call("done", ended_at=NOW + timedelta(minutes=1),
                             outcome=Outcome.COMPLETED)
        await store.start_call(make_call("x", turns=(make_turn(0),)))
        await store.start_call(make_call("y"))
        later = NOW + timedelta(hours=1)
        assert await store.recover(now=later) == 2
        got = await store.get("x")
        assert got == make_call("x", turns=(make_turn(0),), outcome=Outcome.FAILED,
                                end_reason=RECOVER_REASON, ended_at=later)
        done = await store.get("done")
        assert done is not None and done.outcome is Outcome.COMPLETED
        assert await store.recover(now=later) == 0

    async def test_reopened_store_has_the_records(self, store: RecordStore,
                                                  store_target: StoreTarget) -> None:
        await store.start_call(make_call("c1", turns=(make_turn(0),)))
        await store.close()
        with pytest.raises(RecordStoreError, match="closed"):
            await store.get("c1")
        again = open_store(store_target.target, data_dir=store_target.data_dir)
        try:
            assert await again.get("c1") == make_call("c1", turns=(make_turn(0),))
        finally:
            await again.close()

    async def test_a_turn_written_before_a_crash_is_there_after(
            self, store: RecordStore, store_target: StoreTarget) -> None:
        call = make_call("crash", provider="vonage")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, store_target.target, str(store_target.data_dir),
            json.dumps(call.to_json()), json.dumps(TRICKY_TURN.to_json()),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
        except TimeoutError:
            line = b""
        if line != b"written\n":
            proc.kill()
            errors = await proc.stderr.read()
            await proc.wait()
            pytest.fail(f"the writing child failed:\n{errors.decode(errors='replace')}")
        os.kill(proc.pid, signal.SIGKILL)  # mid-call: no close, no clean shutdown
        assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
        assert await store.get("crash") == replace(call, turns=(TRICKY_TURN,))
        assert await store.recover(now=NOW + timedelta(minutes=5)) == 1
        got = await store.get("crash")
        assert got is not None and got.outcome is Outcome.FAILED


class TestSqliteStore(StoreContract):
    @pytest.fixture(params=["sqlite", "sqlite-url"])
    def store_target(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
        data_dir = tmp_path / "data"
        if request.param == "sqlite":
            return StoreTarget("sqlite", data_dir)
        return StoreTarget(f"sqlite://{tmp_path / 'elsewhere' / 'records.sqlite3'}", data_dir)


# -- SQLite only ---------------------------------------------------------------------


def test_open_store_targets(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=tmp_path)
    assert isinstance(store, SqliteRecordStore)
    assert store.path == tmp_path / "calls.sqlite3"
    assert not store.path.exists()  # nothing is opened before the first call
    store = open_store(" sqlite:///var/lib/voicebot/c.sqlite3", data_dir=tmp_path)
    assert isinstance(store, SqliteRecordStore)
    assert store.path == Path("/var/lib/voicebot/c.sqlite3")
    pg = open_store("postgresql://voicebot:hunter2@db.example:5432/calls", data_dir=tmp_path)
    assert type(pg).__name__ == "PostgresRecordStore"
    assert "hunter2" not in pg.where  # type: ignore[attr-defined]
    assert type(open_store("postgres://db/x", data_dir=tmp_path)).__name__ == (
        "PostgresRecordStore")
    with pytest.raises(ConfigError, match="absolute"):
        open_store("sqlite://relative.sqlite3", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown store 'mysql'") as error:
        open_store("mysql://root:hunter2@db/x", data_dir=tmp_path)
    assert "hunter2" not in str(error.value)
    with pytest.raises(ConfigError, match="postgresql://"):
        open_store("memory", data_dir=tmp_path)


async def test_sqlite_settings_and_its_one_thread(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "calls.sqlite3")
    try:
        def settings(conn: sqlite3.Connection) -> tuple[Any, ...]:
            return (threading.current_thread().name,
                    *(conn.execute(f"PRAGMA {name}").fetchone()[0]
                      for name in ("journal_mode", "synchronous", "foreign_keys")))

        name, journal, synchronous, foreign_keys = await store._run(settings)
        assert name.startswith("records") and name != threading.current_thread().name
        assert (journal, synchronous, foreign_keys) == ("wal", 1, 1)  # 1: NORMAL
        again = await store._run(settings)
        assert again[0] == name
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "calls.sqlite3") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"calls", "turns", "calls_started_at", "calls_ended_at",
                "calls_outcome"} <= tables
        conn.execute("UPDATE schema_version SET version = 99")
    newer = SqliteRecordStore(tmp_path / "calls.sqlite3")
    with pytest.raises(RecordStoreError, match="schema 99"):
        await newer.get("x")
    await newer.close()


async def test_backup_is_a_consistent_standalone_copy(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "calls.sqlite3")
    try:
        for i in range(5):
            await store.start_call(make_call(f"c{i}", turns=(make_turn(0), TRICKY_TURN)))
        target = tmp_path / "backups" / "calls-backup.sqlite3"
        await store.backup(target)
        await store.start_call(make_call("after"))  # the store goes on
    finally:
        await store.close()
    assert sorted(p.name for p in target.parent.iterdir()) == ["calls-backup.sqlite3"]
    copy = open_store(f"sqlite://{target}", data_dir=tmp_path)
    try:
        assert [r.call_id for r in await copy.list_calls()] == [f"c{i}" for i in range(4, -1, -1)]
        assert await copy.get("c3") == make_call("c3", turns=(make_turn(0), TRICKY_TURN))
    finally:
        await copy.close()
