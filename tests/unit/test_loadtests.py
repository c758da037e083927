"""The load harness's pure parts: phrasebook, rows and summaries, /metrics
parsing, the native dialect, the density sweep's levels and windows, and its report."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtests.density_windows import (
    HELD,
    default_levels,
    level_verdict,
    levels_arg,
    parse_levels,
    phase,
    positive_int,
    split_rows,
    summarize_windows,
    window_bounds,
)
from loadtests.phrases import PhraseBook
from loadtests.report import headline, max_density, render, window_p95s
from loadtests.results import (
    CallResult,
    CsvSink,
    Sample,
    percentile,
    read_rows,
    sample_row,
    summarize,
)
from loadtests.run import STACKS
from loadtests.run import _parser as run_parser
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


def _rows() -> list[dict[str, object]]:
    call = CallResult("c1", "native", "balance", started_unix=100.0, outcome="completed",
                      duration_s=20.0, max_send_lag_ms=3.0)
    base = call.base(worker="w")
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
    assert s["intents"] == {"checked": 3, "as_expected": 2, "mismatches": 1,
                            "mismatched": {"goodbye→fallback": 1}}
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


def _turn(p95: float) -> dict[str, float]:
    return {"n": 20, "p50_ms": p95 - 50, "p95_ms": p95, "p99_ms": p95 + 20, "max_ms": p95}


def _sweep(stack: str, p95s: Sequence[float]) -> dict[str, Any]:
    """A sweep as stored before repeats: no windows, no levels."""
    steps = []
    for i, p95 in enumerate(p95s, start=1):
        turn = _turn(p95)
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
    assert text.index("## default stack") < text.index("## reference stack")
    assert "| reference | SYNTHETIC test | 30s | **1** |" in text
    assert "**3** (sweep cap reached)" in text
    # ... server CPU %, Locust CPU %, caller send lag (did the generator keep up?)
    assert "| 60 | 14 | 4 | 3/0/0 | within SLO |" in text
    assert (tmp_path / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the density sweep: levels, windows, the hold verdict --------------------------------


def test_levels_parse_in_order() -> None:
    assert parse_levels("1,4,8") == (1, 4, 8)
    assert parse_levels(" 2, 3 ,16 ") == (2, 3, 16)
    assert levels_arg("1, 4,8") == "1,4,8" and levels_arg("") == ""
    assert default_levels(3) == (1, 2, 3)
    assert positive_int("3") == 3


@pytest.mark.parametrize(("text", "why"), [
    ("1,x,8", "'x' in '1,x,8' is not a whole number"), ("1,,2", "'' in"),
    ("", "not a whole number"), ("0,1", "at least 1: 0"), ("-2", "at least 1"),
    ("4,2", "strictly increasing: 2 after 4"), ("1,1", "strictly increasing"),
    ("1.5", "not a whole number")])
def test_bad_levels_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why.replace("(", r"\(")):
        parse_levels(text)


@pytest.mark.parametrize(("argv", "why"), [
    (["--levels", "8,4"], "argument --levels: levels must be strictly increasing: 4 after 8"),
    (["--levels", "1,four"], "argument --levels: levels are a comma list"),
    (["--repeats", "0"], "argument --repeats: expected a whole number ≥ 1, got 0"),
    (["--max-dialogs-per-core", "x"], "argument --max-dialogs-per-core: expected a whole")])
def test_density_cli_refuses_bad_levels_and_repeats(
        argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_parser().parse_args(["density", *argv])
    assert exit_.value.code == 2
    assert why in capsys.readouterr().err


def test_density_cli_takes_levels_and_repeats() -> None:
    args = run_parser().parse_args(["density", "--stack", "lite", "--levels", "1,4,8",
                                    "--repeats", "3"])
    assert (args.levels, args.repeats) == ((1, 4, 8), 3)
    args = run_parser().parse_args(["density"])
    assert (args.levels, args.repeats) == (None, 1)


def test_every_stack_has_valid_default_levels() -> None:
    assert set(STACKS) == {"lite", "default", "default-turns-model", "reference",
                           "reference-30s"}
    for stack in STACKS.values():
        levels = stack["levels"]
        assert parse_levels(",".join(map(str, levels))) == levels
    assert STACKS["default"]["levels"] == (1, 4, 8, 12, 16, 20, 24, 28, 32)


def test_phase_of_a_level_settles_then_counts_windows() -> None:
    kw: dict[str, Any] = {"settle_s": 20.0, "window_s": 40.0, "repeats": 3}
    assert [phase(t, **kw) for t in (0, 19.9, 20, 59.9, 60, 100, 139.9, 140, 500)] == \
        [-1, -1, 0, 0, 1, 2, 2, 3, 3]
    assert window_bounds(120.0, window_s=40.0, repeats=3) == [120.0, 160.0, 200.0, 240.0]


def _call(call_id: str, end_unix: float, outcome: str = "completed") -> dict[str, Any]:
    result = CallResult(call_id, "native", "balance", started_unix=end_unix - 10.0,
                        outcome=outcome, duration_s=10.0)
    return result.call_row(worker="w")


def _turns(t0: float, latencies_ms: Sequence[float]) -> list[dict[str, Any]]:
    base = CallResult("t", "native", "balance", 0.0).base(worker="w")
    return [sample_row(Sample("turn", t0 + 0.5 * i, ms), **base)
            for i, ms in enumerate(latencies_ms)]


# A level started at 100 s, settled until 120 s, then three 40 s windows.
START, BOUNDS = 100.0, window_bounds(120.0, window_s=40.0, repeats=3)


def test_rows_split_into_windows() -> None:
    rows = [*_turns(105.0, [9000.0] * 4),  # during settling: left out
            *_turns(121.0, [600.0] * 3), *_turns(161.0, [700.0] * 2),
            *_turns(201.0, [800.0]), *_turns(240.0, [9000.0]),  # at the end: left out
            _call("settling", 110.0, "refused"), _call("w1", 170.0), _call("late", 245.0),
            _call("before", 99.0)]
    windows = split_rows(rows, start_unix=START, bounds_unix=BOUNDS)
    assert [len(w) for w in windows] == [3 + 1, 2 + 1, 1]
    assert {r["call_id"] for w in windows for r in w if r["kind"] == "call"} == \
        {"settling", "w1"}  # a call refused while the level settled counts in window 1
    pooled, each = summarize_windows(rows, start_unix=START, bounds_unix=BOUNDS)
    assert [w["turn"]["n"] for w in each] == [3, 2, 1] and pooled["turn"]["n"] == 6
    assert pooled["turn"]["max_ms"] == 800.0
    assert pooled["calls"] == {"completed": 1, "refused": 1, "failed": 0}
    assert each[0]["calls"]["refused"] == 1
    assert split_rows(rows, start_unix=START, bounds_unix=[120.0]) == []


def _level(*windows: Sequence[float]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = [r for k, latencies in enumerate(windows) for r in _turns(BOUNDS[k], latencies)]
    rows += [_call(f"c{k}", BOUNDS[k] + 30.0) for k in range(len(windows))]
    return summarize_windows(rows, start_unix=START, bounds_unix=BOUNDS[:len(windows) + 1])


def test_a_level_holds_when_every_window_is_within_the_slo() -> None:
    pooled, each = _level([600.0] * 20, [700.0] * 20, [1400.0] * 20)
    assert level_verdict(pooled, each, slo_ms=1500.0, repeats=3) == HELD


def test_one_window_over_the_slo_breaks_the_level_though_the_pool_is_within() -> None:
    pooled, each = _level([600.0] * 20, [600.0] * 17 + [3000.0] * 3, [600.0] * 20)
    assert pooled["turn"]["p95_ms"] < 1500.0 < each[1]["turn"]["p95_ms"]
    verdict = level_verdict(pooled, each, slo_ms=1500.0, repeats=3)
    assert verdict.startswith("stop: p95 of window 2 (3000 ms) > SLO 1500 ms"), verdict


@pytest.mark.parametrize(("windows", "repeats", "why"), [
    (([2000.0] * 20,) * 3, 3, "stop: p95 2000 ms > SLO 1500 ms"),
    (([600.0] * 20,) * 2, 3, "stop: only 2 of 3 windows measured (the sweep ended)"),
    (([600.0] * 20, [], [600.0] * 20), 3, "stop: no turns measured in window 2"),
    (((), (), ()), 3, "stop: no turns measured")])
def test_a_level_that_did_not_hold_says_why(
        windows: tuple[Sequence[float], ...], repeats: int, why: str) -> None:
    pooled, each = _level(*windows)
    assert level_verdict(pooled, each, slo_ms=1500.0, repeats=repeats) == why


def test_a_refused_or_failed_call_breaks_the_level() -> None:
    rows = [*_turns(121.0, [600.0] * 5), _call("x", 110.0, "refused"), _call("y", 150.0,
                                                                          "failed")]
    pooled, each = summarize_windows(rows, start_unix=START, bounds_unix=BOUNDS[:2])
    assert level_verdict(pooled, each, slo_ms=1500.0, repeats=1) == \
        "stop: 1 failed, 1 refused calls"



def _windowed_sweep(stack: str, levels: Sequence[tuple[int, Sequence[float]]]) -> dict[str, Any]:
    """A sweep with repeats: each level's windows, their pooled p95 the worst of them."""
    sweep = _sweep(stack, [max(p95s) for _, p95s in levels])
    for step, (level, p95s) in zip(sweep["steps"], levels, strict=True):
        windows = [{"index": k, "start_unix": 0.0, "end_unix": 0.0, "cpu_percent": 50.0,
                    "client_cpu_percent": 5.0, "part_means_ms": {},
                    "summary": {**step["summary"], "turn": _turn(p95)}}
                   for k, p95 in enumerate(p95s)]
        step.update(dialogs_per_core=level, users=level, repeats=len(p95s), window_s=40.0,
                    windows=windows,
                    verdict=HELD if max(p95s) <= 1500 else "stop: p95 of window 2")
    sweep.update(step_s=60.0, settle_s=20.0, window_s=40.0, repeats=3,
                 levels=[1, 4, 8, 12, 16])
    return sweep


