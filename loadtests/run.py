"""``make load`` and ``make density``: a pinned server, Locust pinned beside it, a verdict.

    python -m loadtests.run load --stack reference --duration-s 120
    python -m loadtests.run density --stack lite --step-s 60 --settle-s 20

Stacks (``STACKS``): ``lite``, ``default`` and ``reference`` are the presets of
server/stacks.py; ``reference-30s`` is reference with the 30 s encoder window
(server/configs/reference-30s.yaml).  The server pulls missing models
at start (``voicebot models pull --stack NAME`` installs them beforehand).

``load`` starts ``voicebot serve`` on ``--server-cpus`` (taskset) unless
``--url`` names a running server, runs Locust headless on ``--client-cpu``
with N = 2 x server cores callers (``--users``) for ``--duration-s``, and
prints p50/p95/p99 turn latency, greeting latency, barge-in reaction,
refused/failed calls, the server's CPU use and where its turn time went.  It
exits 1 when p95 turn latency exceeds ``--slo-ms`` or an admitted call failed.

``density`` runs the :mod:`loadtests.density` sweep (admission opened wide,
so the sweep, not the server, finds the limit) over the stack's ``levels``
(``--levels 1,4,8``; ``--max-dialogs-per-core N`` alone: 1, 2, … N), each held
for ``--repeats`` windows, stores the levels in
``docs/benchmarks/density/<stack>.json`` and re-renders ``density.md`` + PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtests.density_windows import default_levels, parse_levels, positive_int
from loadtests.machine import cpu_model
from loadtests.results import read_rows, summarize
from loadtests.server_metrics import scrape

__all__ = ["STACKS", "main"]

ROOT = Path(__file__).resolve().parent.parent
STACKS: dict[str, dict[str, Any]] = {
    # "serve": the arguments that select the stack (server/stacks.py presets, or a config
    # file naming one with overrides); "sweep": density's (step s, settle s, max dialogs);
    # "levels": the dialogs per core density visits (each held settle + repeats x window).
    "lite": {
        "serve": ["--stack", "lite"], "encoder_window": "n/a (pocketsphinx)",
        "sweep": (60.0, 20.0, 32), "levels": (1, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40),
        "models": "real: pocketsphinx en-us (scenario LM) + MiniLM-L6 int8 ONNX + espeak-ng; "
                  "Silero VAD v6"},
    "default": {
        "serve": ["--stack", "default"], "encoder_window": "utterance",
        "sweep": (60.0, 20.0, 48), "levels": (1, 4, 8, 12, 16, 20, 24, 28, 32),
        "models": "real: Whisper tiny.en int8 (CTranslate2) + MiniLM-L6 int8 ONNX + Piper "
                  "en_US-joe-medium; Silero VAD v6; speculative ASR 200 ms"},
    "default-turns-model": {
        "serve": ["--config", "server/configs/turns-model.yaml"], "encoder_window": "utterance",
        "sweep": (60.0, 20.0, 48), "levels": (1, 4, 8, 12, 16, 20, 24, 28, 32),
        "models": "real: Whisper tiny.en int8 (CTranslate2) + MiniLM-L6 int8 ONNX + Piper "
                  "en_US-joe-medium; Silero VAD v6; Smart Turn v3.2 + dialog expectations "
                  "(short pause 100 ms), speculative ASR and replies at 100 ms"},
    "reference": {
        "serve": ["--config", "server/configs/reference.yaml"], "encoder_window": "utterance",
        "sweep": (60.0, 20.0, 32), "levels": (1, 2, 4, 6, 8, 10, 12, 16),
        "models": "real: Whisper base int8 (CTranslate2) + MiniLM-L6 int8 ONNX + Piper "
                  "en_US-joe-medium; Silero VAD v6; speculative ASR 200 ms"},
    "reference-30s": {
        "serve": ["--config", "server/configs/reference-30s.yaml"],
        "encoder_window": "30s", "sweep": (90.0, 30.0, 6), "levels": (1, 2, 3, 4, 5, 6),
        "models": "real: Whisper base int8 (CTranslate2) + MiniLM-L6 int8 ONNX + Piper "
                  "en_US-joe-medium; Silero VAD v6; speculative ASR 200 ms"},
}




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpus(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


@contextlib.contextmanager
def _server(args: argparse.Namespace, extra: list[str]) -> Iterator[str]:
    """The server for this run: ``--url`` as given, else one started pinned."""
    if args.url:
        yield args.url
        return
    port = _free_port()
    stack = STACKS[args.stack]
    command = ["taskset", "-c", args.server_cpus, sys.executable, "-m", "server", "serve",
               "--port", str(port), *stack["serve"], *extra]
    log_path = Path(args.out) / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, proc, args.ready_timeout_s, log_path)
            yield f"ws://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}); see {log}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        time.sleep(0.3)
    raise SystemExit(f"the server was not ready within {timeout_s:.0f} s; see {log}")


def _locust(args: argparse.Namespace, url: str, locustfile: str, extra: list[str]) -> int:
    pin = ["taskset", "-c", args.client_cpu] if args.client_cpu else []
    command = [*pin, sys.executable, "-m", "locust",
               "-f", str(ROOT / "loadtests" / locustfile), "--host", url, "--headless",
               "--only-summary", "--vb-protocol", args.protocol,
               "--vb-turn-csv", str(Path(args.out) / "turns.csv"),
               "--csv", str(Path(args.out) / "locust"), "--stop-timeout", "0", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.call(command, cwd=ROOT, env=env)


def _fmt(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.0f}"


def _load(args: argparse.Namespace) -> int:
    cores = len(_cpus(args.server_cpus))
    users = args.users or 2 * cores
    # Admission sized to the callers asked for (the shipped 2 per core would refuse
    # the rest); its p95 gate stays on, so an overloaded server still refuses.
    admit = args.dialogs_per_core or max(1, math.ceil(users / cores))
    with _server(args, ["--dialogs-per-core", str(admit)]) as url:
        before, t0 = scrape(url), time.monotonic()
        rc = _locust(args, url, "locustfile.py",
                     ["-u", str(users), "-r", str(args.spawn_rate or cores),
                      "-t", f"{args.duration_s}s",
                      "--vb-barge-in", str(args.barge_in)])
        after, wall = scrape(url), time.monotonic() - t0
    summary = summarize(read_rows(Path(args.out) / "turns.csv"))
    summary.update({
        "stack": args.stack, "models": STACKS[args.stack]["models"],
        "encoder_window": STACKS[args.stack]["encoder_window"], "protocol": args.protocol,
        "users": users, "server_cores": cores, "duration_s": args.duration_s,
        "dialogs_per_core": None if args.url else admit,
        "server_cpu_percent": after.cpu_percent_since(before, wall),
        "turn_part_means_ms": after.part_means_ms_since(before), "slo_ms": args.slo_ms,
        "cpu": cpu_model(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pinning": f"server taskset -c {args.server_cpus}, Locust taskset -c {args.client_cpu}"
                   if not args.url else f"external server {args.url}",
        "locust_exit": rc,
    })
    verdict = _verdict(summary)
    summary["verdict"] = verdict
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    _print_summary(summary)
    return 0 if verdict == "pass" else 1


def _verdict(s: dict[str, Any]) -> str:
    if s["calls"]["failed"]:
        return f"FAIL: {s['calls']['failed']} admitted calls failed: {'; '.join(s['failures'])}"
    if not s["turn"]["n"]:
        return "FAIL: no turn measured"
    if s["turn"]["p95_ms"] > s["slo_ms"]:
        return f"FAIL: p95 turn latency {s['turn']['p95_ms']:.0f} ms > SLO {s['slo_ms']:.0f} ms"
    return "pass"


def _print_summary(s: dict[str, Any]) -> None:
    def line(name: str, key: str) -> str:
        x = s[key]
        return (f"  {name:<22} n={x['n']:<4} p50 {_fmt(x['p50_ms'])} ms  p95 {_fmt(x['p95_ms'])}"
                f" ms  p99 {_fmt(x['p99_ms'])} ms  max {_fmt(x['max_ms'])} ms")

    admitting = (f" admitting {s['dialogs_per_core']} dialogs/core"
                 if s.get("dialogs_per_core") else "")
    print(f"\nvoicebot load test — {s['stack']} stack ({s['models']}; encoder window "
          f"{s['encoder_window']}), {s['protocol']}, {s['users']} callers on {s['server_cores']}"
          f" server core(s){admitting}, {s['duration_s']} s, {s['cpu']}, {s['pinning']}")
    print(line("turn latency", "turn"))
    print(line("greeting latency", "greeting"))
    print(line("keypad (dtmf) latency", "dtmf"))
    print(line("barge-in → clear", "barge_in"))
    c = s["calls"]
    print(f"  calls: {c['completed']} completed, {c['refused']} refused, {c['failed']} failed;"
          f" turns without a reply: {s['turn_errors']}; intents as expected: "
          f"{s['intents']['as_expected']}/{s['intents']['checked']}"
          + "".join(f"; {pair}: {n}" for pair, n in s["intents"]["mismatched"].items()))
    parts = ", ".join(f"{k} {v:.0f}" for k, v in s["turn_part_means_ms"].items())
    print(f"  server CPU: {_fmt(s['server_cpu_percent'])}% of one core; mean turn parts (ms): "
          f"{parts or 'n/a'}; caller max send lag {_fmt(s['max_send_lag_ms'])} ms")
    print(f"  SLO p95 ≤ {s['slo_ms']:.0f} ms: {s['verdict']}\n")


def _density(args: argparse.Namespace) -> int:
    from loadtests.report import render

    cores = len(_cpus(args.server_cpus))
    step_s, settle_s, _ = STACKS[args.stack]["sweep"]
    args.step_s = args.step_s or step_s
    args.settle_s = args.settle_s if args.settle_s is not None else settle_s
    window_s = args.step_s - args.settle_s
    if window_s <= 0:
        raise SystemExit(f"--step-s {args.step_s:g} leaves no window after --settle-s "
                         f"{args.settle_s:g}")
    levels: tuple[int, ...] = args.levels or (default_levels(args.max_dialogs_per_core)
                                              if args.max_dialogs_per_core
                                              else STACKS[args.stack]["levels"])
    hold_s = args.settle_s + args.repeats * window_s
    print(f"density {args.stack}: levels {levels}, each {hold_s:.0f} s ({args.settle_s:.0f} s "
          f"settling + {args.repeats} x {window_s:.0f} s windows), at most "
          f"{len(levels) * hold_s / 60:.0f} min", flush=True)
    steps_path = Path(args.out) / "steps.json"
    # Admission opened wide: the sweep, not the server, finds where latency breaks.
    with _server(args, ["--dialogs-per-core", "1000", "--slo-p95-ms", "1e9"]) as url:
        rc = _locust(args, url, "density.py", [
            "--vb-server-cores", str(cores), "--vb-step-s", str(args.step_s),
            "--vb-settle-s", str(args.settle_s), "--vb-slo-ms", str(args.slo_ms),
            "--vb-levels", ",".join(map(str, levels)), "--vb-repeats", str(args.repeats),
            "--vb-density-out", str(steps_path), "--vb-barge-in", str(args.barge_in)])
    sweep = json.loads(steps_path.read_text())
    sweep.update({"stack": args.stack, **{k: STACKS[args.stack][k]
                                          for k in ("models", "encoder_window")},
                  "cpu": cpu_model(),
                  "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "pinning": f"server taskset -c {args.server_cpus}, "
                             f"Locust taskset -c {args.client_cpu}", "locust_exit": rc})
    report_dir = Path(args.report_dir)
    (report_dir / "density").mkdir(parents=True, exist_ok=True)
    (report_dir / "density" / f"{args.stack}.json").write_text(json.dumps(sweep, indent=1) + "\n")
    print(render(report_dir))
    return 0 if sweep["steps"] else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}
    for name in ("load", "density"):
        cmd = commands[name] = sub.add_parser(name)
        cmd.add_argument("--stack", choices=sorted(STACKS), default="default")
        cmd.add_argument("--protocol", default="native", help="--vb-protocol for Locust")
        cmd.add_argument("--url", default="", help="a running server (skip starting one)")
        cmd.add_argument("--server-cpus", default="0", help="taskset list for the server")
        cmd.add_argument("--client-cpu", default="1",
                         help="taskset list for Locust ('' to leave it unpinned)")
        cmd.add_argument("--slo-ms", type=float, default=1500.0, help="p95 turn latency SLO")
        cmd.add_argument("--barge-in", type=float, default=0.2, help="share of barge-in calls")
        cmd.add_argument("--ready-timeout-s", type=float, default=600.0)
        cmd.add_argument("--out", default=f"out/{name}", help="raw CSV, logs, summary")
    load = commands["load"]
    load.add_argument("--users", type=int, default=0, help="callers (default 2 x server cores)")
    load.add_argument("--duration-s", type=int, default=120)
    load.add_argument("--spawn-rate", type=float, default=0.0,
                      help="callers started per second (default: one per server core; all "
                           "at once would end their first turns together, a herd no "
                           "telephone network sends)")
    load.add_argument("--dialogs-per-core", type=int, default=0,
                      help="server admission (default: callers / server cores, rounded up)")
    density = commands["density"]
    # Defaults per stack (STACKS[...]["sweep"]): what docs/benchmarks/density.md was made with.
    density.add_argument("--step-s", type=float, default=None)
    density.add_argument("--settle-s", type=float, default=None)
    density.add_argument("--max-dialogs-per-core", type=positive_int, default=None,
                         help="levels 1, 2, … up to this (without --levels)")
    density.add_argument("--levels", type=parse_levels, default=None,
                         help="dialogs per core to visit in order, e.g. 1,4,8,12 (default: "
                              "the stack's levels)")
    density.add_argument("--repeats", type=positive_int, default=1,
                         help="windows of (step - settle) s each level is held for, each "
                              "measured; a level holds only if every one is within the SLO")
    density.add_argument("--report-dir", default=str(ROOT / "docs" / "benchmarks"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _load(args) if args.command == "load" else _density(args)


if __name__ == "__main__":
    raise SystemExit(main())
