"""The call-record model (server/records/model.py): exact JSON round trip, UTC times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.records.model import CallRecord, Outcome, RecordingPause, TurnEntry, parse_time

__all__: list[str] = []

_floats = st.floats(allow_nan=False, allow_infinity=False)
_opt_floats = st.none() | _floats
_opt_text = st.none() | st.text(max_size=20)
_zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
_times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                      timezones=_zones)

turns = st.builds(
    TurnEntry, turn=st.integers(min_value=0, max_value=10_000), at_ms=_floats,
    source=st.sampled_from(["greeting", "speech", "dtmf", "no_input"]), heard=st.text(),
    intent=_opt_text, confidence=_floats,
    slots=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    reply=st.text(), state=st.text(max_size=20), barged_in=st.booleans(),
    heard_ms=st.none() | st.integers(min_value=0, max_value=10**7), dtmf=_opt_text,
    latency_ms=_opt_floats,
    parts_ms=st.dictionaries(st.text(max_size=16), _floats, max_size=5))
pauses = st.builds(RecordingPause, start_ms=_floats, end_ms=_opt_floats, reason=st.text())
records = st.builds(
    CallRecord, call_id=st.text(min_size=1, max_size=40), provider=st.text(max_size=12),
    provider_call_id=_opt_text, stream_id=_opt_text, caller=_opt_text, callee=_opt_text,
    scenario=st.text(max_size=20), started_at=_times, ended_at=st.none() | _times,
    outcome=st.sampled_from(Outcome), end_reason=_opt_text, recording=_opt_text,
    recording_pauses=st.lists(pauses, max_size=3).map(tuple),
    turns=st.lists(turns, max_size=4).map(tuple))


@settings(max_examples=200, deadline=None)
@given(records)
def test_json_round_trip_is_exact(record: CallRecord) -> None:
    data = record.to_json()
    text = json.dumps(data, ensure_ascii=False)  # plain JSON: nothing but dicts/lists/scalars
    back = CallRecord.from_json(json.loads(text))
    assert back == record
    assert back.to_json() == data
    assert back.started_at.tzinfo is UTC
    assert back.started_at.utcoffset() == record.started_at.utcoffset() == timedelta(0)


def _record(**changes: object) -> CallRecord:
    base: dict[str, object] = {"call_id": "c1", "provider": "twilio", "scenario": "bank_card",
                               "started_at": datetime(2026, 12, 1, 8, 0, tzinfo=UTC)}
    return CallRecord(**{**base, **changes})  # type: ignore[arg-type]


def test_times_are_utc_and_naive_times_are_refused() -> None:
    paris = timezone(timedelta(hours=1))
    record = _record(started_at=datetime(2026, 12, 1, 9, 0, 0, 250, tzinfo=paris),
                     ended_at=datetime(2026, 12, 1, 9, 1, 30, 250, tzinfo=paris))
    assert record.started_at == datetime(2026, 12, 1, 8, 0, 0, 250, tzinfo=UTC)
    assert record.started_at.tzinfo is UTC
    assert record.duration_s == 90.0
    assert record.to_json()["started_at"] == "2026-12-01T08:00:00.000250+00:00"
    with pytest.raises(ValueError, match="naive"):
        _record(started_at=datetime(2026, 12, 1, 8, 0))
    with pytest.raises(ValueError, match="naive"):
        parse_time("2026-12-01T08:00:00")


def test_defaults_outcome_values_and_json_shape() -> None:
    record = _record()
    assert record.outcome is Outcome.IN_PROGRESS
    assert record.duration_s is None
    assert [o.value for o in Outcome] == ["in_progress", "completed", "transferred",
                                          "caller_hung_up", "failed"]
    turn = TurnEntry(turn=0, at_ms=0.0, source="greeting", heard="", intent=None,
                     confidence=1.0, slots={}, reply="Hello", state="start", latency_ms=None,
                     parts_ms={"tts_first_audio": 80.5})
    data = _record(turns=[turn], recording_pauses=[
        RecordingPause(start_ms=1000.0, end_ms=None, reason="sensitive slot card_last4")],
    ).to_json()
    assert isinstance(data["turns"], list) and isinstance(data["recording_pauses"], list)
    assert data["turns"][0]["parts_ms"] == {"tts_first_audio": 80.5}
    assert data["outcome"] == "in_progress"
    assert json.loads(json.dumps(data)) == data


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError, match="turn"):
        TurnEntry(turn=-1, at_ms=0.0, source="speech", heard="", intent=None, confidence=0.0,
                  slots={}, reply="", state="s", latency_ms=None, parts_ms={})
    data = _record().to_json()
    with pytest.raises(ValueError):
        CallRecord.from_json({**data, "outcome": "exploded"})
    with pytest.raises(KeyError):
        CallRecord.from_json({k: v for k, v in data.items() if k != "scenario"})


def test_records_are_frozen() -> None:
    record = _record()
    with pytest.raises(AttributeError):
        record.call_id = "c2"  # type: ignore[misc]
