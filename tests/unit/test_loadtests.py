"""The load harness's pure parts: phrasebook, scripts, rows and summaries, /metrics
parsing, the native dialect and the density report."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtests.phrases import PhraseBook, make_script
from loadtests.report import max_density, render
from loadtests.results import CallResult, CsvSink, Sample, percentile, read_rows, summarize
from loadtests.server_metrics import Snapshot, http_base, parse
from voicebot import protocol as p
from voicebot.audio.codecs import AudioEncoding
from voicebot.telephony.dialects import DIALECTS

BOOK = PhraseBook.load()


def test_phrasebook_covers_every_intent_and_slot_of_the_demo_scenario() -> None:
    for intent in ("check_balance", "lost_card", "operator", "goodbye"):
        assert BOOK.saying(intent), intent
    assert {p.value for p in BOOK.answering("yes_no")} == {True, False}
    assert {"4217", "9031", "5566"} <= {p.value for p in BOOK.answering("digits")}
    for phrase in BOOK.phrases:
        assert 0 <= phrase.speech_start_ms < phrase.speech_end_ms
        assert phrase.wav.exists() and phrase.ulaw.exists()


@pytest.mark.parametrize(("encoding", "rate", "frame_bytes"), [
    (AudioEncoding.PCM16, 16000, 640), (AudioEncoding.MULAW, 8000, 160),
    (AudioEncoding.ALAW, 8000, 160), (AudioEncoding.PCM16, 8000, 320)])
def test_phrase_frames_are_20_ms_and_cover_the_speech(
        encoding: AudioEncoding, rate: int, frame_bytes: int) -> None:
    phrase = BOOK.saying("lost_card")[0]
    frames = phrase.frames(encoding, rate)
    assert {len(f) for f in frames} == {frame_bytes}
    assert len(frames) * 20 >= phrase.speech_end_ms


@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_scripts_follow_the_demo_flows(seed: int, barge_in: bool, keypad: bool) -> None:
    script = make_script(BOOK, random.Random(seed), barge_in=barge_in, keypad_digits=keypad)
    first = script.steps[0]
    assert first.barge_in == barge_in and first.phrase is not None
    assert all(not s.barge_in for s in script.steps[1:])
    flow = script.name.split("+")[0]
    assert first.expected_intent == {"balance": "check_balance", "lost_card": "lost_card",
                                     "operator": "operator"}[flow]
    if flow == "operator":
        assert len(script.steps) == 1  # the bot transfers: the call ends there
    else:
        assert script.steps[-1].expected_intent == "goodbye"
    if flow == "balance":
        assert (script.steps[1].dtmf is not None) == keypad
        if keypad:  # four card digits, then '#' so the entry ends whatever the bot asked
            assert script.steps[1].dtmf is not None and len(script.steps[1].dtmf) == 5
            assert script.steps[1].dtmf.endswith("#")


def _rows() -> list[dict[str, object]]:
    call = CallResult("c1", "native", "balance", started_unix=100.0, outcome="completed",
                      duration_s=20.0, max_send_lag_ms=3.0)
    base = call.base(worker="w")
    from loadtests.results import sample_row

    rows = [sample_row(Sample("greeting", 100.1, 5.0), **base)]
    rows += [sample_row(Sample("turn", 101 + i, float(v), turn=1, expected_intent="goodbye",
                               intent="goodbye" if i else "fallback"), **base)
             for i, v in enumerate((500, 600, 700))]
    rows.append(sample_row(Sample("barge_in", 102, None, error="no clear"), **base))
    rows.append(call.call_row(worker="w"))
    failed = CallResult("c2", "native", "operator", 130.0, outcome="failed", error="boom")
    rows.append(failed.call_row(worker="w"))
    return rows


def test_summary_counts_and_percentiles() -> None:
    s = summarize(_rows())
    assert s["turn"]["n"] == 3 and s["turn"]["p50_ms"] == 600.0
    assert s["turn"]["p95_ms"] == pytest.approx(690.0)
    assert s["greeting"]["p50_ms"] == 5.0
    assert s["barge_in"]["n"] == 0 and s["turn_errors"] == 1
    assert s["calls"] == {"completed": 1, "refused": 0, "failed": 1}
    assert s["failures"] == ["boom"]
    assert s["intents"] == {"checked": 3, "as_expected": 2}
    assert s["max_send_lag_ms"] == 3.0


def test_csv_round_trip(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "x" / "turns.csv")
    sink.write(_rows())
    sink.close()
    back = read_rows(tmp_path / "x" / "turns.csv")
    assert summarize(back) == summarize(_rows())


@given(st.lists(st.floats(0, 1e5), min_size=1, max_size=50), st.floats(0, 1))
def test_percentile_is_within_the_values(values: list[float], q: float) -> None:
    got = percentile(values, q)
    assert min(values) <= got <= max(values)
    assert percentile(values, 0.0) == min(values) and percentile(values, 1.0) == max(values)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


METRICS = """# HELP voicebot_cpu_seconds CPU time used
voicebot_cpu_seconds{cell="front"} 2.5
voicebot_cpu_seconds{cell="0"} 10.0
voicebot_turn_part_seconds_sum{part="asr"} 1.2
voicebot_turn_part_seconds_count{part="asr"} 10.0
voicebot_turn_part_seconds_bucket{part="asr",le="0.1"} 10.0
"""


def test_metrics_snapshot_gives_cpu_use_and_turn_parts() -> None:
    before = parse(METRICS)
    assert before.cpu_s == 12.5 and before.parts == {"asr": (1.2, 10.0)}
    after = Snapshot(17.5, {"asr": (2.2, 20.0)})
    assert after.cpu_percent_since(before, wall_s=10.0) == pytest.approx(50.0)
    assert after.part_means_ms_since(before) == {"asr": pytest.approx(100.0)}
    assert math.isnan(parse("").cpu_s)
    assert http_base("ws://127.0.0.1:8765/twilio") == "http://127.0.0.1:8765"


def test_native_dialect_speaks_the_protocol() -> None:
    native = DIALECTS["native-mulaw"]("call-1")
    start = p.decode_client_message(str(native.opening("bank_card")[0]))
    assert isinstance(start, p.Start)
    assert (start.encoding, start.sample_rate_hz, start.scenario) == ("mulaw", 8000, "bank_card")
    assert native.parse(b"\x00" * 160) == [("audio", b"\x00" * 160)]
    clear = p.encode_server_event(p.Clear(reply=1))
    assert [k for k, _ in native.parse(clear)] == ["clear", "event"]
    hangup = p.encode_server_event(p.Hangup(reason="completed"))
    assert [k for k, _ in native.parse(hangup)] == ["hangup", "event"]
    with pytest.raises(ValueError, match="no marks"):
        native.mark_echo("vb-1-0")


def _sweep(stack: str, p95s: Sequence[float]) -> dict[str, object]:
    steps = []
    for i, p95 in enumerate(p95s, start=1):
        turn = {"n": 20, "p50_ms": p95 - 50, "p95_ms": p95, "p99_ms": p95 + 20, "max_ms": p95}
        steps.append({"dialogs_per_core": i, "users": i, "cpu_percent": 30.0 * i,
                      "client_cpu_percent": 7.0 * i,
                      "verdict": "within SLO" if p95 <= 1500 else "stop: p95",
                      "summary": {"turn": turn, "greeting": turn, "barge_in": turn,
                                  "max_send_lag_ms": 4.0,
                                  "calls": {"completed": 3, "refused": 0, "failed": 0}}})
    return {"stack": stack, "models": "SYNTHETIC test", "encoder_window": "30s",
            "cpu": "test CPU", "date": "2026-11-21T00:00:00+00:00", "pinning": "none",
            "server_cores": 1, "protocol": "native", "step_s": 90.0, "settle_s": 30.0,
            "slo_ms": 1500.0, "steps": steps}


def test_max_density_is_the_last_step_within_the_slo() -> None:
    assert max_density(_sweep("x", [600, 900, 1600])) == (2, True)
    assert max_density(_sweep("x", [1600])) == (0, True)
    assert max_density(_sweep("x", [600, 700])) == (2, False)


def test_density_report_has_the_table_and_the_plot(tmp_path: Path) -> None:
    (tmp_path / "density").mkdir()
    for name, p95s in (("default", [600, 700, 800]), ("reference", [1200, 2300])):
        (tmp_path / "density" / f"{name}.json").write_text(json.dumps(_sweep(name, p95s)))
    text = render(tmp_path)
    assert text.index("## reference stack") < text.index("## default stack")
    assert "| reference | SYNTHETIC test | 30s | **1** |" in text
    assert "**3** (sweep cap reached)" in text
    # ... server CPU %, Locust CPU %, caller send lag (did the generator keep up?)
    assert "| 60 | 14 | 4 | 3/0/0 | within SLO |" in text
    assert (tmp_path / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
