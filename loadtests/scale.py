"""``make scale-test``: two voicebot nodes behind nginx, one drained mid-load, no call lost.

    python -m loadtests.scale --short      # lite stack, 4 callers, about a minute (make test)
    python -m loadtests.scale              # default stack (REAL Whisper + Piper), minutes

Node A (pinned to ``--cpus-a``) and node B (``--cpus-b``) serve on loopback ports, each
admitting every caller alone; nginx (``docker/nginx/voicebot.conf``: least_conn, the
503 handshake or a refused connection retried on the next node) takes the calls
Locust places; a real Prometheus scrapes both nodes' ``/metrics`` each second.
``--drain-at-s`` into the load, once A holds a live call, A gets SIGTERM: its
``/readyz`` turns 503, its new handshakes are refused (``refused_draining``) and
nginx places them on B, its live calls finish, and it exits.  Then Locust's results
(every call counted; none may fail) are checked against PromQL over both nodes
(both admitted calls; admitted on A + B = calls placed) and the summary is printed
and written to ``--report`` (Markdown, and JSON beside it).  Exit 0 on a pass.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from loadtests.machine import cpu_model
from loadtests.results import read_rows, summarize
from loadtests.scale_report import (
    DrainRecord,
    drain_lines,
    live_dialogs,
    locust_failures,
    nginx_handshakes,
    node_figures,
    render,
    verdict,
)
from loadtests.scale_rig import (
    ROOT,
    Managed,
    find_binary,
    free_port,
    http_status,
    managed,
    nginx_command,
    prometheus_command,
    promql,
    tail,
    wait_until,
    write_nginx,
    write_prometheus,
)

__all__ = ["SHORT", "ScaleOptions", "main", "run"]

STACK_MODELS = {
    "lite": "REAL pocketsphinx en-us (scenario LM) + MiniLM-L6 int8 + espeak-ng; Silero VAD",
    "default": "REAL Whisper tiny.en int8 (CTranslate2) + MiniLM-L6 int8 + Piper "
               "en_US-joe-medium; Silero VAD",
    "reference": "REAL Whisper base int8 (CTranslate2) + MiniLM-L6 int8 + Piper "
                 "en_US-joe-medium; Silero VAD",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ScaleOptions:
    """One scale test: the stack both nodes serve, the load, when A is drained, where the
    nodes run.  The defaults are the long run; :data:`SHORT` is ``make test``'s."""

    stack: str = "default"
    users: int = 4
    spawn_rate: float = 1.0
    duration_s: float = 240.0
    drain_at_s: float = 120.0
    drain_timeout_s: float = 120.0
    """A's ``drain_timeout_s``: long enough for a call to finish."""
    stop_timeout_s: float = 120.0
    """Locust's wait for the calls in progress when the time is up."""
    slo_p95_ms: float = 1500.0
    cpus_a: str = "0"
    cpus_b: str = "1"
    protocol: str = "native"
    barge_in: float = 0.2
    ready_timeout_s: float = 600.0
    work_dir: Path | None = None
    """Configs, logs, Locust's CSVs, the TSDB (default: a new temporary folder, kept)."""
    report: Path | None = ROOT / "out" / "scale-test.md"


SHORT = ScaleOptions(
    stack="lite", users=4, spawn_rate=0.5, duration_s=12.0, drain_at_s=1.0,
    drain_timeout_s=120.0, stop_timeout_s=120.0, ready_timeout_s=300.0,
    # 8 kHz μ-law: card numbers typed on the keypad, so no misheard digit drags a call on.
    protocol="native-mulaw",
    # Shared CI cores: admission's latency gate must not refuse calls this check is not
    # about (capacity still does).
    slo_p95_ms=5000.0)
"""The ``make test`` version.  A scripted call lasts about 30 s, so the proof is
staggered instead of long: callers arrive every 2 s, A gets SIGTERM as soon as it holds
a call, and the callers still arriving are offered to A while it drains (least_conn),
refused there and placed on B.  Locust spawns the 4th caller about 6-8 s in, so the
window is 12 s: at 8 s the last caller sometimes never dialled, and with A and B tied
at one call each nginx may place the 3rd on B, leaving A's refusal unexercised.  About
a minute in all (the longest call decides)."""


