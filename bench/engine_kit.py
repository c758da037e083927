"""The kit of ``python -m bench engines`` cases: inputs, a case, timing and report rows.

Shared by every case in :mod:`bench.engine_cases`: the case record, the
inputs a case gets, paired timing of an adapter against the raw library call,
and the report row built from the timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.ort_session import open_session

__all__ = ["CHUNK_SAMPLES", "SAMPLE_RATE_HZ", "EngineCase", "Inputs", "Params", "Pcm",
           "Unavailable", "audio_seconds", "chunks", "ort_session", "paired", "result_row",
           "rss_mb"]

SAMPLE_RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # the server feeds VAD and ASR 32 ms windows

Pcm = npt.NDArray[np.int16]
Params = Mapping[str, Any]


class Unavailable(Exception):
    """A case cannot run here (model missing): reported, not an error."""


@dataclass(frozen=True, slots=True)
class Inputs:
    caller: tuple[tuple[str, Pcm], ...]  # (text, 16 kHz PCM); TTS gets BOT_REPLIES
    quick: bool
    params: Params = field(default_factory=dict)

    def reps(self, full: int) -> int:
        return 1 if self.quick else full


@dataclass(frozen=True, slots=True)
class EngineCase:
    """One row: ``prepare`` runs in the parent (e.g. builds a model), ``measure`` in a child."""

    name: str
    engine: str
    module: str  # must be importable, else the row is "not available"
    measure: Callable[[Inputs], dict[str, Any]]
    prepare: Callable[[Path, Path, Params], Params] | None = None
    options: Params = field(default_factory=dict)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(ln.split()[1]) / 1024.0 for ln in status if ln.startswith("VmRSS:"))


def paired(call: Callable[[Any], Any], items: Sequence[Any], raw: Callable[[Any], Any],
            raw_items: Sequence[Any], reps: int) -> tuple[list[float], list[float]]:
    """Seconds of ``call(item)`` and ``raw(raw_item)``, alternating (load hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for pair in [pair for _ in range(reps) for pair in zip(items, raw_items, strict=True)]:
        for function, item, out in zip((call, raw), pair, times, strict=True):
            start = time.perf_counter()
            function(item)
            out.append(time.perf_counter() - start)
    return times


def result_row(
    *, model: str, synthetic: bool, unit: str, rss_mb: float, times_s: Sequence[float], raw: str,
    raw_times_s: Sequence[float], audio_s: float | None = None, compute_s: float | None = None,
    raw_compute_s: float | None = None, notes: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """A case's row; compute defaults to the summed latencies; overhead: median paired ratio."""
    p50, p95 = (float(np.percentile(times_s, q)) * 1000.0 for q in (50, 95))
    row: dict[str, Any] = {
        "model": model, "synthetic": synthetic, "threads": 1, "unit": unit, "n": len(times_s),
        "p50_ms": p50, "p95_ms": p95, "rss_mb": rss_mb, "raw": raw, "notes": list(notes),
        "rtf": (compute_s or sum(times_s)) / audio_s if audio_s else None,
        "raw_p50_ms": None, "raw_p95_ms": None, "raw_rtf": None, "overhead": None,
    }  # fmt: skip
    if raw_times_s:
        raw_p50, raw_p95 = (float(np.percentile(raw_times_s, q)) * 1000.0 for q in (50, 95))
        ratios = np.asarray(times_s) / np.asarray(raw_times_s)
        row.update(raw_p50_ms=raw_p50, raw_p95_ms=raw_p95, overhead=float(np.median(ratios)))
        row["raw_rtf"] = (raw_compute_s or sum(raw_times_s)) / audio_s if audio_s else None
        row["notes"] += [f"raw RTF {row['raw_rtf']:.3g}"] if row["raw_rtf"] else []
    return row


def ort_session(path: Path) -> Any:
    """The raw onnxruntime session for a case's baseline, opened as voicebot opens its
    own (one thread, sequential, no spinning): :func:`voicebot.ort_session.open_session`."""
    return open_session(path, threads=1, what="benchmark baseline")


def audio_seconds(caller: Sequence[tuple[str, Pcm]]) -> float:
    return sum(len(pcm) for _, pcm in caller) / SAMPLE_RATE_HZ


def chunks(pcm: Pcm) -> list[Pcm]:
    return [pcm[i : i + CHUNK_SAMPLES] for i in range(0, len(pcm), CHUNK_SAMPLES)]
