"""Durable call records: every call the server handles leaves one.

* :mod:`.model` -- :class:`CallRecord`, :class:`TurnEntry`, :class:`RecordingPause`,
  :class:`Outcome` (``to_json``/``from_json``);
* :mod:`.store` -- the async :class:`RecordStore` interface and :func:`open_store`
  (``sqlite``, ``sqlite:///PATH``, ``postgresql://...``);
* :mod:`.sqlite_store`, :mod:`.postgres_store` -- the backends (psycopg is imported
  only when a PostgreSQL store is opened);
* :mod:`.writer` -- :class:`RecordWriter`, which the audio path submits writes to
  without waiting.

The operator's side is ``voicebot calls ...`` (server/calls_cli.py).
"""

from __future__ import annotations

from .model import CallRecord, Outcome, RecordingPause, TurnEntry
from .sqlite_store import SqliteRecordStore
from .store import RECOVER_REASON, RecordStore, RecordStoreError, open_store
from .writer import RecordWriter

__all__ = [
    "RECOVER_REASON",
    "CallRecord",
    "Outcome",
    "RecordStore",
    "RecordStoreError",
    "RecordWriter",
    "RecordingPause",
    "SqliteRecordStore",
    "TurnEntry",
    "open_store",
]