def _node(name: str, options: ScaleOptions, *, port: int, cpus: str, folder: Path,
          config: Path) -> contextlib.AbstractContextManager[Managed]:
    env = dict(os.environ, VOICEBOT_LOG_LEVEL="INFO",
               VOICEBOT_DATA_DIR=str(folder / name / "data"))
    return managed(name, [
        sys.executable, "-m", "server", "serve", "--config", str(config),
        "--stack", options.stack, "--port", str(port), "--cpus", cpus,
        "--dialogs-per-core", str(options.users), "--slo-p95-ms", str(options.slo_p95_ms),
    ], log_dir=folder, env=env, stop_grace_s=10.0)


def _locust(options: ScaleOptions, folder: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
            "--host", url, "--headless", "--only-summary", "-u", str(options.users),
            "-r", str(options.spawn_rate), "-t", f"{math.ceil(options.duration_s)}s",
            "--stop-timeout", str(math.ceil(options.stop_timeout_s)),
            "--vb-protocol", options.protocol, "--vb-barge-in", str(options.barge_in),
            "--vb-turn-csv", str(folder / "turns.csv"), "--csv", str(folder / "locust")]


def _drain_midway(options: ScaleOptions, node_a: Managed, port_a: int, locust: Managed,
                  started: float) -> DrainRecord:
    """SIGTERM to A at ``drain_at_s`` once it holds a live call (up to 30 s later); then
    follow it until it exits, while Locust runs on."""
    while time.monotonic() - started < options.drain_at_s and not locust.exited():
        time.sleep(0.2)
    deadline = time.monotonic() + 30.0
    live = live_dialogs(f"http://127.0.0.1:{port_a}/metrics")
    while live < 1 and time.monotonic() < deadline and not locust.exited():
        time.sleep(0.2)
        live = live_dialogs(f"http://127.0.0.1:{port_a}/metrics")
    sigterm = time.monotonic()
    node_a.proc.send_signal(signal.SIGTERM)
    print(f"SIGTERM to node A at {sigterm - started:.1f} s with {live} live call(s)",
          flush=True)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node_a.proc.wait(options.drain_timeout_s + options.duration_s + 30.0)
    code = node_a.proc.poll()
    return DrainRecord(sigterm_at_s=sigterm - started, live_at_sigterm=live,
                       exit_code=code, drain_s=time.monotonic() - sigterm if code is not None
                       else math.nan)