def test_headline_is_the_highest_level_whose_every_window_held() -> None:
    sweep = _windowed_sweep("default", [(1, [600, 650, 700]), (4, [800, 900, 1000]),
                                        (8, [900, 1600, 1000])])
    assert max_density(sweep) == (4, True)
    assert window_p95s(sweep["steps"][2]) == [900, 1600, 1000]
    h = headline(sweep)
    assert (h.dialogs_per_core, h.limit_found, h.repeats, h.windows) == (4, True, 3, 3)
    assert (h.p95_median_ms, h.p95_min_ms, h.p95_max_ms) == (900, 800, 1000)
    # an old sweep: each level one window, repeats 1
    old = headline(_sweep("x", [600, 900, 1600]))
    assert (old.dialogs_per_core, old.repeats, old.windows, old.p95_median_ms) == (2, 1, 1, 900)
    assert headline(_sweep("x", [1600])).windows == 0


def test_headline_needs_every_lower_level_to_hold() -> None:
    sweep = _windowed_sweep("default", [(1, [600, 650, 700]), (4, [800, 1600, 1000]),
                                        (8, [900, 1000, 1100])])
    assert max_density(sweep) == (1, True)


def test_density_report_with_repeats_shows_the_spread(tmp_path: Path) -> None:
    (tmp_path / "density").mkdir()
    new = _windowed_sweep("default", [(1, [600, 650, 700]), (4, [800, 900, 1000]),
                                      (8, [900, 1600, 1000])])
    (tmp_path / "density" / "default.json").write_text(json.dumps(new))
    (tmp_path / "density" / "lite.json").write_text(json.dumps(_sweep("lite", [600, 700])))
    text = render(tmp_path).replace("\N{EN DASH}", "~")  # ranges: min, an en dash, max
    assert "| p95 ms at that level: median [min~max] over its windows | repeats |" in text
    assert "| default | SYNTHETIC test | 30s | **4** | 900 [800~1000] over 3 windows | 3 |" \
        in text
    assert "| lite | SYNTHETIC test | 30s | **2** (sweep cap reached) | 700 (1 window) | 1 |" \
        in text
    assert "| p95 ms per window (min~max) |" in text
    assert "| 1600 | 900~1600 (Δ 700, 3 windows) ⚠ straddles the SLO | 1620 |" in text
    assert "| 1000 | 800~1000 (Δ 200, 3 windows) | 1020 |" in text
    assert "levels 1, 4, 8, 12, 16 dialogs/core, each held 140 s: first 20 s left out, " \
           "then 3 windows of 40 s" in text
    assert "| 700 | 700 (1 window) | 720 |" in text  # the old sweep: one window a level
    assert "levels 1, 2, 3, … dialogs/core, each held 90 s: first 30 s left out, then 1 " \
           "window of 60 s" in text
    assert (tmp_path / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
