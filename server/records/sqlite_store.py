"""Call records in one SQLite file (``records: sqlite``).

The file is in WAL mode with ``synchronous=NORMAL``: a committed write survives the
process being killed (SIGKILL included); a power cut may lose the last few commits.
All SQLite work runs on one thread the store owns (``records``); the async methods
await it, so the event loop never waits on the disk. Each write is one transaction,
committed before its await returns. Another process (``voicebot calls ...``) may read
and write the same file meanwhile.

Times are stored as ISO-8601 UTC text with microseconds (one fixed format, so text
order is time order); ``slots``, ``parts_ms`` and ``recording_pauses`` as JSON text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .model import CallRecord, Outcome, RecordingPause, TurnEntry, utc
from .store import (
    CALL_COLUMNS,
    RECOVER_REASON,
    SCHEMA_VERSION,
    TURN_COLUMNS,
    RecordStoreError,
)

__all__ = ["SqliteRecordStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_PAGE = 200
_IN_CHUNK = 500  # ids per "IN (...)" (SQLite allows at least 999 parameters)
_CALLS = ", ".join(CALL_COLUMNS)
_TURNS = ", ".join(TURN_COLUMNS)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_call_id TEXT,
    stream_id TEXT,
    caller TEXT,
    callee TEXT,
    scenario TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    end_reason TEXT,
    recording TEXT,
    recording_pauses TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_ended_at ON calls (ended_at);
CREATE INDEX IF NOT EXISTS calls_outcome ON calls (outcome);
CREATE TABLE IF NOT EXISTS turns (
    call_id TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    at_ms REAL NOT NULL,
    source TEXT NOT NULL,
    heard TEXT NOT NULL,
    intent TEXT,
    confidence REAL NOT NULL,
    slots TEXT NOT NULL,
    reply TEXT NOT NULL,
    state TEXT NOT NULL,
    barged_in INTEGER NOT NULL,
    heard_ms INTEGER,
    dtmf TEXT,
    latency_ms REAL,
    parts_ms TEXT NOT NULL,
    PRIMARY KEY (call_id, turn)
);
"""

