"""``python -m bench engines``: each engine alone on one pinned core, one thread.

Each case runs in a fresh ``python -m bench.engines`` process pinned with
``os.sched_setaffinity`` before anything is loaded, so its VmRSS growth (import,
model load, one warm-up call) is the engine's alone.  There it times, on the same
inputs, the adapter (p50/p95 of what a call waits for; real-time factor = compute
/ audio seconds) and the raw library call underneath with the same settings
(overhead = median adapter / raw time over paired runs).  Inputs: espeak-ng
speaks :data:`CALLER_UTTERANCES` at 16 kHz; TTS gets :data:`BOT_REPLIES`.  Cases
whose module or model is missing get a "not available" line.  Writes ``engines.md``
(also printed) and ``engines.json``; each row says if its model is real or SYNTHETIC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from server.paths import default_scenarios_dir
from voicebot.errors import ConfigError, EngineUnavailableError

from .engine_cases import BOT_REPLIES, CALLER_UTTERANCES, CASES
from .engine_kit import EngineCase, Inputs, Unavailable

__all__ = ["BOT_REPLIES", "CALLER_UTTERANCES", "CASES", "EngineCase", "main", "run_engine_bench"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO = default_scenarios_dir() / "bank_card.yaml"
SAMPLE_RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # the server feeds VAD and ASR 32 ms windows
_RESULT_PREFIX = "BENCH-RESULT "
_PKG = "voicebot.engines."
_CHILD_TIMEOUT_S = 1800
_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_VERSIONS = ("onnxruntime", "pocketsphinx", "faster-whisper", "ctranslate2", "piper-tts")

Pcm = npt.NDArray[np.int16]
Params = Mapping[str, Any]


def _write_inputs(path: Path) -> list[dict[str, Any]]:
    """Speak :data:`CALLER_UTTERANCES` with espeak-ng at 16 kHz into ``path``; describe them."""
    from voicebot.audio.resample import resample
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    rate = (tts := EspeakSynthesizer()).sample_rate_hz
    pcms = [resample(tts.synthesize(t), in_rate_hz=rate, out_rate_hz=SAMPLE_RATE_HZ)
            for t in CALLER_UTTERANCES]  # fmt: skip
    arrays: dict[str, Any] = {f"pcm{i}": pcm for i, pcm in enumerate(pcms)}
    np.savez(path, **arrays)
    seconds = [round(len(pcm) / SAMPLE_RATE_HZ, 2) for pcm in pcms]
    return [{"text": t, "seconds": s} for t, s in zip(CALLER_UTTERANCES, seconds, strict=True)]


def _run_case(
    case: EngineCase, inputs: Path, cpu: int, quick: bool, dirs: tuple[Path, Path]
) -> dict[str, Any]:
    """Prepare ``case`` here, measure it in a fresh pinned process; its row."""
    row: dict[str, Any] = {"case": case.name, "engine": case.engine}
    try:
        if importlib.util.find_spec(case.module) is None:
            raise Unavailable(f"{case.module} is not importable (not there yet)")
        params = {**case.options, **(case.prepare(*dirs, case.options) if case.prepare else {})}
    except (ImportError, Unavailable, EngineUnavailableError) as exc:
        return {**row, "status": "not available", "reason": str(exc)}
    job = {"case": case.name, "inputs": str(inputs), "cpu": cpu, "quick": quick, "params": params}
    env = {**os.environ, **_ONE_THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.engines", json.dumps(job)],
            cwd=REPO_ROOT,
            env=env, text=True, capture_output=True, timeout=_CHILD_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {**row, "status": "failed", "reason": f"timed out after {_CHILD_TIMEOUT_S} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(_RESULT_PREFIX)]
    if done.returncode or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {**row, "status": "failed", "reason": f"exit {done.returncode}: {tail}"}
    log.info("measured %s", case.name)
    return {**row, "load_1min": os.getloadavg()[0], **json.loads(lines[-1][len(_RESULT_PREFIX) :])}


def _meta(*, cpu: int, quick: bool, load: list[float], caller: list[Any]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    models = [ln.split(":", 1)[1] for ln in cpuinfo.splitlines() if ln.startswith("model name")]
    versions = {}
    for name in _VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": models[0].strip() if models else platform.processor() or "unknown",
        "pinned_core": cpu, "threads": 1, "quick": quick, "load_avg_1min": load,
        "python": platform.python_version(), "versions": versions,
        "caller_speech": "espeak-ng en-us 165 wpm, resampled to 16 kHz", "caller": caller,
        "bot_replies": list(BOT_REPLIES),
        "rss": "VmRSS growth in a fresh process: engine import, model load, one warm-up call",
        "rtf": "compute seconds / audio seconds (audio in for VAD and ASR, out for TTS)",
        "overhead": "median of adapter / raw library call over paired runs (same input)",
    }  # fmt: skip


def run_engine_bench(
    *, out_dir: Path, models_dir: Path, cpu: int = 1, quick: bool = False,
    cases: Sequence[str] | None = None, voices_dir: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Benchmark the engines one by one on core ``cpu``; write and print the report.

    ``quick``: one timed pass per case (tests).  ``cases``: names or engines (default
    all).  ``voices_dir``: the synthetic Piper voices (``$VOICEBOT_SYNTHETIC_VOICES``,
    else ``models_dir/synthetic``)."""
    if cpu not in os.sched_getaffinity(0):
        raise ConfigError(f"cpu {cpu} is not one this process may run on")
    unknown = set(cases or ()) - {c.name for c in CASES} - {c.engine for c in CASES}
    if unknown:
        raise ConfigError(f"unknown bench cases {sorted(unknown)}")
    selected = [c for c in CASES if cases is None or c.name in cases or c.engine in cases]
    voices = voices_dir or Path(os.environ.get("VOICEBOT_SYNTHETIC_VOICES",
                                               Path(models_dir) / "synthetic"))
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        caller = _write_inputs(inputs)
        rows = [_run_case(c, inputs, cpu, quick, (Path(models_dir), voices)) for c in selected]
    load.append(os.getloadavg()[0])
    results = {"meta": _meta(cpu=cpu, quick=quick, load=load, caller=caller), "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "engines.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "engines.md").write_text(report := _markdown(results))
    print(report)
    return results


