"""``bench.engines`` in quick mode on the cheap engines, and its error paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import engines as bench_engines
from bench.engines import EngineCase, run_engine_bench
from voicebot.errors import ConfigError

__all__: list[str] = []

CHEAP = ("silero-vad", "pocketsphinx", "espeak-ng")


def _cpu() -> int:
    allowed = os.sched_getaffinity(0)
    return 1 if 1 in allowed else min(allowed)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out_dir = tmp_path_factory.mktemp("bench")
    results = run_engine_bench(
        out_dir=out_dir, models_dir=out_dir / "models", cpu=_cpu(), quick=True, cases=CHEAP
    )
    return out_dir, results


def test_quick_run_writes_labelled_reports(report: tuple[Path, dict[str, object]]) -> None:
    out_dir, results = report
    markdown = (out_dir / "engines.md").read_text()
    on_disk = json.loads((out_dir / "engines.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    meta = on_disk["meta"]
    assert meta["pinned_core"] == _cpu() and meta["threads"] == 1 and meta["quick"] is True
    assert meta["cpu_model"] and meta["date"].startswith("20")
    assert len(meta["load_avg_1min"]) == 2
    for label in ("CPU:", f"pinned core: {_cpu()}", "threads: 1", "date:", "QUICK"):
        assert label in markdown
    assert "| model | real/SYNTHETIC | threads | p50 ms | p95 ms | RTF | RSS MB" in markdown
    for engine in CHEAP:
        assert f"## {engine}" in markdown


def test_quick_run_numbers_are_positive(report: tuple[Path, dict[str, object]]) -> None:
    _, results = report
    rows = results["rows"]
    assert isinstance(rows, list)
    assert [row["case"] for row in rows] == list(CHEAP)
    for row in rows:
        assert row["status"] == "ok", row
        assert row["synthetic"] is False and row["threads"] == 1
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["raw_p50_ms"] > 0 and row["overhead"] > 0
        assert row["rtf"] > 0 and row["raw_rtf"] > 0
        assert row["rss_mb"] > 0


def test_missing_module_is_reported_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(_inputs: object) -> dict[str, object]:
        raise AssertionError("must not be measured")

    missing = EngineCase("nothing-yet", "nothing", "voicebot.engines.no_such_engine", never)
    monkeypatch.setattr(bench_engines, "CASES", (missing,))
    results = run_engine_bench(out_dir=tmp_path, models_dir=tmp_path, cpu=_cpu(), quick=True)
    (row,) = results["rows"]
    assert row["status"] == "not available" and "no_such_engine" in row["reason"]
    assert "nothing-yet: not available" in (tmp_path / "engines.md").read_text()


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_engine_bench(out_dir=tmp_path, models_dir=tmp_path, cases=("no-such-case",))
    with pytest.raises(ConfigError):
        run_engine_bench(out_dir=tmp_path, models_dir=tmp_path, cpu=10_000)
