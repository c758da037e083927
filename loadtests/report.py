"""``docs/benchmarks/density.md`` and its plot, from the sweeps in ``density/<stack>.json``.

    python -m loadtests.report [docs/benchmarks]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["max_density", "render"]

_ORDER = ("reference", "reference-utterance", "default")


def _load(report_dir: Path) -> list[dict[str, Any]]:
    sweeps = {p.stem: json.loads(p.read_text())
              for p in sorted((report_dir / "density").glob("*.json"))}
    names = [n for n in _ORDER if n in sweeps] + sorted(set(sweeps) - set(_ORDER))
    return [sweeps[n] for n in names]


def max_density(sweep: dict[str, Any]) -> tuple[int, bool]:
    """The most dialogs per core whose step (and every one before) kept the SLO, and
    whether the sweep found the limit (False: it stopped at its cap while still in)."""
    best = 0
    for step in sweep["steps"]:
        if step["verdict"] != "within SLO":
            return best, True
        best = step["dialogs_per_core"]
    return best, False


def _ms(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.0f}"


def _table(sweep: dict[str, Any]) -> list[str]:
    lines = ["| dialogs/core | callers | turns | turn p50 ms | p95 ms | p99 ms | greeting p95 ms "
             "| barge-in p50 ms | server CPU % | Locust CPU % | max send lag ms "
             "| calls ok/refused/failed | step |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for step in sweep["steps"]:
        s, c = step["summary"], step["summary"]["calls"]
        lines.append(
            f"| {step['dialogs_per_core']} | {step['users']} | {s['turn']['n']} "
            f"| {_ms(s['turn']['p50_ms'])} | {_ms(s['turn']['p95_ms'])} "
            f"| {_ms(s['turn']['p99_ms'])} | {_ms(s['greeting']['p95_ms'])} "
            f"| {_ms(s['barge_in']['p50_ms'])} | {_ms(step['cpu_percent'])} "
            f"| {_ms(step.get('client_cpu_percent'))} | {_ms(s.get('max_send_lag_ms'))} "
            f"| {c['completed']}/{c['refused']}/{c['failed']} | {step['verdict']} |")
    return lines


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
            ax.plot(x, [s["summary"]["turn"][f"{q}_ms"] for s in steps], style,
                    label=f"turn {q}")
        ax.axhline(sweep["slo_ms"], color="red", linestyle="--", label="SLO (p95)")
        ax.set_xlabel("concurrent dialogs per core")
        ax.set_ylabel("turn latency, ms")
        if len(x) <= 12:
            ax.set_xticks(x)
        else:  # every step labelled would overlap
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        synthetic = "SYNTHETIC" in sweep["models"]
        ax.set_title(f"{sweep['stack']} stack — {'synthetic' if synthetic else 'real'} "
                     f"models\nencoder window: {sweep['encoder_window']}", fontsize=10)
        cpu = ax.twinx()
        cpu.plot(x, [s["cpu_percent"] if s["cpu_percent"] is not None else math.nan
                     for s in steps], ":", color="gray", label="server CPU %")
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


def render(report_dir: Path) -> str:
    """Write density.md and density.png from the stored sweeps; returns the Markdown."""
    sweeps = _load(report_dir)
    lines = [
        "# Density: concurrent dialogs per core within the latency SLO", "",
        "Written by `make density` (loadtests/run.py → Locust with loadtests/density.py). "
        "Each step holds *dialogs per core x server cores* Locust callers placing scripted "
        "real-time calls back to back (20 ms frames; greeting → intent → slot → goodbye, "
        "or an agent request; 20% talk over the greeting); its figures come from the turns "
        "after the step's settling time. Turn latency = end of caller speech → first bot "
        "audio frame, measured at the caller. Server CPU = CPU time of the server's processes "
        "over the same window (its `/metrics`); Locust CPU and the callers' worst lag behind "
        "their 20 ms frame clock show whether the load generator kept up. The server runs "
        "with admission opened wide so the sweep finds the limit; in production "
        "`dialogs_per_core` caps admission.", "",
        "![density plot](density.png)", "",
        "| stack | models | encoder window | max dialogs/core within SLO |", "|---|---|---|---|",
    ]
    for sweep in sweeps:
        best, found = max_density(sweep)
        lines.append(f"| {sweep['stack']} | {sweep['models']} | {sweep['encoder_window']} "
                     f"| **{best}**{'' if found else ' (sweep cap reached)'} |")
    for sweep in sweeps:
        lines += ["", f"## {sweep['stack']} stack", "",
                  f"- models: {sweep['models']}",
                  f"- encoder window: {sweep['encoder_window']}",
                  f"- CPU: {sweep['cpu']}; {sweep['pinning']}; {sweep['server_cores']} server "
                  f"core(s)", f"- date: {sweep['date']}",
                  f"- protocol: {sweep['protocol']}; step {sweep['step_s']:.0f} s, first "
                  f"{sweep['settle_s']:.0f} s left out; SLO p95 ≤ {sweep['slo_ms']:.0f} ms",
                  "- caller speech: SYNTHETIC (espeak-ng, loadtests/audio)", "",
                  *_table(sweep)]
    text = "\n".join(lines) + "\n"
    if sweeps:
        _plot(sweeps, report_dir / "density.png")
    (report_dir / "density.md").write_text(text)
    return text


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")))
