"""``voicebot calls``: read, export, back up and prune the call records.

* ``voicebot calls list [--since 2026-12-01 | --since 24h] [--outcome completed]
  [--limit N]`` -- a table, newest first: id, start, duration, outcome, scenario, turns;
* ``voicebot calls show ID`` -- one call, turn by turn;
* ``voicebot calls export [--format jsonl|csv] [--since ...] [--output FILE]`` -- every
  call (oldest first): jsonl, one ``CallRecord.to_json()`` per line; csv, one row per
  turn with the call's columns repeated (a call without turns: one row, turn columns
  empty);
* ``voicebot calls backup FILE`` -- a consistent copy of the SQLite file while the
  server runs (SQLite's online backup); with PostgreSQL, use ``pg_dump``;
* ``voicebot calls prune --older-than-days N`` -- delete the calls that ended more than
  N days ago (the retention the server runs, by hand).

The store is the configuration's ``records:`` (``sqlite``: ``data_dir/calls.sqlite3``;
``sqlite:///PATH``; ``postgresql://...``), or ``--records`` / ``--data-dir``. Stored text
is printed with control characters escaped.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TextIO

from voicebot.errors import ConfigError

from .logsafe import escape_controls
from .records import CallRecord, Outcome, RecordStore, SqliteRecordStore, open_store
from .records.store import CALL_COLUMNS, TURN_COLUMNS, redact_url

__all__ = ["CSV_COLUMNS", "RecordsConfig", "parse_since", "register", "run",
           "run_from_config"]

CSV_COLUMNS = CALL_COLUMNS + TURN_COLUMNS
"""One row per turn: the call's columns, then the turn's (JSON for the mappings)."""
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class RecordsConfig(Protocol):
    """The two settings of ``ServerConfig`` this command reads."""

    @property
    def records(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calls`` and its subcommands to the ``voicebot`` subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    common.add_argument("--records", default=None, metavar="TARGET",
                        help="the store: sqlite, sqlite:///PATH or postgresql://... "
                             "(default: records of the configuration)")
    common.add_argument("--data-dir", type=Path, default=None,
                        help="where records: sqlite keeps calls.sqlite3 (default: data_dir "
                             "of the configuration)")
    since = argparse.ArgumentParser(add_help=False)
    since.add_argument("--since", default=None,
                       help="calls started since a date (2026-12-01), a UTC time "
                            "(2026-12-01T08:00) or an age (90m, 24h, 7d)")

    calls = subparsers.add_parser("calls", help="list, show, export, back up and prune "
                                  "call records")
    sub = calls.add_subparsers(dest="calls_command", required=True)
    listing = sub.add_parser("list", parents=[common, since], help="recent calls, newest first")
    listing.add_argument("--outcome", default=None, choices=[o.value for o in Outcome])
    listing.add_argument("--limit", type=int, default=50, help="most calls shown (default 50)")
    show = sub.add_parser("show", parents=[common], help="one call, turn by turn")
    show.add_argument("call_id", metavar="ID")
    export = sub.add_parser("export", parents=[common, since],
                            help="every call, as JSON lines or CSV")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                        help="jsonl: one record per line (default); csv: one row per turn")
    export.add_argument("--output", type=Path, default=None, help="file (default stdout)")
    backup = sub.add_parser("backup", parents=[common],
                            help="copy the SQLite file while the server runs")
    backup.add_argument("file", type=Path, metavar="FILE")
    prune = sub.add_parser("prune", parents=[common], help="delete calls that ended long ago")
    prune.add_argument("--older-than-days", type=float, required=True, metavar="N",
                       help="delete the calls that ended more than N days ago")


def parse_since(text: str, *, now: datetime) -> datetime:
    """``--since``: an age (``24h``: ``now`` minus 24 hours) or an ISO date/time (UTC
    unless it names its offset)."""
    age = _AGE.match(text)
    if age:
        return now - timedelta(seconds=float(age.group(1)) * _UNITS[age.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected a date (2026-12-01), a UTC time "
                          "(2026-12-01T08:00) or an age (90m, 24h, 7d)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _text(value: object) -> str:
    return "-" if value is None else escape_controls(str(value))


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _duration(record: CallRecord) -> str:
    seconds = record.duration_s
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _table(records: list[CallRecord], out: TextIO) -> None:
    rows = [("ID", "STARTED (UTC)", "DURATION", "OUTCOME", "SCENARIO", "TURNS")]
    rows += [(_text(r.call_id), _time(r.started_at), _duration(r), r.outcome.value,
              _text(r.scenario), str(len(r.turns))) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)


def _show(record: CallRecord, out: TextIO) -> None:
    def line(label: str, value: str) -> None:
        print(f"{label:<12} {value}", file=out)

    line("call", _text(record.call_id))
    line("provider", f"{_text(record.provider)} (call {_text(record.provider_call_id)}, "
                     f"stream {_text(record.stream_id)})")
    line("from / to", f"{_text(record.caller)} -> {_text(record.callee)}")
    line("scenario", _text(record.scenario))
    line("started", f"{_time(record.started_at)} UTC")
    line("ended", f"{_time(record.ended_at)} UTC ({_duration(record)})"
         if record.ended_at else "-")
    line("outcome", record.outcome.value + (f" ({_text(record.end_reason)})"
                                            if record.end_reason else ""))
    line("recording", _text(record.recording))
    for pause in record.recording_pauses:
        end = "end" if pause.end_ms is None else f"{pause.end_ms / 1000:.2f}s"
        line("  paused", f"{pause.start_ms / 1000:.2f}s - {end}: {_text(pause.reason)}")
    print(f"turns ({len(record.turns)})", file=out)
    for t in record.turns:
        heard = f"{_text(t.heard)!r}" if t.heard else "-"
        print(f"  #{t.turn:<3} {t.at_ms / 1000:8.2f}s  {t.source:<8} heard {heard}"
              + (f"  dtmf {_text(t.dtmf)}" if t.dtmf else ""), file=out)
        intent = f"{_text(t.intent)} ({t.confidence:.2f})" if t.intent else "-"
        slots = ", ".join(f"{_text(k)}={_text(v)}" for k, v in t.slots.items())
        print(f"        intent {intent}" + (f"  slots {slots}" if slots else "")
              + f"  -> state {_text(t.state)}", file=out)
        barge = ""
        if t.barged_in:
            heard_ms = "?" if t.heard_ms is None else f"{t.heard_ms} ms"
            barge = f"  [barged in after {heard_ms}]"
        print(f"        bot {_text(t.reply)!r}{barge}", file=out)
        if t.latency_ms is not None:
            parts = ", ".join(f"{_text(k)} {v:.0f}" for k, v in t.parts_ms.items())
            print(f"        latency {t.latency_ms:.0f} ms" + (f" ({parts})" if parts else ""),
                  file=out)


def _csv_rows(record: CallRecord) -> Iterator[list[object]]:
    data = record.to_json()
    data["recording_pauses"] = json.dumps(data["recording_pauses"], ensure_ascii=False)
    call = [data[c] for c in CALL_COLUMNS]
    if not record.turns:
        yield [*call, *[""] * len(TURN_COLUMNS)]
    for turn in data["turns"]:
        turn["slots"] = json.dumps(turn["slots"], ensure_ascii=False)
        turn["parts_ms"] = json.dumps(turn["parts_ms"])
        yield [*call, *(turn[c] for c in TURN_COLUMNS)]


@contextmanager
def _output(path: Path | None, out: TextIO) -> Iterator[TextIO]:
    if path is None:
        yield out
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle


async def _export(store: RecordStore, args: argparse.Namespace, since: datetime | None,
                  out: TextIO, err: TextIO) -> int:
    count = 0
    with _output(args.output, out) as stream:
        writer = csv.writer(stream) if args.format == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        async for record in store.iter_calls(since=since):
            if writer is None:
                stream.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            else:
                writer.writerows(_csv_rows(record))
            count += 1
    print(f"exported {count} call(s)" + (f" to {args.output}" if args.output else ""),
          file=err)
    return 0


async def _dispatch(store: RecordStore, args: argparse.Namespace, now: datetime,
                    out: TextIO, err: TextIO) -> int:
    command = args.calls_command
    since = getattr(args, "since", None)
    since_at = parse_since(since, now=now) if since else None
    if command == "list":
        outcome = Outcome(args.outcome) if args.outcome else None
        records = await store.list_calls(since=since_at, outcome=outcome,
                                         limit=max(args.limit, 0))
        _table(records, out)
        print(f"{len(records)} call(s)", file=err)
        return 0
    if command == "show":
        record = await store.get(args.call_id)
        if record is None:
            print(f"no call {_text(args.call_id)}", file=err)
            return 1
        _show(record, out)
        return 0
    if command == "export":
        return await _export(store, args, since_at, out, err)
    if command == "backup":
        assert isinstance(store, SqliteRecordStore)
        await store.backup(args.file)
        print(f"backed up {store.path} to {args.file}", file=err)
        return 0
    if command == "prune":
        if args.older_than_days < 0:
            raise ConfigError("--older-than-days must be 0 or more")
        cutoff = now - timedelta(days=args.older_than_days)
        deleted = await store.delete_ended_before(cutoff)
        print(f"deleted {deleted} call(s) that ended before {_time(cutoff)} UTC", file=out)
        return 0
    raise AssertionError(f"unknown calls command {command!r}")


async def _run_store(store: RecordStore, args: argparse.Namespace, now: datetime,
                     out: TextIO, err: TextIO) -> int:
    try:
        return await _dispatch(store, args, now, out, err)
    finally:
        await store.close()


def run(args: argparse.Namespace, *, target: str, data_dir: Path,
        stdout: TextIO | None = None, stderr: TextIO | None = None,
        now: datetime | None = None) -> int:
    """Run ``voicebot calls ...`` against the store ``target`` (``records:``)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if target.strip() == "none":
        print("call records are off (records: none); name a store with --records", file=err)
        return 2
    store = open_store(target, data_dir=data_dir)
    if not isinstance(store, SqliteRecordStore):
        if args.calls_command == "backup":
            print("voicebot calls backup copies a SQLite store; for PostgreSQL, run:\n"
                  f'  pg_dump "{redact_url(target.strip())}" > {args.file}\n'
                  "(with the password, if any, in place of ***, or in PGPASSWORD)", file=err)
            return 2
    elif not store.path.exists():
        print(f"no call records: {store.path} does not exist (the server creates it on "
              "its first start)", file=err)
        return 1
    return asyncio.run(_run_store(store, args, now or datetime.now(UTC), out, err))


def run_from_config(args: argparse.Namespace, config: RecordsConfig, *,
                    stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """:func:`run` with the store of ``config`` (``records``, ``data_dir``), unless
    ``--records`` / ``--data-dir`` name another."""
    target = args.records if args.records is not None else config.records
    data_dir = args.data_dir if args.data_dir is not None else config.data_dir
    return run(args, target=target, data_dir=data_dir, stdout=stdout, stderr=stderr)
