"""``voicebot calls list|show|export|backup|prune`` (server/calls_cli.py) on a real
SQLite store."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server import calls_cli
from server.records import CallRecord, Outcome, RecordingPause, open_store
from tests.unit.test_records_sqlite import NOW, TRICKY_TURN, make_call, make_turn
from voicebot.errors import ConfigError

__all__: list[str] = []

CALLS = [
    make_call("old", started_at=NOW - timedelta(days=40), ended_at=NOW - timedelta(days=40),
              outcome=Outcome.COMPLETED),
    make_call("a1", started_at=NOW - timedelta(hours=30),
              ended_at=NOW - timedelta(hours=30) + timedelta(seconds=42.5),
              outcome=Outcome.COMPLETED, turns=(make_turn(0), make_turn(1))),
    make_call("b2", started_at=NOW - timedelta(hours=2),
              ended_at=NOW - timedelta(hours=2) + timedelta(minutes=3, seconds=5),
              outcome=Outcome.TRANSFERRED, end_reason="agent", recording="/rec/b2.wav",
              recording_pauses=(RecordingPause(start_ms=5000.0, end_ms=None,
                                               reason="sensitive slot card_last4"),),
              turns=(make_turn(0), make_turn(1), TRICKY_TURN)),
    make_call("live\x1b[2J", started_at=NOW - timedelta(minutes=1)),
]


def _fill(data_dir: Path, calls: list[CallRecord]) -> None:
    async def fill() -> None:
        store = open_store("sqlite", data_dir=data_dir)
        for call in calls:
            await store.start_call(call)
        await store.close()

    asyncio.run(fill())


def _cli(data_dir: Path, *argv: str, code: int = 0,
         target: str = "sqlite") -> tuple[str, str]:
    parser = argparse.ArgumentParser()
    calls_cli.register(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    args = parser.parse_args(["calls", *argv])
    assert calls_cli.run(args, target=target, data_dir=data_dir, stdout=out, stderr=err,
                         now=NOW) == code, err.getvalue()
    return out.getvalue(), err.getvalue()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _fill(tmp_path, CALLS)
    return tmp_path


def test_list(data_dir: Path) -> None:
    out, err = _cli(data_dir, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STARTED", "(UTC)", "DURATION", "OUTCOME", "SCENARIO",
                                "TURNS"]
    assert [line.split()[0] for line in lines[1:]] == ["live\\x1b[2J", "b2", "a1", "old"]
    assert lines[2].split()[1:] == ["2026-12-01", "10:00:00", "3m05s", "transferred",
                                    "bank_card", "3"]
    assert lines[3].split()[3:] == ["42.5s", "completed", "bank_card", "2"]
    assert lines[1].split()[3:5] == ["-", "in_progress"]
    assert "\x1b" not in out and err == "4 call(s)\n"
    assert [ln.split()[0] for ln in _cli(data_dir, "list", "--since", "24h")[0].splitlines()[1:]
            ] == ["live\\x1b[2J", "b2"]
    assert [ln.split()[0] for ln in _cli(data_dir, "list", "--since", "2026-11-30",
                                         "--outcome", "completed")[0].splitlines()[1:]
            ] == ["a1"]
    assert len(_cli(data_dir, "list", "--limit", "1")[0].splitlines()) == 2


def test_show(data_dir: Path) -> None:
    out, _ = _cli(data_dir, "show", "b2")
    assert "transferred (agent)" in out
    assert "0.00s - 5.00s" not in out and "5.00s - end: sensitive slot card_last4" in out
    assert "#3" in out and "barged in after 1099511627776 ms" in out
    assert "card_last4=****" in out
    assert "\\x1b[31m" in out and "\x1b" not in out  # stored text cannot drive the terminal
    assert "latency 1235 ms (asr 0, nlu 5" in out
    out, err = _cli(data_dir, "show", "nope", code=1)
    assert out == "" and "no call nope" in err


def test_export_jsonl_round_trips(data_dir: Path, tmp_path: Path) -> None:
    out, err = _cli(data_dir, "export")
    records = [CallRecord.from_json(json.loads(line)) for line in out.splitlines()]
    assert records == CALLS  # oldest first, turns included, exactly as stored
    assert err == "exported 4 call(s)\n"
    target = tmp_path / "since.jsonl"
    _cli(data_dir, "export", "--format", "jsonl", "--since", "2026-11-30",
         "--output", str(target))
    assert [json.loads(line)["call_id"] for line in target.read_text().splitlines()] == [
        "a1", "b2", "live\x1b[2J"]


def test_export_csv_one_row_per_turn(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "calls.csv"
    _cli(data_dir, "export", "--format", "csv", "--output", str(target))
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(calls_cli.CSV_COLUMNS)
    assert [(r["call_id"], r["turn"]) for r in rows] == [
        ("old", ""), ("a1", "0"), ("a1", "1"), ("b2", "0"), ("b2", "1"), ("b2", "3"),
        ("live\x1b[2J", "")]
    tricky = rows[5]
    assert tricky["reply"] == TRICKY_TURN.reply and tricky["heard"] == TRICKY_TURN.heard
    assert json.loads(tricky["slots"]) == TRICKY_TURN.slots
    assert json.loads(tricky["parts_ms"]) == TRICKY_TURN.parts_ms
    assert float(tricky["latency_ms"]) == TRICKY_TURN.latency_ms
    assert tricky["outcome"] == "transferred" and tricky["started_at"].startswith("2026-12-01T10")
    assert json.loads(tricky["recording_pauses"]) == [
        {"start_ms": 5000.0, "end_ms": None, "reason": "sensitive slot card_last4"}]


def test_backup_and_prune(data_dir: Path, tmp_path: Path) -> None:
    backup = tmp_path / "copy" / "calls.sqlite3"
    _, err = _cli(data_dir, "backup", str(backup))
    assert "backed up" in err and backup.is_file()
    out, _ = _cli(data_dir, "prune", "--older-than-days", "30")
    assert out == "deleted 1 call(s) that ended before 2026-11-01 12:00:00 UTC\n"
    assert "old" not in _cli(data_dir, "list")[0].split()
    copy, _ = _cli(data_dir, "list", target=f"sqlite://{backup}")
    assert "old" in copy.split()  # the backup was taken before the prune
    out, _ = _cli(data_dir, "prune", "--older-than-days", "0")
    assert out.startswith("deleted 2 call(s)")  # the live call is kept
    with pytest.raises(ConfigError, match="0 or more"):
        _cli(data_dir, "prune", "--older-than-days", "-1")


def test_postgres_backup_says_pg_dump(tmp_path: Path) -> None:
    out, err = _cli(tmp_path, "backup", "dump.sql", code=2,
                    target="postgresql://voicebot:hunter2@db.example/calls")
    assert out == ""
    assert 'pg_dump "postgresql://voicebot:***@db.example/calls" > dump.sql' in err
    assert "hunter2" not in err


def test_missing_store_records_off_and_bad_since(tmp_path: Path) -> None:
    _, err = _cli(tmp_path, "list", code=2, target="none")
    assert "records are off" in err
    _, err = _cli(tmp_path / "empty", "list", code=1)
    assert "does not exist" in err
    assert not (tmp_path / "empty").exists()  # reading made no store
    _fill(tmp_path, CALLS[:1])
    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        _cli(tmp_path, "list", "--since", "yesterday")


def test_parse_since() -> None:
    assert calls_cli.parse_since("24h", now=NOW) == NOW - timedelta(hours=24)
    assert calls_cli.parse_since("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert calls_cli.parse_since("7d", now=NOW) == NOW - timedelta(days=7)
    assert calls_cli.parse_since("2026-12-01", now=NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert calls_cli.parse_since("2026-12-01T10:00+02:00", now=NOW) == datetime(
        2026, 12, 1, 8, tzinfo=UTC)


@dataclass(frozen=True)
class _Config:
    records: str
    data_dir: Path


def test_run_from_config_and_overrides(data_dir: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    calls_cli.register(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    args = parser.parse_args(["calls", "list"])
    assert calls_cli.run_from_config(args, _Config("sqlite", data_dir), stdout=out,
                                     stderr=io.StringIO()) == 0
    assert "b2" in out.getvalue()
    other = tmp_path / "other"
    _fill(other, [replace(CALLS[1], call_id="zz")])
    out = io.StringIO()
    args = parser.parse_args(["calls", "list", "--data-dir", str(other)])
    assert calls_cli.run_from_config(args, _Config("sqlite", data_dir), stdout=out,
                                     stderr=io.StringIO()) == 0
    assert "zz" in out.getvalue() and "b2" not in out.getvalue()
