"""The density sweep's pure parts: its levels, a level's windows, and whether a level held.

A level (dialogs per core) is held for ``settle_s + repeats x window_s``: the
first ``settle_s`` is left out (the fresh callers' greetings and the ramp), then
``repeats`` windows of ``window_s`` follow back to back.  Each window gets its
own figures, and so does the pool of all of them; the level holds only when
nothing was refused or failed, every window measured turns, and the pooled p95
and every window's p95 are within the SLO — one lucky window cannot carry it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.results import summarize

__all__ = [
    "HELD",
    "Window",
    "default_levels",
    "level_verdict",
    "levels_arg",
    "parse_levels",
    "phase",
    "positive_int",
    "split_rows",
    "summarize_windows",
    "window_bounds",
]

HELD = "within SLO"  # the verdict of a level that held (old sweeps use it too)


@dataclass(frozen=True, slots=True)
class Window:
    """One measured window of a level: its turns' figures and the server's CPU use."""

    index: int
    start_unix: float
    end_unix: float
    summary: dict[str, Any]
    cpu_percent: float | None = None
    client_cpu_percent: float | None = None  # this Locust process (local runs only)
    part_means_ms: dict[str, float] = field(default_factory=dict)


def parse_levels(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` → ``(1, 4, 8)``: positive, strictly increasing dialogs per core."""
    levels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            level = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"levels are a comma list of whole dialogs per core, like 1,4,8: {part!r} "
                f"in {text!r} is not a whole number") from None
        if level < 1:
            raise argparse.ArgumentTypeError(f"levels must be at least 1: {level} in {text!r}")
        if levels and level <= levels[-1]:
            raise argparse.ArgumentTypeError(
                f"levels must be strictly increasing: {level} after {levels[-1]} in {text!r}")
        levels.append(level)
    return tuple(levels)


def levels_arg(text: str) -> str:
    """argparse ``type`` for Locust: checks the list, keeps it a string (its web UI)."""
    return ",".join(map(str, parse_levels(text))) if text.strip() else ""


def positive_int(text: str) -> int:
    """argparse ``type``: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value}")
    return value


def default_levels(max_dialogs_per_core: int) -> tuple[int, ...]:
    """1, 2, 3, … up to the cap: the sweep without ``--vb-levels``."""
    return tuple(range(1, max_dialogs_per_core + 1))


def phase(elapsed_s: float, *, settle_s: float, window_s: float, repeats: int) -> int:
    """Where a level is ``elapsed_s`` after it started: -1 settling, k in window k
    (0-based), ``repeats`` once its last window is over."""
    if elapsed_s < settle_s:
        return -1
    if window_s <= 0:
        return repeats
    return min(repeats, int((elapsed_s - settle_s) // window_s))


def window_bounds(settle_unix: float, *, window_s: float, repeats: int) -> list[float]:
    """The nominal ``repeats + 1`` boundaries of a level's windows."""
    return [settle_unix + k * window_s for k in range(repeats + 1)]


def split_rows(rows: Sequence[Mapping[str, Any]], *, start_unix: float,
               bounds_unix: Sequence[float]) -> list[list[Mapping[str, Any]]]:
    """Rows per window ``[bounds[k], bounds[k + 1])``.  Latencies count in the window they
    were measured in; a call counts where it ended, those that ended while the level
    settled in its first window (a call refused at the ramp is not left out)."""
    windows: list[list[Mapping[str, Any]]] = [[] for _ in range(max(0, len(bounds_unix) - 1))]
    for row in rows:
        t = float(row["time_unix"])
        for k, out in enumerate(windows):
            lo = start_unix if k == 0 and row["kind"] == "call" else bounds_unix[k]
            if lo <= t < bounds_unix[k + 1]:
                out.append(row)
                break
    return windows


def level_verdict(pooled: Mapping[str, Any], windows: Sequence[Mapping[str, Any]], *,
                  slo_ms: float, repeats: int) -> str:
    """:data:`HELD` when the level held, else ``"stop: why"`` (summaries of
    :func:`loadtests.results.summarize`: the pooled one and one per window)."""
    calls = pooled["calls"]
    if calls["failed"] or calls["refused"]:
        return f"stop: {calls['failed']} failed, {calls['refused']} refused calls"
    if len(windows) < repeats:
        return f"stop: only {len(windows)} of {repeats} windows measured (the sweep ended)"
    if not pooled["turn"]["n"]:
        return "stop: no turns measured"
    empty = [k + 1 for k, w in enumerate(windows) if not w["turn"]["n"]]
    if empty:
        return f"stop: no turns measured in window {', '.join(map(str, empty))}"
    p95 = float(pooled["turn"]["p95_ms"])
    if p95 > slo_ms:
        return f"stop: p95 {p95:.0f} ms > SLO {slo_ms:.0f} ms"
    over = [(k + 1, float(w["turn"]["p95_ms"])) for k, w in enumerate(windows)
            if float(w["turn"]["p95_ms"]) > slo_ms]
    if over:
        which = ", ".join(f"{k} ({ms:.0f} ms)" for k, ms in over)
        return f"stop: p95 of window {which} > SLO {slo_ms:.0f} ms (pooled {p95:.0f} ms)"
    return HELD


def summarize_windows(rows: Sequence[Mapping[str, Any]], *, start_unix: float,
                      bounds_unix: Sequence[float]) -> tuple[dict[str, Any],
                                                             list[dict[str, Any]]]:
    """The pooled summary (turns over all windows, calls over the whole level) and
    one summary per window."""
    per_window = split_rows(rows, start_unix=start_unix, bounds_unix=bounds_unix)
    return (summarize([r for w in per_window for r in w]),
            [summarize(w) for w in per_window])
