"""The call-record store: one async interface (:class:`RecordStore`), two backends.

``open_store(target, data_dir=...)`` picks the backend from the ``records:`` setting:

* ``sqlite`` -- the file ``data_dir/calls.sqlite3`` (server/records/sqlite_store.py);
* ``sqlite:///ABSOLUTE/PATH.sqlite3`` -- that file;
* ``postgresql://...`` or ``postgres://...`` -- a PostgreSQL database (libpq URL;
  server/records/postgres_store.py).

Opening does no I/O: the database is opened (and its schema created) by the first
call, so the server's start-up ``await store.recover(now=...)`` is where a bad path or
an unreachable database shows, as a :class:`RecordStoreError`.

Every method is a coroutine (``iter_calls`` is an async generator) meant to be awaited
from the event loop: neither backend blocks it. A write has committed when its await
returns. Errors of the database library are raised as :class:`RecordStoreError` (the
original chained); the messages carry no stored values.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from voicebot.errors import ConfigError, VoicebotError

from .model import CallRecord, Outcome, RecordingPause, TurnEntry

__all__ = [
    "CALL_COLUMNS",
    "RECOVER_REASON",
    "SCHEMA_VERSION",
    "SQLITE_FILE_NAME",
    "TURN_COLUMNS",
    "RecordStore",
    "RecordStoreError",
    "open_store",
    "redact_url",
]

SCHEMA_VERSION = 1
"""The schema both backends create; a database of a newer version is refused."""
SQLITE_FILE_NAME = "calls.sqlite3"
RECOVER_REASON = "server stopped before the call ended"
"""``end_reason`` of the calls :meth:`RecordStore.recover` closes."""

# The columns of both backends' tables, named as the keys of ``to_json()`` (a row read
# back becomes a record through ``CallRecord.from_json`` / ``TurnEntry.from_json``).
CALL_COLUMNS = ("call_id", "provider", "provider_call_id", "stream_id", "caller", "callee",
                "scenario", "started_at", "ended_at", "outcome", "end_reason", "recording",
                "recording_pauses")
TURN_COLUMNS = ("turn", "at_ms", "source", "heard", "intent", "confidence", "slots", "reply",
                "state", "barged_in", "heard_ms", "dtmf", "latency_ms", "parts_ms")


class RecordStoreError(VoicebotError):
    """The record store failed (the database library's error is chained)."""


class RecordStore(Protocol):
    """Where call records are kept. Implementations: ``SqliteRecordStore``,
    ``PostgresRecordStore``."""

    async def start_call(self, record: CallRecord) -> None:
        """Insert the call (normally ``outcome`` in_progress), with any turns it holds;
        a call id already stored is an error."""

    async def put_turn(self, call_id: str, turn: TurnEntry) -> None:
        """Insert or replace turn ``turn.turn`` of the call (a second write of the same
        turn, e.g. now ``barged_in``, replaces the first); an unknown call is an error."""

    async def end_call(self, call_id: str, *, ended_at: datetime, outcome: Outcome,
                       end_reason: str | None = None, recording: str | None = None,
                       recording_pauses: Sequence[RecordingPause] = ()) -> None:
        """Close the call; an unknown call id is an error."""

    async def get(self, call_id: str) -> CallRecord | None:
        """The call with its turns (in turn order), or None."""

    async def list_calls(self, *, since: datetime | None = None,
                         outcome: Outcome | None = None, limit: int = 100,
                         with_turns: bool = True) -> list[CallRecord]:
        """Up to ``limit`` calls started at or after ``since`` (with ``outcome``), newest
        first. ``with_turns=False`` skips reading the turns (faster for a long list):
        the records' ``turns`` are then empty whatever the call had."""

    def iter_calls(self, *, since: datetime | None = None) -> AsyncIterator[CallRecord]:
        """Every call started at or after ``since``, with its turns, oldest first (read
        in pages: an export of any size holds one page in memory)."""

    async def delete_ended_before(self, cutoff: datetime) -> int:
        """Delete the calls that ended before ``cutoff``, with their turns; how many.
        Calls still in progress are kept."""

    async def recover(self, *, now: datetime) -> int:
        """Close every call still ``in_progress`` (the server stopped while it ran) as
        ``failed``, ended ``now``, reason :data:`RECOVER_REASON`; how many. Called at
        server start, before any call is taken."""

    async def close(self) -> None:
        """Release the database; later calls raise :class:`RecordStoreError`."""


def redact_url(url: str) -> str:
    """``url`` with the password (in the user part or a ``password=`` parameter)
    replaced by ``***``."""
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def open_store(target: str, *, data_dir: Path) -> RecordStore:
    """The store ``target`` names (see the module docstring); ``ConfigError`` when it
    names none. Nothing is opened yet."""
    text = target.strip()
    if text == "sqlite":
        from .sqlite_store import SqliteRecordStore

        return SqliteRecordStore(Path(data_dir) / SQLITE_FILE_NAME)
    if text.startswith("sqlite://"):
        path = text[len("sqlite://"):]
        if not path.startswith("/") or path.rstrip("/") == "":
            raise ConfigError(f"records: {text!r} needs an absolute file path, e.g. "
                              "sqlite:///var/lib/voicebot/calls.sqlite3")
        from .sqlite_store import SqliteRecordStore

        return SqliteRecordStore(Path(path))
    if text.startswith(("postgresql://", "postgres://")):
        from .postgres_store import PostgresRecordStore

        return PostgresRecordStore(text)
    scheme = text.split("://", 1)[0] if "://" in text else text
    raise ConfigError(f"records: unknown store {scheme!r}; use 'sqlite' (data_dir/"
                      f"{SQLITE_FILE_NAME}), 'sqlite:///ABSOLUTE/PATH.sqlite3' or "
                      "'postgresql://USER@HOST:PORT/DATABASE'")
