"""Call records in PostgreSQL (``records: postgresql://USER@HOST:PORT/DATABASE``).

One ``psycopg.AsyncConnection`` (autocommit; a write of several statements is one
explicit transaction), used by one method at a time (an ``asyncio.Lock``): the
writer (server/records/writer.py) is the store's only busy client. A connection found
broken is reopened once per call. The tables (the same as SQLite's, with ``jsonb``
and ``timestamptz`` columns) are created on first connection when missing, under an
advisory lock so that two servers starting together do not race.

The URL is the libpq one, so ``PGPASSWORD``/``~/.pgpass``, ``sslmode=`` and the other
libpq settings work; a password inside the URL is never logged. Without a
``connect_timeout`` (in the URL or ``PGCONNECT_TIMEOUT``), connecting gives up after 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from .model import CallRecord, Outcome, RecordingPause, TurnEntry, utc
from .store import (
    CALL_COLUMNS,
    RECOVER_REASON,
    SCHEMA_VERSION,
    TURN_COLUMNS,
    RecordStoreError,
    redact_url,
)

__all__ = ["PostgresRecordStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Conn: TypeAlias = "psycopg.AsyncConnection[tuple[Any, ...]]"

_PAGE = 200
_CONNECT_TIMEOUT_S = 10
_SCHEMA_LOCK = 0x766F_6963_6562_6F74  # "voicebot": pg_advisory_xact_lock key
_CALLS = ", ".join(CALL_COLUMNS)
_TURNS = ", ".join(TURN_COLUMNS)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS calls (
        call_id text PRIMARY KEY,
        provider text NOT NULL,
        provider_call_id text,
        stream_id text,
        caller text,
        callee text,
        scenario text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        outcome text NOT NULL,
        end_reason text,
        recording text,
        recording_pauses jsonb NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at)",
    "CREATE INDEX IF NOT EXISTS calls_ended_at ON calls (ended_at)",
    "CREATE INDEX IF NOT EXISTS calls_outcome ON calls (outcome)",
    """CREATE TABLE IF NOT EXISTS turns (
        call_id text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
        turn integer NOT NULL,
        at_ms double precision NOT NULL,
        source text NOT NULL,
        heard text NOT NULL,
        intent text,
        confidence double precision NOT NULL,
        slots jsonb NOT NULL,
        reply text NOT NULL,
        state text NOT NULL,
        barged_in boolean NOT NULL,
        heard_ms bigint,
        dtmf text,
        latency_ms double precision,
        parts_ms jsonb NOT NULL,
        PRIMARY KEY (call_id, turn)
    )""",
)

_INSERT_CALL = f"INSERT INTO calls ({_CALLS}) VALUES ({', '.join(['%s'] * len(CALL_COLUMNS))})"
_UPSERT_TURN = (
    f"INSERT INTO turns (call_id, {_TURNS}) "
    f"VALUES ({', '.join(['%s'] * (len(TURN_COLUMNS) + 1))})"
    " ON CONFLICT (call_id, turn) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TURN_COLUMNS if c != "turn"))


def _call_row(record: CallRecord) -> tuple[Any, ...]:
    data = record.to_json()
    data["started_at"], data["ended_at"] = record.started_at, record.ended_at
    data["recording_pauses"] = Jsonb(data["recording_pauses"])
    return tuple(data[c] for c in CALL_COLUMNS)


def _turn_row(call_id: str, turn: TurnEntry) -> tuple[Any, ...]:
    data = turn.to_json()
    data["slots"], data["parts_ms"] = Jsonb(data["slots"]), Jsonb(data["parts_ms"])
    return (call_id, *(data[c] for c in TURN_COLUMNS))


def _describe(exc: psycopg.Error) -> str:
    """The error without its DETAIL lines (which may quote a stored value)."""
    primary = exc.diag.message_primary
    return f"{type(exc).__name__}: {primary}" if primary else str(exc)


def _call_data(row: Sequence[Any]) -> dict[str, Any]:
    data = dict(zip(CALL_COLUMNS, row, strict=True))
    for key in ("started_at", "ended_at"):
        if data[key] is not None:
            data[key] = utc(data[key]).isoformat()
    return data


class PostgresRecordStore:
    """:class:`~server.records.store.RecordStore` in the PostgreSQL database ``url``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = redact_url(url)
        """The URL with any password hidden: for messages."""
        self._conn: _Conn | None = None
        self._lock = asyncio.Lock()
        self._schema_ready = False
        self._closed = False

    async def _connection(self) -> _Conn:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conninfo = self._url
        if ("connect_timeout" not in conninfo_to_dict(conninfo)
                and not os.environ.get("PGCONNECT_TIMEOUT")):
            # libpq would wait forever for a host that does not answer
            conninfo = make_conninfo(conninfo, connect_timeout=_CONNECT_TIMEOUT_S)
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        try:
            if not self._schema_ready:
                await self._migrate(conn)
                self._schema_ready = True
        except BaseException:
            await conn.close()
            raise
        _log.info("call records: PostgreSQL %s", self.where)
        self._conn = conn
        return conn

    async def _migrate(self, conn: _Conn) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                await conn.execute(statement)
            cursor = await conn.execute("SELECT max(version) FROM schema_version")
            row = await cursor.fetchone()
            version = row[0] if row else None
            if version is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)",
                                   (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise RecordStoreError(f"{self.where} has call-record schema {version}; "
                                       f"this voicebot knows {SCHEMA_VERSION}")

    async def _run(self, job: Callable[[_Conn], Awaitable[_T]]) -> _T:
        async with self._lock:
            if self._closed:
                raise RecordStoreError(f"the record store {self.where} is closed")
            for attempt in (1, 2):
                try:
                    return await job(await self._connection())
                except psycopg.OperationalError as exc:
                    conn = self._conn
                    if conn is not None and (conn.broken or conn.closed):
                        self._conn = None
                        await conn.close()
                        if attempt == 1:
                            _log.warning("call records: PostgreSQL connection lost (%s); "
                                         "reconnecting", type(exc).__name__)
                            continue
                    raise self._error(exc) from exc
                except psycopg.Error as exc:
                    raise self._error(exc) from exc
            raise AssertionError("unreachable")

    def _error(self, exc: psycopg.Error) -> RecordStoreError:
        return RecordStoreError(f"call records in {self.where}: {_describe(exc)}")

    async def _records(self, conn: _Conn, rows: list[tuple[Any, ...]],
                       with_turns: bool) -> list[CallRecord]:
        records = [CallRecord.from_json(_call_data(row)) for row in rows]
        if not with_turns or not records:
            return records
        turns: dict[str, list[TurnEntry]] = {r.call_id: [] for r in records}
        cursor = await conn.execute(
            f"SELECT call_id, {_TURNS} FROM turns WHERE call_id = ANY(%s) "
            "ORDER BY call_id, turn", (list(turns),))
        for row in await cursor.fetchall():
            turns[row[0]].append(TurnEntry.from_json(dict(zip(TURN_COLUMNS, row[1:],
                                                              strict=True))))
        return [replace(r, turns=tuple(turns[r.call_id])) for r in records]

    # -- RecordStore ---------------------------------------------------------------

    async def start_call(self, record: CallRecord) -> None:
        async def job(conn: _Conn) -> None:
            async with conn.transaction():
                await conn.execute(_INSERT_CALL, _call_row(record))
                if record.turns:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(_UPSERT_TURN, [
                            _turn_row(record.call_id, t) for t in record.turns])

        await self._run(job)

    async def put_turn(self, call_id: str, turn: TurnEntry) -> None:
        async def job(conn: _Conn) -> None:
            await conn.execute(_UPSERT_TURN, _turn_row(call_id, turn))

        await self._run(job)

    async def end_call(self, call_id: str, *, ended_at: datetime, outcome: Outcome,
                       end_reason: str | None = None, recording: str | None = None,
                       recording_pauses: Sequence[RecordingPause] = ()) -> None:
        pauses = Jsonb([p.to_json() for p in recording_pauses])

        async def job(conn: _Conn) -> None:
            cursor = await conn.execute(
                "UPDATE calls SET ended_at = %s, outcome = %s, end_reason = %s, "
                "recording = %s, recording_pauses = %s WHERE call_id = %s",
                (utc(ended_at), outcome.value, end_reason, recording, pauses, call_id))
            if cursor.rowcount == 0:
                raise RecordStoreError(f"end_call: no call {call_id!r} in {self.where}")

        await self._run(job)

    async def get(self, call_id: str) -> CallRecord | None:
        async def job(conn: _Conn) -> CallRecord | None:
            cursor = await conn.execute(f"SELECT {_CALLS} FROM calls WHERE call_id = %s",
                                        (call_id,))
            records = await self._records(conn, await cursor.fetchall(), True)
            return records[0] if records else None

        return await self._run(job)

    async def list_calls(self, *, since: datetime | None = None,
                         outcome: Outcome | None = None, limit: int = 100,
                         with_turns: bool = True) -> list[CallRecord]:
        where: list[str] = ["true"]
        params: list[Any] = []
        if since is not None:
            where.append("started_at >= %s")
            params.append(utc(since))
        if outcome is not None:
            where.append("outcome = %s")
            params.append(outcome.value)
        sql = (f"SELECT {_CALLS} FROM calls WHERE {' AND '.join(where)} "
               "ORDER BY started_at DESC, call_id DESC LIMIT %s")

        async def job(conn: _Conn) -> list[CallRecord]:
            cursor = await conn.execute(sql, (*params, max(limit, 0)))
            return await self._records(conn, await cursor.fetchall(), with_turns)

        return await self._run(job)

    async def iter_calls(self, *, since: datetime | None = None) -> AsyncIterator[CallRecord]:
        params: tuple[Any, ...] = ()
        if since is None:
            where = "true"
        else:
            where, params = "started_at >= %s", (utc(since),)
        while True:
            sql = (f"SELECT {_CALLS} FROM calls WHERE {where} "
                   f"ORDER BY started_at, call_id LIMIT {_PAGE}")

            async def job(conn: _Conn, sql: str = sql,
                          params: tuple[Any, ...] = params) -> list[CallRecord]:
                cursor = await conn.execute(sql, params)
                return await self._records(conn, await cursor.fetchall(), True)

            page = await self._run(job)
            for record in page:
                yield record
            if len(page) < _PAGE:
                return
            where = "(started_at, call_id) > (%s, %s)"
            params = (page[-1].started_at, page[-1].call_id)

    async def delete_ended_before(self, cutoff: datetime) -> int:
        async def job(conn: _Conn) -> int:
            cursor = await conn.execute("DELETE FROM calls WHERE ended_at < %s",
                                        (utc(cutoff),))
            return cursor.rowcount

        deleted = await self._run(job)
        _log.info("call records: deleted %d call(s) ended before %s", deleted,
                  utc(cutoff).isoformat())
        return deleted

    async def recover(self, *, now: datetime) -> int:
        async def job(conn: _Conn) -> int:
            cursor = await conn.execute(
                "UPDATE calls SET outcome = %s, end_reason = %s, ended_at = %s "
                "WHERE outcome = %s",
                (Outcome.FAILED.value, RECOVER_REASON, utc(now), Outcome.IN_PROGRESS.value))
            return cursor.rowcount

        recovered = await self._run(job)
        if recovered:
            _log.warning("call records: %d call(s) left in progress by a stopped server "
                         "marked failed", recovered)
        return recovered

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
