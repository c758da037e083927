"""``docs/benchmarks/density.md`` and its plot, from the sweeps in ``density/<stack>.json``.

    python -m loadtests.report [docs/benchmarks]

A level is held for one or more windows (``repeats``), each with its own
figures; sweeps stored before repeats existed have none and read as one window
each.  A stack's headline is the highest level that held (every window within
the SLO) with every lower level visited also holding, reported with the spread
of its windows' p95.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.density_windows import HELD

__all__ = ["Headline", "headline", "max_density", "render", "window_p95s"]

_ORDER = ("default", "lite", "reference", "reference-30s")
_TO = "\N{EN DASH}"  # of a range, as in 812 to 1034 ms


@dataclass(frozen=True, slots=True)
class Headline:
    """A stack's most dialogs per core within the SLO, and its windows' p95 spread."""

    dialogs_per_core: int  # 0: not even the first level held
    limit_found: bool  # False: the last level visited still held
    repeats: int
    p95_median_ms: float = math.nan
    p95_min_ms: float = math.nan
    p95_max_ms: float = math.nan
    windows: int = 0


def _load(report_dir: Path) -> list[dict[str, Any]]:
    sweeps = {p.stem: json.loads(p.read_text())
              for p in sorted((report_dir / "density").glob("*.json"))}
    names = [n for n in _ORDER if n in sweeps] + sorted(set(sweeps) - set(_ORDER))
    return [sweeps[n] for n in names]


def _windows(step: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A level's windows; an old single-window level is its own window."""
    return list(step.get("windows") or [step])


def window_p95s(step: Mapping[str, Any]) -> list[float]:
    """Each window's p95 turn latency (NaN where a window measured no turn)."""
    return [float(w["summary"]["turn"]["p95_ms"]) for w in _windows(step)]