_INSERT_CALL = f"INSERT INTO calls ({_CALLS}) VALUES ({', '.join('?' * len(CALL_COLUMNS))})"
_UPSERT_TURN = (
    f"INSERT INTO turns (call_id, {_TURNS}) VALUES ({', '.join('?' * (len(TURN_COLUMNS) + 1))})"
    " ON CONFLICT (call_id, turn) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TURN_COLUMNS if c != "turn"))


def _ts(value: datetime) -> str:
    return utc(value).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _call_row(record: CallRecord) -> tuple[Any, ...]:
    data = record.to_json()
    data["recording_pauses"] = _json(data["recording_pauses"])
    return tuple(data[c] for c in CALL_COLUMNS)


def _turn_row(call_id: str, turn: TurnEntry) -> tuple[Any, ...]:
    data = turn.to_json()
    data["slots"], data["parts_ms"] = _json(data["slots"]), _json(data["parts_ms"])
    data["barged_in"] = int(turn.barged_in)
    return (call_id, *(data[c] for c in TURN_COLUMNS))


def _turn(row: Sequence[Any]) -> TurnEntry:
    data = dict(zip(TURN_COLUMNS, row, strict=True))
    data["slots"], data["parts_ms"] = json.loads(data["slots"]), json.loads(data["parts_ms"])
    return TurnEntry.from_json(data)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already
            conn.execute("ROLLBACK")
        raise


class SqliteRecordStore:
    """:class:`~server.records.store.RecordStore` in the SQLite file ``path`` (created,
    with its folder, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- the records thread --------------------------------------------------------

    async def _run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise RecordStoreError(f"the record store {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, job)

    def _call(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return job(self._conn if self._conn is not None else self._connect())
        except (sqlite3.Error, OSError, OverflowError, ValueError) as exc:
            raise RecordStoreError(f"call records in {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RecordStoreError(f"{self.path}: WAL mode refused (journal mode {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        _log.info("call records: SQLite %s", self.path)
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):  # IMMEDIATE: two processes opening a new file take turns
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)",
                             (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise RecordStoreError(f"{self.path} has call-record schema {version}; this "
                                       f"voicebot knows {SCHEMA_VERSION} (upgrade voicebot)")

    def _turns_of(self, conn: sqlite3.Connection,
                  call_ids: Sequence[str]) -> dict[str, list[TurnEntry]]:
        turns: dict[str, list[TurnEntry]] = {call_id: [] for call_id in call_ids}
        for i in range(0, len(call_ids), _IN_CHUNK):
            chunk = call_ids[i:i + _IN_CHUNK]
            rows = conn.execute(
                f"SELECT call_id, {_TURNS} FROM turns WHERE call_id IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY call_id, turn", chunk)
            for row in rows:
                turns[row[0]].append(_turn(row[1:]))
        return turns

    def _records(self, conn: sqlite3.Connection, rows: list[Sequence[Any]],
                 with_turns: bool) -> list[CallRecord]:
        datas = [dict(zip(CALL_COLUMNS, row, strict=True)) for row in rows]
        turns = self._turns_of(conn, [d["call_id"] for d in datas]) if with_turns else {}
        records = []
        for data in datas:
            data["recording_pauses"] = json.loads(data["recording_pauses"])
            record = CallRecord.from_json(data)
            if with_turns:
                record = _with_turns(record, turns[record.call_id])
            records.append(record)
        return records

    # -- RecordStore ---------------------------------------------------------------

    async def start_call(self, record: CallRecord) -> None:
        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(_INSERT_CALL, _call_row(record))
                conn.executemany(_UPSERT_TURN, [_turn_row(record.call_id, t)
                                                for t in record.turns])

        await self._run(job)

    async def put_turn(self, call_id: str, turn: TurnEntry) -> None:
        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(_UPSERT_TURN, _turn_row(call_id, turn))

        await self._run(job)

    async def end_call(self, call_id: str, *, ended_at: datetime, outcome: Outcome,
                       end_reason: str | None = None, recording: str | None = None,
                       recording_pauses: Sequence[RecordingPause] = ()) -> None:
        pauses = _json([p.to_json() for p in recording_pauses])

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                cursor = conn.execute(
                    "UPDATE calls SET ended_at = ?, outcome = ?, end_reason = ?, "
                    "recording = ?, recording_pauses = ? WHERE call_id = ?",
                    (_ts(ended_at), outcome.value, end_reason, recording, pauses, call_id))
                if cursor.rowcount == 0:
                    raise RecordStoreError(f"end_call: no call {call_id!r} in {self.path}")

        await self._run(job)

    async def get(self, call_id: str) -> CallRecord | None:
        def job(conn: sqlite3.Connection) -> CallRecord | None:
            rows = conn.execute(f"SELECT {_CALLS} FROM calls WHERE call_id = ?",
                                (call_id,)).fetchall()
            records = self._records(conn, rows, True)
            return records[0] if records else None

        return await self._run(job)

    async def list_calls(self, *, since: datetime | None = None,
                         outcome: Outcome | None = None, limit: int = 100,
                         with_turns: bool = True) -> list[CallRecord]:
        where, params = [], []
        if since is not None:
            where.append("started_at >= ?")
            params.append(_ts(since))
        if outcome is not None:
            where.append("outcome = ?")
            params.append(outcome.value)
        sql = (f"SELECT {_CALLS} FROM calls"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY started_at DESC, call_id DESC LIMIT ?")

        def job(conn: sqlite3.Connection) -> list[CallRecord]:
            rows = conn.execute(sql, (*params, max(limit, 0))).fetchall()
            return self._records(conn, rows, with_turns)

        return await self._run(job)

    async def iter_calls(self, *, since: datetime | None = None) -> AsyncIterator[CallRecord]:
        after = (_ts(since), "") if since is not None else ("", "")
        first = True
        while True:
            op = ">=" if first else ">"
            sql = (f"SELECT {_CALLS} FROM calls WHERE (started_at, call_id) {op} (?, ?) "
                   f"ORDER BY started_at, call_id LIMIT {_PAGE}")

            def job(conn: sqlite3.Connection, sql: str = sql,
                    after: tuple[str, str] = after) -> list[CallRecord]:
                return self._records(conn, conn.execute(sql, after).fetchall(), True)

            page = await self._run(job)
            for record in page:
                yield record
            if len(page) < _PAGE:
                return
            first = False
            after = (_ts(page[-1].started_at), page[-1].call_id)

    async def delete_ended_before(self, cutoff: datetime) -> int:
        def job(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                cursor = conn.execute("DELETE FROM calls WHERE ended_at IS NOT NULL "
                                      "AND ended_at < ?", (_ts(cutoff),))
                return cursor.rowcount

        deleted = await self._run(job)
        _log.info("call records: deleted %d call(s) ended before %s", deleted, _ts(cutoff))
        return deleted

    async def recover(self, *, now: datetime) -> int:
        def job(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                cursor = conn.execute(
                    "UPDATE calls SET outcome = ?, end_reason = ?, ended_at = ? "
                    "WHERE outcome = ?", (Outcome.FAILED.value, RECOVER_REASON, _ts(now),
                                          Outcome.IN_PROGRESS.value))
                return cursor.rowcount

        recovered = await self._run(job)
        if recovered:
            _log.warning("call records: %d call(s) left in progress by a stopped server "
                         "marked failed", recovered)
        return recovered

    async def backup(self, path: Path) -> None:
        """A consistent copy of the database in ``path`` (SQLite's online backup API,
        while calls are being written), made in a temporary file then renamed."""
        target = Path(path)

        def job(conn: sqlite3.Connection) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            dest = sqlite3.connect(partial, isolation_level=None)
            try:
                conn.backup(dest)
                dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dest.close()
            os.replace(partial, target)

        await self._run(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def job() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, job)
        finally:
            self._executor.shutdown(wait=False)


def _with_turns(record: CallRecord, turns: list[TurnEntry]) -> CallRecord:
    return replace(record, turns=tuple(turns))