def _num(value: float | None) -> str:
    """Three significant digits (no exponent), or n/a."""
    if value is None:
        return "n/a"
    return f"{value:.{max(0, 2 - int(np.floor(np.log10(abs(value)))))}f}" if value else "0"


def _markdown(results: Mapping[str, Any]) -> str:
    m = results["meta"]
    lines = [
        "# Engine benchmark: one pinned core, one thread", "",
        f"- date: {m['date']}; CPU: {m['cpu_model']}; pinned core: {m['pinned_core']} "
        f"(`os.sched_setaffinity`, a fresh process per case); threads: {m['threads']}",
        f"- load average (1 min; this bench adds ~1) at start / end: {m['load_avg_1min'][0]:.2f} / "
        f"{m['load_avg_1min'][1]:.2f}; mode: {'QUICK (one pass)' if m['quick'] else 'full'}",
        f"- caller speech ({m['caller_speech']}): "
        + ", ".join(f"\"{u['text']}\" ({u['seconds']} s)" for u in m["caller"])
        + f"; TTS input: {len(m['bot_replies'])} bot replies of the bank_card scenario",
        f"- RSS: {m['rss']}. RTF: {m['rtf']}. Overhead: {m['overhead']}",
        "- real: released model. SYNTHETIC: random weights, real architecture and compute",
    ]  # fmt: skip
    for engine in dict.fromkeys(r["engine"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["engine"] == engine]
        done = [r for r in rows if r.get("status") == "ok"]
        lines += ["", f"## {engine}", ""]
        if done:
            lines += [
                f"Latency of: {done[0]['unit']}. Raw: {done[0]['raw']}.", "",
                "| model | real/SYNTHETIC | threads | p50 ms | p95 ms | RTF | RSS MB "
                "| raw p50 ms | adapter/raw |", "|---|---|---|---|---|---|---|---|---|",
            ]  # fmt: skip
            lines += [
                f"| {r['model']} | {'SYNTHETIC' if r['synthetic'] else 'real'} | {r['threads']} "
                f"| {_num(r['p50_ms'])} | {_num(r['p95_ms'])} | {_num(r['rtf'])} "
                f"| {r['rss_mb']:.0f} | {_num(r['raw_p50_ms'])} | {_num(r['overhead'])} |"
                for r in done
            ]
            lines += [""] + [f"- {r['case']}: {note}" for r in done for note in r["notes"]]
        lines += [f"- {r['case']}: {r['status']}: {r['reason']}" for r in rows if r not in done]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Child (``python -m bench.engines JOB_JSON``): pin, measure, print the row."""
    job = json.loads((sys.argv[1:] if argv is None else argv)[0])
    os.sched_setaffinity(0, {job["cpu"]})  # before any engine library or model is loaded
    case = next(c for c in CASES if c.name == job["case"])
    with np.load(job["inputs"]) as data:  # the parent's espeak-ng audio, int16
        caller = tuple((t, data[f"pcm{i}"]) for i, t in enumerate(CALLER_UTTERANCES))
    inputs = Inputs(caller=caller, quick=job["quick"], params=job["params"])
    try:
        row = {"status": "ok", **case.measure(inputs)}
    except (ImportError, Unavailable, EngineUnavailableError) as exc:
        row = {"status": "not available", "reason": f"{type(exc).__name__}: {exc}"}
    print(_RESULT_PREFIX + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