def run(options: ScaleOptions) -> dict[str, Any]:
    """The whole scale-out proof; the summary (``summary["verdict"] == "pass"``)."""
    nginx_bin, prometheus_bin = find_binary("nginx"), find_binary("prometheus")
    if nginx_bin is None or prometheus_bin is None:
        raise RuntimeError("needs nginx and prometheus (apt-get install nginx prometheus)")
    folder = options.work_dir or Path(tempfile.mkdtemp(prefix="voicebot-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    ports = {"a": free_port(), "b": free_port(), "nginx": free_port(), "prom": free_port()}
    node_config = folder / "node.yaml"
    node_config.write_text(f"drain_timeout_s: {options.drain_timeout_s}\n")
    prom_url = f"http://127.0.0.1:{ports['prom']}"
    print(f"scale test: {options.users} callers through nginx :{ports['nginx']} to node A "
          f":{ports['a']} (CPU {options.cpus_a}) and B :{ports['b']} (CPU {options.cpus_b}), "
          f"{options.stack} stack; logs in {folder}", flush=True)
    logs: list[Path] = []
    with contextlib.ExitStack() as stack:
        node_a = stack.enter_context(_node("node-a", options, port=ports["a"],
                                           cpus=options.cpus_a, folder=folder,
                                           config=node_config))
        node_b = stack.enter_context(_node("node-b", options, port=ports["b"],
                                           cpus=options.cpus_b, folder=folder,
                                           config=node_config))
        logs += [node_a.log_path, node_b.log_path]
        for port in (ports["a"], ports["b"]):
            wait_until(f"/readyz of :{port}", functools.partial(_ready, port),
                       timeout_s=options.ready_timeout_s, alive=(node_a, node_b))
        prom = stack.enter_context(managed("prometheus", prometheus_command(
            prometheus_bin, write_prometheus(folder / "prometheus", targets={
                "a": ports["a"], "b": ports["b"]}), port=ports["prom"]), log_dir=folder))
        nginx = stack.enter_context(managed("nginx", nginx_command(nginx_bin, write_nginx(
            folder / "nginx", listen_port=ports["nginx"],
            upstream_ports=(ports["a"], ports["b"]))), log_dir=folder, stop_grace_s=5.0))
        logs += [prom.log_path, nginx.log_path, folder / "nginx" / "logs" / "error.log"]
        prom_started = time.monotonic()
        wait_until("nginx", lambda: http_status(
            f"http://127.0.0.1:{ports['nginx']}/nginx/healthz") == 200, timeout_s=30,
            alive=(nginx,))
        wait_until("Prometheus scraping both nodes", lambda: _both_up(prom_url),
                   timeout_s=60, alive=(prom,))
        started = time.monotonic()
        locust = stack.enter_context(managed("locust", _locust(
            options, folder, f"ws://127.0.0.1:{ports['nginx']}"), log_dir=folder,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))))
        logs.append(locust.log_path)
        drain = _drain_midway(options, node_a, ports["a"], locust, started)
        try:
            locust.proc.wait(options.duration_s + options.stop_timeout_s + 60.0)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError("Locust did not end:\n" + "\n".join(map(tail, logs))) from exc
        wall_s = time.monotonic() - started
        rows = read_rows(folder / "turns.csv") if (folder / "turns.csv").exists() else []
        calls = sum(1 for r in rows if r["kind"] == "call")
        # Prometheus' last scrape of B must come after the last call: wait until the
        # admitted counters add up to the calls placed (or 10 s, and report what is seen).
        range_s = math.ceil(time.monotonic() - prom_started) + 10
        with contextlib.suppress(RuntimeError):
            wait_until("Prometheus' last scrapes", lambda: _admitted_total(
                prom_url, range_s) >= calls, timeout_s=10.0)
        time.sleep(2.0)
        nodes = node_figures(prom_url, range_s=math.ceil(time.monotonic() - prom_started) + 10)
    summary: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
        "stack": options.stack, "models": STACK_MODELS.get(options.stack, "see server/stacks.py"),
        "options": {k: str(v) if isinstance(v, Path) else v
                    for k, v in asdict(options).items()},
        "work_dir": str(folder), "wall_s": round(wall_s, 1),
        "locust": {"exit_code": locust.proc.returncode,
                   **locust_failures(folder / "locust_stats.csv")},
        "calls": calls, "callers": summarize(rows) if rows else {},
        "nodes": nodes, "drain": asdict(drain),
        "drain_log": drain_lines(node_a.log_path),
        "nginx": nginx_handshakes(folder / "nginx" / "logs" / "access.log",
                                  {"a": ports["a"], "b": ports["b"]}),
    }
    summary["verdict"] = verdict(summary)
    summary["logs"] = [str(p) for p in logs]
    return summary


def _ready(port: int) -> bool:
    return http_status(f"http://127.0.0.1:{port}/readyz") == 200


def _both_up(prom_url: str) -> bool:
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        return sum(v for _, v in promql(prom_url, 'up{job="voicebot"}')) >= 2
    return False


def _admitted_total(prom_url: str, range_s: int) -> float:
    query = f'sum(max_over_time(voicebot_calls_total{{outcome="admitted"}}[{range_s}s]))'
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        return sum(v for _, v in promql(prom_url, query))
    return 0.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true",
                        help="the make-test version: lite stack, 4 callers, about a minute")
    notes = {"work_dir": "configs, logs, CSVs, TSDB (default: a new temporary folder, kept)",
             "report": "Markdown summary, JSON beside it (default out/scale-test.md)",
             "cpus_a": "node A's --cpus", "cpus_b": "node B's --cpus",
             "drain_at_s": "SIGTERM to A this long into the load, once it holds a call",
             "duration_s": "Locust places calls this long; calls in progress then finish"}
    for name, value in asdict(ScaleOptions()).items():
        kind = Path if name in ("work_dir", "report") else type(value)
        parser.add_argument(
            "--" + name.replace("_", "-"), type=kind, default=None,
            choices=sorted(STACK_MODELS) if name == "stack" else None,
            help=notes[name] if name in ("work_dir", "report") else
            f"{notes[name] + '; ' if name in notes else ''}default {value} "
            f"({getattr(SHORT, name)} with --short)")
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so every process started is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    given = {k: v for k, v in vars(args).items() if k != "short" and v is not None}
    options = replace(SHORT if args.short else ScaleOptions(), **given)
    try:
        summary = run(options)
    except (RuntimeError, OSError) as exc:
        print(f"scale test FAILED: {exc}", file=sys.stderr)
        return 1
    text = render(summary)
    print(text)
    if options.report is not None:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(text)
        options.report.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"written: {options.report} and {options.report.with_suffix('.json')}")
    if summary["verdict"] != "pass":
        for path in summary["logs"]:
            print(tail(Path(path)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
