"""server.call_log and server.call_services on a real SQLite store and real WAV files;
server.logsafe's JSON lines with the call id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import wave
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from server.call_log import CallLog, CallLogSinks
from server.call_services import prune_recordings
from server.logsafe import CallIdFilter, JsonFormatter, call_id_var
from server.records import Outcome, RecordWriter, SqliteRecordStore
from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding, encode
from voicebot.commands import BargedIn, CallEnded, CallOutcome, RecordingPause, ReplyStarted

__all__: list[str] = []

READY = p.Ready(call_id="CA123", scenario="bank_card", encoding="mulaw", sample_rate_hz=8000)
WINDOW = np.full(512, 3000, dtype=np.int16)  # 32 ms of caller "speech" at 16 kHz


def _reply(reply: int, **fields: object) -> ReplyStarted:
    base: dict[str, object] = dict(reply=reply, turn=reply - 1, transcript="", intent=None,
                                   confidence=0.0, state="s", text="Hello.")
    return ReplyStarted(**{**base, **fields})  # type: ignore[arg-type]


async def test_a_call_log_writes_record_and_recording(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "calls.sqlite3")
    writer = RecordWriter(store)
    writer.start()
    io_thread = ThreadPoolExecutor(max_workers=1)
    clock = iter(datetime(2026, 12, 2, 9, 0, tzinfo=UTC) + timedelta(seconds=s)
                 for s in range(100))
    sinks = CallLogSinks(records=writer, recordings_dir=tmp_path / "rec",
                         recordings_io=io_thread, now=lambda: next(clock))
    log = CallLog(sinks, call_id="c1", provider="twilio")
    log.started(READY, metadata={"from": "+15550100", "to": "+15550199", "streamSid": "MZ1"})
    for _ in range(10):  # 200 ms of bot audio, in 20 ms frames
        log.bot_audio(encode(np.full(160, 8000, dtype=np.int16), AudioEncoding.MULAW))
    log.reply_started(_reply(1, source="greeting"), at_ms=0, latency_ms=300,
                      parts_ms={"tts_first_audio": 120})
    for _ in range(10):
        log.caller_audio(WINDOW, 0.0)
    log.pause(RecordingPause(paused=True, reason="sensitive slot card_last4"))
    for _ in range(10):
        log.caller_audio(WINDOW, 0.0)
    log.pause(RecordingPause(paused=False))
    log.reply_started(_reply(2, transcript="****", intent="dtmf", confidence=1.0,
                             source="dtmf", slots={"card_last4": "****"}, text="Ok ****."),
                      at_ms=640, latency_ms=500, parts_ms={"nlu": 8})
    log.barged_in(BargedIn(2, 0, 120, "Ok ****."))
    log.ended(CallEnded(CallOutcome.TRANSFERRED, "card_services_agents"))
    log.ended(CallEnded(CallOutcome.CALLER_HUNG_UP, "later"))  # the first word stands
    await log.close(at_ms=640)
    await writer.close()
    io_thread.shutdown()

    store = SqliteRecordStore(tmp_path / "calls.sqlite3")
    record = await store.get("c1")
    await store.close()
    assert record is not None
    assert (record.provider, record.provider_call_id, record.stream_id) == ("twilio", "CA123",
                                                                          "MZ1")
    assert (record.caller, record.callee, record.scenario) == ("+15550100", "+15550199",
                                                              "bank_card")
    assert (record.outcome, record.end_reason) == (Outcome.TRANSFERRED, "card_services_agents")
    greeting, answer = record.turns
    assert (greeting.turn, greeting.source, greeting.parts_ms) == (0, "greeting",
                                                                   {"tts_first_audio": 120})
    assert (answer.turn, answer.dtmf, answer.heard, answer.slots) == (
        1, "****", "", {"card_last4": "****"})
    assert (answer.barged_in, answer.heard_ms, answer.latency_ms) == (True, 120, 500)
    [pause] = record.recording_pauses
    assert (pause.start_ms, pause.end_ms, pause.reason) == (320, 640,
                                                            "sensitive slot card_last4")
    assert record.recording is not None
    with wave.open(record.recording, "rb") as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert len(frames) == 20 * 512
    assert (frames[:5120, 0] == 3000).all() and not frames[5120:].any()
    # the bot's 200 ms at 16 kHz from the call's start, less what soxr (~66 ms of
    # latency, output in bursts) still held at the barge-in, which drops it
    bot = np.flatnonzero(np.abs(frames[:, 1]) > 6000)
    assert 1500 <= len(bot) <= 3200 and bot[0] == 0 and bot[-1] == len(bot) - 1


async def test_without_sinks_it_only_logs(caplog: object) -> None:
    log = CallLog(CallLogSinks(), call_id="c2", provider="native")
    log.started(READY, metadata={})
    log.caller_audio(WINDOW, 0.0)
    log.reply_started(_reply(1), at_ms=0, latency_ms=1, parts_ms={})
    await log.close(at_ms=32)


def test_json_lines_carry_the_call_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("voicebot.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def call() -> None:
        call_id_var.set("abc123")
        await asyncio.create_task(asyncio.sleep(0))  # tasks the call starts inherit it
        logger.info("turn %d: %r", 1, "line\nbreak")

    try:
        logger.info("outside")
        asyncio.run(call())
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["call_id"], first["message"], first["level"]) == ("-", "outside", "INFO")
    assert (second["call_id"], second["message"]) == ("abc123", "turn 1: 'line\\nbreak'")
    assert second["time"].endswith("Z") and second["logger"] == "voicebot.test_json"


def test_prune_recordings_deletes_whole_old_days(tmp_path: Path) -> None:
    for day in ("2026/11/01", "2026/11/30", "2026/12/01"):
        (tmp_path / day).mkdir(parents=True)
        (tmp_path / day / "c.wav").write_bytes(b"x")
    (tmp_path / "2026" / "notes").mkdir()
    removed = prune_recordings(tmp_path, datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert removed == 2
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.wav")] == [
        "2026/12/01/c.wav"]


def test_a_scenario_may_turn_recording_off(tmp_path: Path) -> None:
    io_thread = ThreadPoolExecutor(max_workers=1)
    sinks = CallLogSinks(recordings_dir=tmp_path, recordings_io=io_thread,
                         recorded=lambda scenario: scenario != "bank_card")

    async def call() -> None:
        log = CallLog(sinks, call_id="c3", provider="native")
        log.started(READY, metadata={})
        log.caller_audio(WINDOW, 0.0)
        await log.close(at_ms=32)

    asyncio.run(call())
    io_thread.shutdown()
    assert not list(tmp_path.rglob("*.wav"))


def test_the_recording_setting_is_parsed(tmp_path: Path) -> None:
    from voicebot.dialog.loader import load_scenario
    from voicebot.errors import ScenarioError

    text = ("name: s\nintents: {a: {examples: [x]}}\nsettings: {recording: %s}\n"
            "start: s0\nstates:\n  s0: {actions: [{hangup: done}]}\n")
    path = tmp_path / "s.yaml"
    for written, value in (("true", True), ("false", False)):
        path.write_text(text % written)
        assert load_scenario(path).settings.recording is value
    path.write_text(text.replace("settings: {recording: %s}\n", ""))
    assert load_scenario(path).settings.recording is None
    path.write_text(text % "1")
    with pytest.raises(ScenarioError, match="'recording' must be true or false"):
        load_scenario(path)