def _levels(sweep: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return sorted(sweep["steps"], key=lambda s: int(s["dialogs_per_core"]))


def max_density(sweep: Mapping[str, Any]) -> tuple[int, bool]:
    """The most dialogs per core whose level (and every one visited before) held, and
    whether the sweep found the limit (False: it stopped at its last level still in)."""
    best = 0
    for step in _levels(sweep):
        if step["verdict"] != HELD:
            return best, True
        best = int(step["dialogs_per_core"])
    return best, False


def headline(sweep: Mapping[str, Any]) -> Headline:
    best, found = max_density(sweep)
    repeats = int(sweep.get("repeats", 1))
    at = [s for s in sweep["steps"] if int(s["dialogs_per_core"]) == best]
    p95s = [v for v in window_p95s(at[0]) if not math.isnan(v)] if at and best else []
    if not p95s:
        return Headline(best, found, repeats)
    return Headline(best, found, repeats, statistics.median(p95s), min(p95s), max(p95s),
                    len(p95s))


def _ms(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.0f}"


def _spread(step: Mapping[str, Any], slo_ms: float) -> str:
    """Windows' p95: ``min-max (Δ, n windows)``; marked when it straddles the SLO."""
    p95s = [v for v in window_p95s(step) if not math.isnan(v)]
    n = len(_windows(step))
    if not p95s:
        return f"— ({n} window{'s' if n > 1 else ''})"
    lo, hi = min(p95s), max(p95s)
    if n == 1:
        return f"{_ms(lo)} (1 window)"
    text = f"{_ms(lo)}{_TO}{_ms(hi)} (Δ {_ms(hi - lo)}, {n} windows)"
    if len(p95s) < n:
        text += f", {n - len(p95s)} without turns"
    return text + (" ⚠ straddles the SLO" if lo <= slo_ms < hi else "")


def _table(sweep: Mapping[str, Any]) -> list[str]:
    lines = ["| dialogs/core | callers | turns | turn p50 ms | p95 ms | p95 ms per window "
             f"(min{_TO}max) | p99 ms | greeting p95 ms | barge-in p50 ms | server CPU % "
             "| Locust CPU % | max send lag ms | calls ok/refused/failed | level |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for step in sweep["steps"]:
        s, c = step["summary"], step["summary"]["calls"]
        lines.append(
            f"| {step['dialogs_per_core']} | {step['users']} | {s['turn']['n']} "
            f"| {_ms(s['turn']['p50_ms'])} | {_ms(s['turn']['p95_ms'])} "
            f"| {_spread(step, float(sweep['slo_ms']))} "
            f"| {_ms(s['turn']['p99_ms'])} | {_ms(s['greeting']['p95_ms'])} "
            f"| {_ms(s['barge_in']['p50_ms'])} | {_ms(step['cpu_percent'])} "
            f"| {_ms(step.get('client_cpu_percent'))} | {_ms(s.get('max_send_lag_ms'))} "
            f"| {c['completed']}/{c['refused']}/{c['failed']} | {step['verdict']} |")
    return lines


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _plot(sweeps: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 4.4), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps, strict=True):
        steps = sweep["steps"]
        x = [s["dialogs_per_core"] for s in steps]
        for q, style in (("p50", "-o"), ("p95", "-s"), ("p99", "-^")):
            ax.plot(x, [_nan(s["summary"]["turn"][f"{q}_ms"]) for s in steps], style,
                    label=f"turn {q}" + (" (pooled)" if q == "p95" else ""))
        if any(len(_windows(s)) > 1 for s in steps):  # the spread of the windows' p95
            spans = [[v for v in window_p95s(s) if not math.isnan(v)] or [math.nan]
                     for s in steps]
            ax.vlines(x, [min(v) for v in spans], [max(v) for v in spans], color="black",
                      linewidth=3, alpha=0.45, label=f"p95 per window, min{_TO}max "
                                                     f"({int(sweep.get('repeats', 1))}/level)")
        ax.axhline(sweep["slo_ms"], color="red", linestyle="--", label="SLO (p95)")
        ax.set_xlabel("concurrent dialogs per core")
        ax.set_ylabel("turn latency, ms")
        if len(x) <= 12:
            ax.set_xticks(x)
        else:  # every level labelled would overlap
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        synthetic = "SYNTHETIC" in sweep["models"]
        ax.set_title(f"{sweep['stack']} stack — {'synthetic' if synthetic else 'real'} "
                     f"models\nencoder window: {sweep['encoder_window']}", fontsize=10)
        cpu = ax.twinx()
        cpu.plot(x, [_nan(s["cpu_percent"]) for s in steps], ":", color="gray",
                 label="server CPU %")
        cpu.set_ylabel("server CPU, % of one core")
        cpu.set_ylim(0, 110)
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = cpu.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, fontsize=8, loc="upper left")
    first = sweeps[0]
    fig.suptitle(f"voicebot density — {first['cpu']}, server on one pinned core, "
                 f"{first['date'][:10]}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary_row(sweep: Mapping[str, Any]) -> str:
    h = headline(sweep)
    if h.windows > 1:
        spread = (f"{_ms(h.p95_median_ms)} [{_ms(h.p95_min_ms)}{_TO}{_ms(h.p95_max_ms)}] over "
                  f"{h.windows} windows")
    else:
        spread = f"{_ms(h.p95_median_ms)} (1 window)" if h.windows else "—"
    return (f"| {sweep['stack']} | {sweep['models']} | {sweep['encoder_window']} "
            f"| **{h.dialogs_per_core}**{'' if h.limit_found else ' (sweep cap reached)'} "
            f"| {spread} | {h.repeats} |")


def _timing(sweep: Mapping[str, Any]) -> str:
    settle_s = float(sweep["settle_s"])
    window_s = float(sweep.get("window_s", float(sweep["step_s"]) - settle_s))
    repeats = int(sweep.get("repeats", 1))
    levels = ", ".join(map(str, sweep["levels"])) if sweep.get("levels") else "1, 2, 3, …"
    return (f"- protocol: {sweep['protocol']}; levels {levels} dialogs/core"
            f", each held {settle_s + repeats * window_s:.0f} s: first {settle_s:.0f} s left "
            f"out, then {repeats} window{'s' if repeats > 1 else ''} of {window_s:.0f} s; "
            f"SLO p95 ≤ {float(sweep['slo_ms']):.0f} ms (pooled and every window)")


def render(report_dir: Path) -> str:
    """Write density.md and density.png from the stored sweeps; returns the Markdown."""
    sweeps = _load(report_dir)
    lines = [
        "# Density: concurrent dialogs per core within the latency SLO", "",
        "Written by `make density` (loadtests/run.py → Locust with loadtests/density.py). "
        "Each level holds *dialogs per core x server cores* Locust callers placing scripted "
        "real-time calls back to back (20 ms frames; greeting → intent → slot → goodbye, "
        "or an agent request; 20% talk over the greeting). After the level's settling time "
        "(left out) it is measured in `repeats` windows back to back, each with its own "
        "figures; the table's p50/p95/p99 pool them, and the per-window column shows the "
        "spread of the windows' p95 (⚠: some windows within the SLO, some over it). A level "
        "holds only when the pooled p95 and every window's p95 are within the SLO and no "
        "call was refused or failed; the headline is the highest level that held with every "
        "lower level visited also holding (sweeps made before repeats have one window per "
        "level). Turn latency = end of caller speech → first bot "
        "audio frame, measured at the caller. Server CPU = CPU time of the server's processes "
        "over the same windows (its `/metrics`); Locust CPU and the callers' worst lag behind "
        "their 20 ms frame clock show whether the load generator kept up. The server runs "
        "with admission opened wide so the sweep finds the limit; in production "
        "`dialogs_per_core` caps admission.", "",
        "![density plot](density.png)", "",
        "| stack | models | encoder window | max dialogs/core within SLO "
        f"| p95 ms at that level: median [min{_TO}max] over its windows | repeats |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_summary_row(sweep) for sweep in sweeps]
    for sweep in sweeps:
        lines += ["", f"## {sweep['stack']} stack", "",
                  f"- models: {sweep['models']}",
                  f"- encoder window: {sweep['encoder_window']}",
                  f"- CPU: {sweep['cpu']}; {sweep['pinning']}; {sweep['server_cores']} server "
                  f"core(s)", f"- date: {sweep['date']}", _timing(sweep),
                  "- caller speech: SYNTHETIC (espeak-ng, loadtests/audio)", "",
                  *_table(sweep)]
    text = "\n".join(lines) + "\n"
    if sweeps:
        _plot(sweeps, report_dir / "density.png")
    (report_dir / "density.md").write_text(text)
    return text


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")))
