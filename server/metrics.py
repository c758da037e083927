"""Prometheus metrics of a voicebot server, served at ``/metrics`` on the call port.

One registry per server (no global state, so tests can run several servers):
turn latency and its parts, live dialogs, admitted and refused calls, barge-ins,
engine real-time factors, resident memory and CPU time.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics", "cpu_seconds", "rss_bytes"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
_PART_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0)
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
TURN_PARTS = ("endpoint_wait", "asr", "nlu", "tts_first_audio", "queue_wait")


def rss_bytes(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), from /proc."""
    try:
        status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Metrics:
    """The server's metrics; ``cell`` labels name where dialogs run."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turn_latency = Histogram(
            "voicebot_turn_latency_seconds",
            "End of caller speech to first bot audio (greeting: start to first audio)",
            ["kind"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.turn_part = Histogram(
            "voicebot_turn_part_seconds", "Parts of the turn latency", ["part"],
            buckets=_PART_BUCKETS_S, registry=r)
        self.active_dialogs = Gauge(
            "voicebot_active_dialogs", "Live dialogs", ["cell"], registry=r)
        self.calls = Counter(
            "voicebot_calls", "Calls admitted or refused at the handshake", ["outcome"],
            registry=r)
        self.barge_ins = Counter("voicebot_barge_ins", "Bot replies interrupted", registry=r)
        self.engine_rtf = Histogram(
            "voicebot_engine_real_time_factor", "Engine compute time / audio duration",
            ["engine"], buckets=_RTF_BUCKETS, registry=r)
        self.rss = Gauge("voicebot_rss_bytes", "Resident memory (cell 'front': the front "
                         "process)", ["cell"], registry=r)
        self.rss.labels(cell="front").set_function(rss_bytes)
        self.cpu = Gauge("voicebot_cpu_seconds", "CPU time used, user + system (cell 'front': "
                         "the front process; a restarted cell starts again at 0)", ["cell"],
                         registry=r)
        self.cpu.labels(cell="front").set_function(cpu_seconds)
        self.cell_info = Gauge("voicebot_cell_up", "1 while a cell serves; its CPU and pid",
                               ["cell", "cpu", "pid"], registry=r)
        self.record_writes = Gauge(
            "voicebot_record_writes", "Call-record writes not done: dropped (queue full), "
            "failed (refused by the store), pending (queued)", ["state"], registry=r)
        for outcome in ("admitted", "refused_full", "refused_slo", "refused_draining"):
            self.calls.labels(outcome=outcome)
        for part in TURN_PARTS:
            self.turn_part.labels(part=part)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
