"""The services calls leave their traces in, started and stopped with the server.

* **records** (``records:``): the store opened, calls a killed server left open marked
  failed (:meth:`~server.records.store.RecordStore.recover`), a
  :class:`~server.records.writer.RecordWriter` draining in the background, and a
  retention job (``records_retention_days``) every hour;
* **recordings** (``recordings: true``): one thread that writes every call's WAV in
  order; recordings older than the retention are deleted with the records;
* **end-of-call webhook** (``call_webhook:``): a
  :class:`~server.call_webhook.CallEndNotifier` on the server's webhook client;
* ``GET /calls/{id}`` on the admin surface: :func:`call_record_response`.

Shutdown, after the live calls have drained: the retention job stops, webhook
deliveries in flight get ``_NOTIFY_GRACE_S``, queued record writes are flushed, the
recordings thread finishes its files, the webhook client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response

from voicebot.dialog.scenario import Scenario

from .call_log import CallLogSinks
from .call_webhook import CallEndNotifier
from .config import ServerConfig
from .records import RecordStore, RecordWriter, open_store
from .records.store import redact_url
from .webhook import WebhookClient

__all__ = ["CallServices", "call_record_response", "call_services", "prune_recordings"]

log = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0
_NOTIFY_GRACE_S = 10.0
_CALL_PATH = re.compile(r"^/calls/([A-Za-z0-9._:-]{1,128})$")


@dataclass(slots=True)
class CallServices:
    """What :func:`call_services` started (``store`` None: ``records: none``)."""

    sinks: CallLogSinks = field(default_factory=CallLogSinks)
    store: RecordStore | None = None


@contextlib.asynccontextmanager
async def call_services(config: ServerConfig, webhooks: WebhookClient,
                        scenarios: Mapping[str, Scenario]) -> AsyncIterator[CallServices]:
    """Start the records, recordings and end-of-call webhook of ``config``; stop them
    (everything queued written) on the way out.  A scenario's ``settings.recording``
    overrides ``recordings`` for its calls."""
    store: RecordStore | None = None
    writer: RecordWriter | None = None
    notifier: CallEndNotifier | None = None
    io: ThreadPoolExecutor | None = None
    retention: asyncio.Task[None] | None = None
    recordings_dir = config.recordings_dir or config.data_dir / "recordings"
    try:
        if config.records.strip().lower() != "none":
            store = open_store(config.records, data_dir=config.data_dir)
            recovered = await store.recover(now=datetime.now(UTC))
            if recovered:
                log.warning("%d call records were left open by a server that stopped; "
                            "marked failed", recovered)
            writer = RecordWriter(store)
            writer.start()
        wanted = {name: config.recordings if s.settings.recording is None
                  else s.settings.recording for name, s in scenarios.items()}
        if any(wanted.values()):
            recordings_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recordings")
        if config.call_webhook is not None:
            notifier = CallEndNotifier(webhooks, config.call_webhook)
        if config.records_retention_days > 0 and (store is not None or io is not None):
            retention = asyncio.create_task(_retention(
                store, recordings_dir if io is not None else None, io,
                days=config.records_retention_days), name="records-retention")
        log.info("call records: %s; recordings: %s; end-of-call webhook: %s",
                 _describe(config) if store is not None else "off",
                 recordings_dir if io is not None else "off",
                 "on" if notifier is not None else "off")
        yield CallServices(
            sinks=CallLogSinks(records=writer, recordings_dir=recordings_dir if io else None,
                               recordings_io=io, notifier=notifier,
                               recorded=lambda name: wanted.get(name, config.recordings)),
            store=store)
    finally:
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        if notifier is not None:
            await notifier.close(_NOTIFY_GRACE_S)
        if writer is not None:
            await writer.close()  # flushes, then closes the store
        elif store is not None:
            await store.close()
        if io is not None:
            await asyncio.get_running_loop().run_in_executor(None, io.shutdown, True)
        await webhooks.aclose()


def _describe(config: ServerConfig) -> str:
    """The store without a password (``postgresql://user:***@host/db``)."""
    target = config.records.strip()
    if target.lower() == "sqlite":
        return f"sqlite {config.data_dir / 'calls.sqlite3'}"
    return redact_url(target)


async def _retention(store: RecordStore | None, recordings: Path | None,
                     io: ThreadPoolExecutor | None, *, days: float) -> None:
    """Every hour: delete the records of calls that ended ``days`` ago, and the
    recordings of the days before that."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            if store is not None:
                deleted = await store.delete_ended_before(cutoff)
                if deleted:
                    log.info("retention: deleted %d call records older than %.1f days",
                             deleted, days)
            if recordings is not None and io is not None:
                removed = await asyncio.get_running_loop().run_in_executor(
                    io, prune_recordings, recordings, cutoff)
                if removed:
                    log.info("retention: deleted %d days of recordings", removed)
        except Exception:  # the next round tries again
            log.exception("retention run failed")
        await asyncio.sleep(_RETENTION_EVERY_S)


def prune_recordings(root: Path, cutoff: datetime) -> int:
    """Delete the ``root/YYYY/MM/DD`` folders of days wholly before ``cutoff``; how many."""
    removed = 0
    for day in sorted(root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        try:
            date = datetime.strptime("/".join(day.parts[-3:]), "%Y/%m/%d").replace(tzinfo=UTC)
        except ValueError:
            continue
        if date + timedelta(days=1) <= cutoff:
            shutil.rmtree(day)
            removed += 1
    return removed


async def call_record_response(connection: ServerConnection, path: str,
                               store: RecordStore | None) -> Response:
    """``GET /calls/{id}``: the record as JSON (every text already masked), 404 when
    there is none, 503 with ``records: none``."""
    match = _CALL_PATH.match(path)
    if match is None:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "no such call id\n")
    if store is None:
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                  "call records are off (records: none)\n")
    try:
        record = await store.get(match.group(1))
    except Exception:
        log.exception("GET /calls: the store failed")
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "store unavailable\n")
    if record is None:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "no such call\n")
    body = json.dumps(record.to_json()).encode()
    headers = Headers([("Content-Type", "application/json"),
                       ("Content-Length", str(len(body))), ("Connection", "close")])
    return Response(http.HTTPStatus.OK, "OK", headers, body)
