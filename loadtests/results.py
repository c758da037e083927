"""What a load test measured: one row per turn or call, the raw CSV, and summaries.

Locust rounds response times and mixes kinds, so every measurement is also
kept raw here.  Row kinds: ``greeting`` (start → first bot audio), ``turn``
(end of caller speech → first bot audio), ``dtmf`` (keys sent → first bot
audio), ``barge_in`` (caller onset → the server's ``clear``), ``intent`` (the
intent a caller's phrase meant against the one the server recognised, over the
native protocol: outcome ``ok`` or ``mismatch``) and ``call`` (one per call, with
its outcome: completed, refused or failed).
"""

from __future__ import annotations

import csv
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ROW_FIELDS", "CallResult", "CsvSink", "Sample", "percentile", "read_rows", "sample_row",
           "summarize"]

ROW_FIELDS = ("time_unix", "worker", "call_id", "protocol", "script", "kind", "turn", "phrase",
              "expected_intent", "intent", "latency_ms", "outcome", "error", "send_lag_ms", "users")


@dataclass(frozen=True, slots=True)
class Sample:
    """One latency measured during a call (``latency_ms`` None when it never came), or
    an ``intent`` check (no latency: what the phrase meant and what was recognised)."""

    kind: str
    time_unix: float
    latency_ms: float | None
    turn: int = 0
    phrase: str = ""
    expected_intent: str | None = None
    intent: str | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        """``ok``, ``error`` (the measurement never came) or, for an intent check,
        ``mismatch``."""
        if self.kind == "intent":
            return "ok" if self.intent == self.expected_intent else "mismatch"
        return "ok" if self.error is None else "error"

    def intent_entry(self) -> tuple[str, str | None]:
        """An intent check as a Locust entry: its name (the intent meant, or
        ``mismatch:<meant>→<heard>``) and its failure (None when they agree)."""
        meant, heard = self.expected_intent, self.intent
        if self.outcome == "ok":
            return str(meant), None
        return f"mismatch:{meant}→{heard}", f"meant {meant}, heard {heard}"


@dataclass(slots=True)
class CallResult:
    call_id: str
    protocol: str
    script: str
    started_unix: float
    outcome: str = "failed"  # completed | refused | failed
    error: str | None = None
    duration_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    checks: list[Sample] = field(default_factory=list)  # kind "intent": meant vs recognised
    max_send_lag_ms: float = 0.0

    def base(self, *, worker: str) -> dict[str, Any]:
        """The columns every row of this call shares."""
        return {"worker": worker, "call_id": self.call_id, "protocol": self.protocol,
                "script": self.script}

    def call_row(self, *, worker: str) -> dict[str, Any]:
        """The call's own row: its duration and outcome."""
        return {**self.base(worker=worker),
                "time_unix": round(self.started_unix + self.duration_s, 3), "kind": "call",
                "turn": len(self.samples), "phrase": "", "expected_intent": "", "intent": "",
                "latency_ms": round(self.duration_s * 1000, 1), "outcome": self.outcome,
                "error": self.error or "", "send_lag_ms": round(self.max_send_lag_ms, 1)}


def sample_row(sample: Sample, **base: Any) -> dict[str, Any]:
    latency = "" if sample.latency_ms is None else round(sample.latency_ms, 1)
    return {**base, "time_unix": round(sample.time_unix, 3), "kind": sample.kind,
            "turn": sample.turn, "phrase": sample.phrase,
            "expected_intent": sample.expected_intent or "", "intent": sample.intent or "",
            "latency_ms": latency, "outcome": sample.outcome, "error": sample.error or ""}


class CsvSink:
    """Appends rows to a CSV file (header once); thread- and greenlet-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=ROW_FIELDS, extrasaction="ignore")
        self._writer.writeheader()
        self._lock = threading.Lock()

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._writer.writerows(rows)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 1]; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _latencies(rows: Iterable[Mapping[str, Any]], kind: str) -> list[float]:
    return [float(r["latency_ms"]) for r in rows
            if r["kind"] == kind and r["outcome"] == "ok" and r["latency_ms"] not in ("", None)]


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """p50/p95/p99 per kind, counts of calls by outcome, intent agreement (the turns
    whose meant and recognised intents are both known: how many agreed, and each
    ``meant→heard`` pair that did not, with its count)."""
    out: dict[str, Any] = {}
    for kind in ("turn", "greeting", "dtmf", "barge_in"):
        values = _latencies(rows, kind)
        out[kind] = {"n": len(values), **{f"p{q}_ms": percentile(values, q / 100)
                                          for q in (50, 95, 99)},
                     "max_ms": max(values, default=math.nan)}
    calls = [r for r in rows if r["kind"] == "call"]
    out["calls"] = {outcome: sum(1 for r in calls if r["outcome"] == outcome)
                    for outcome in ("completed", "refused", "failed")}
    lags = [float(r["send_lag_ms"]) for r in calls if r.get("send_lag_ms") not in ("", None)]
    out["max_send_lag_ms"] = max(lags, default=math.nan)
    out["turn_errors"] = sum(1 for r in rows if r["kind"] != "call" and r["outcome"] == "error")
    out["failures"] = sorted({str(r["error"]) for r in calls if r["outcome"] == "failed"})
    checked = [r for r in rows if r["kind"] == "turn" and r["expected_intent"] and r["intent"]]
    missed = Counter(f"{r['expected_intent']}→{r['intent']}" for r in checked
                     if r["intent"] != r["expected_intent"])
    out["intents"] = {"checked": len(checked), "as_expected": len(checked) - missed.total(),
                      "mismatches": missed.total(), "mismatched": dict(sorted(missed.items()))}
    return out
