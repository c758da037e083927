"""``make gpu-check`` (``python -m bench.gpu_check``): the GPU backend on a machine with an
NVIDIA GPU, in under 8 minutes; writes ``docs/benchmarks/gpu.md``.

1. ``nvidia-smi``: the GPU's name, driver and CUDA versions; none: stop, exit 3.
2. Install the ``[gpu]`` extra's runtime (``onnxruntime`` out, ``onnxruntime-gpu`` in: both
   are the ``onnxruntime`` module) unless ``--no-install``; probe CUDA as the server does.
3. The GPU tests (``tests/unit/test_gpu_*.py``, ``tests/integration/test_gpu_*.py``;
   ``VOICEBOT_GPU=1`` runs the real-model GPU test).
4. Per-engine latency on the GPU against one pinned CPU core, same inputs, same run:
   REAL Whisper tiny.en / base (:class:`~voicebot.engines.whisper_batch.WhisperBatchTranscriber`,
   batch 1 and 8 on cuda; batch 1 on cpu), REAL Piper joe (cuda / cpu); the CPU engine
   bench (``bench/engines.py``) for Silero, MiniLM (their adapters have no CUDA path yet).
5. A short density sweep (``loadtests.run density``) against ``voicebot serve --device cuda``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["gpu_facts", "main"]

REPO = Path(__file__).resolve().parent.parent
NO_GPU_EXIT = 3
_ORT_GPU = "onnxruntime-gpu==1.26.0"  # the last CUDA 12 + cuDNN 9 build (docker/Dockerfile.gpu)


def gpu_facts(smi: str | None = None) -> dict[str, str] | None:
    """Name, driver and CUDA version from ``nvidia-smi``; None without an NVIDIA GPU."""
    smi = smi or shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        query = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30, check=True)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    first = query.stdout.strip().splitlines()
    if not first:
        return None
    name, _, driver = first[0].partition(",")
    cuda = header.stdout.split("CUDA Version:", 1)[-1].split()[0] if "CUDA Version:" in \
        header.stdout else "unknown"
    return {"gpu": name.strip(), "driver": driver.strip(), "cuda": cuda}


def _run(cmd: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None) -> int:
    print("gpu-check: $", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, timeout=timeout_s, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"gpu-check: timed out after {timeout_s:.0f} s", flush=True)
        return 124


def _engines(out: Path, timeout_s: float) -> dict[str, Any]:
    """Per-engine latency (``bench.gpu_engines`` in a fresh process: CUDA after install)."""
    path = out / "gpu-engines.json"
    _run([sys.executable, "-m", "bench.gpu_engines", str(path)], timeout_s=timeout_s)
    cpu_dir = out / "cpu-engines"
    _run([sys.executable, "-c", "from pathlib import Path; from bench.engines import "
          f"run_engine_bench; run_engine_bench(out_dir=Path({str(cpu_dir)!r}), models_dir="
          "Path('models/cache'), cpu=0, quick=True, cases=['silero-vad', 'minilm-int8'])"],
         timeout_s=timeout_s)
    rows: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    cpu = cpu_dir / "engines.json"
    rows["cpu_engine_bench"] = json.loads(cpu.read_text())["rows"] if cpu.is_file() else []
    return rows


def _density(out: Path, timeout_s: float) -> int:
    port = "8799"
    env = {**os.environ, "VOICEBOT_AUTH": "none"}
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--stack", "default", "--device", "cuda",
         "--port", port, "--cpus", "0", "--dialogs-per-core", "64", "--dialogs-per-gpu", "64"],
        cwd=REPO, env=env)
    try:
        return _run([sys.executable, "-m", "loadtests.run", "density", "--url",
                     f"ws://127.0.0.1:{port}", "--server-cpus", "0", "--client-cpu", "1",
                     "--levels", "4,8,16,32", "--step-s", "30", "--settle-s", "10",
                     "--out", str(out / "density"), "--report-dir", str(out)],
                    timeout_s=timeout_s, env=env)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _report(facts: dict[str, str], steps: dict[str, Any], engines: dict[str, Any]) -> str:
    lines = ["# GPU backend: measured by `make gpu-check`", "",
             f"- date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; GPU: "
             f"{facts['gpu']}; driver {facts['driver']}; CUDA {facts['cuda']}",
             "- steps: " + "; ".join(f"{k}: exit {v}" for k, v in steps.items()), "",
             "## Per-engine latency (REAL models; GPU vs one pinned CPU core, same run)", "",
             "| engine | device | batch | p50 ms | p95 ms | per item ms |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {row['engine']} | {row['device']} | {row['batch']} | {row['p50_ms']:.1f} | "
              f"{row['p95_ms']:.1f} | {row['per_item_ms']:.1f} |"
              for row in engines.get("rows", [])]
    lines += [f"| {row['case']} | cpu (1 core) | 1 | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} "
              f"| {row['p50_ms']:.2f} |"
              for row in engines.get("cpu_engine_bench", []) if row.get("status") == "ok"]
    lines += ["", "Silero VAD, MiniLM and Smart Turn stay on CPU (no CUDA path in their "
              "adapters yet); their CPU rows are above.", "",
              "## Density on the GPU", "", "See `density.md` next to this file's run "
              "output (`out/gpu/`): dialogs per GPU at p95 <= 1.5 s."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "gpu")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "benchmarks" / "gpu.md")
    parser.add_argument("--nvidia-smi", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    facts = gpu_facts(args.nvidia_smi)
    if facts is None:
        print("gpu-check: no NVIDIA GPU here (nvidia-smi is missing or sees no GPU); nothing "
              "measured, docs/benchmarks/gpu.md left as it is", file=sys.stderr)
        return NO_GPU_EXIT
    print(f"gpu-check: {facts}", flush=True)
    steps: dict[str, Any] = {}
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    if not args.no_install:
        steps["install"] = _run([sys.executable, "-m", "pip", "uninstall", "-y", "-q",
                                 "onnxruntime"], timeout_s=120) or _run(
            [*pip, _ORT_GPU], timeout_s=180)
    probe = ("from voicebot.engines.devices import require_cuda; print(require_cuda("
             "what='gpu-check', ctranslate2=True, onnxruntime=True).describe())")
    if _run([sys.executable, "-c", probe], timeout_s=60):
        print("gpu-check: CUDA is not usable (above); stopping", file=sys.stderr)
        return NO_GPU_EXIT
    env = {**os.environ, "VOICEBOT_GPU": "1"}
    tests = sorted(str(p.relative_to(REPO)) for p in REPO.glob("tests/*/test_gpu_*.py"))
    steps["tests"] = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *tests], timeout_s=120, env=env)
    args.out.mkdir(parents=True, exist_ok=True)
    engines = _engines(args.out, timeout_s=120)
    left_s = 8 * 60 - (time.monotonic() - started) - 20
    steps["density"] = _density(args.out, timeout_s=max(30.0, left_s))
    args.report.write_text(_report(facts, steps, engines))
    print(f"gpu-check: wrote {args.report} in {time.monotonic() - started:.0f} s")
    return 0 if not any(steps.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
