"""Density sweep: step concurrent dialogs per core through levels until the SLO breaks.

    locust -f loadtests/density.py --host ws://127.0.0.1:8790 --headless \\
        --vb-server-cores 1 --vb-levels 1,4,8,12 --vb-repeats 3 --vb-step-s 60 \\
        --vb-settle-s 20 --vb-density-out out/steps.json

Each level holds ``dialogs per core x server cores`` callers for ``settle + repeats x
window`` seconds, window = ``--vb-step-s`` - ``--vb-settle-s``: the first
``--vb-settle-s`` is left out (the new callers' greetings and the ramp), then
each of the ``--vb-repeats`` windows back to back gets its own figures (turn
p50/p95/p99, calls, the server's CPU use from its ``/metrics``, scraped at every
window boundary), and so does their pool.  Levels are ``--vb-levels`` in order
(default 1, 2, 3, … ``--vb-max-dialogs-per-core``).  The sweep stops after the
first level that did not hold (:func:`loadtests.density_windows.level_verdict`:
the pooled p95 or any window's p95 over ``--vb-slo-ms``, or a refused or failed
call); that level is recorded too.  ``make density`` runs this against a pinned
server and renders ``docs/benchmarks/density.md``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import LocalRunner

from loadtests.density_windows import (
    HELD,
    Window,
    default_levels,
    level_verdict,
    levels_arg,
    parse_levels,
    phase,
    positive_int,
    summarize_windows,
)
from loadtests.locustfile import COLLECTOR, VoiceCallUser
from loadtests.server_metrics import Snapshot, scrape

__all__ = ["DensityShape", "Step", "VoiceCallUser"]

log = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--vb-server-cores", type=int, default=1,
                        help="cores the server runs on (callers per level = dialogs x cores)")
    parser.add_argument("--vb-step-s", type=float, default=90.0,
                        help="a level held once: its settling plus one window")
    parser.add_argument("--vb-settle-s", type=float, default=30.0,
                        help="start of each level left out of its figures")
    parser.add_argument("--vb-max-dialogs-per-core", type=int, default=16,
                        help="without --vb-levels: levels 1, 2, 3, … up to this")
    parser.add_argument("--vb-levels", type=levels_arg, default="",
                        help="dialogs per core to visit in order, e.g. 1,4,8,12")
    parser.add_argument("--vb-repeats", type=positive_int, default=1,
                        help="windows of (step - settle) s per level, each measured")
    parser.add_argument("--vb-slo-ms", type=float, default=1500.0,
                        help="p95 turn latency that ends the sweep")
    parser.add_argument("--vb-density-out", default="", help="write the levels here (JSON)")


@dataclass(slots=True)
class Step:
    """One level of the sweep: its figures pooled over its windows, and each window's."""

    dialogs_per_core: int
    users: int
    start_unix: float
    settle_unix: float
    end_unix: float = 0.0
    repeats: int = 1
    window_s: float = 0.0
    cpu_percent: float | None = None  # over all windows
    client_cpu_percent: float | None = None  # this Locust process (local runs only)
    part_means_ms: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # turns pooled over the windows
    windows: list[Window] = field(default_factory=list)
    verdict: str = ""


@dataclass(frozen=True, slots=True)
class _Mark:
    """A window boundary: when, the server's /metrics, this process's CPU seconds."""

    unix: float
    server: Snapshot
    process_s: float


class DensityShape(LoadTestShape):
    """Levels of dialogs per core, each held for its windows; stops at one that breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self._marks: list[_Mark] = []
        self._done = False

    def _option(self, name: str) -> Any:
        assert self.runner is not None
        return getattr(self.runner.environment.parsed_options, name)

    def _host(self) -> str:
        assert self.runner is not None
        return str(self.runner.environment.host)

    def levels(self) -> tuple[int, ...]:
        text = str(self._option("vb_levels") or "")
        if text.strip():
            return parse_levels(text)
        return default_levels(int(self._option("vb_max_dialogs_per_core")))

    def _timing(self) -> tuple[float, float, int]:
        """(settle s, window s, repeats)."""
        settle_s = float(self._option("vb_settle_s"))
        window_s = max(0.0, float(self._option("vb_step_s")) - settle_s)
        return settle_s, window_s, max(1, int(self._option("vb_repeats")))

    def tick(self) -> tuple[int, float] | None:
        if self._done:
            return None
        now = time.time()
        cores = max(1, int(self._option("vb_server_cores")))
        settle_s, window_s, repeats = self._timing()
        if not self.steps and not self._start_level(now, cores):
            self._done = True
            return None
        step = self.steps[-1]
        at = phase(now - step.start_unix, settle_s=settle_s, window_s=window_s,
                   repeats=repeats)
        while 0 <= at and len(self._marks) <= min(at, repeats - 1):
            self._mark(step, now)
        if at >= repeats:
            if not self.finish_step(step, now) or not self._start_level(now, cores):
                self._done = True
                return None
            step = self.steps[-1]
        return step.users, float(cores)

    def _start_level(self, now: float, cores: int) -> bool:
        levels = self.levels()
        if len(self.steps) >= len(levels):
            return False
        settle_s, window_s, repeats = self._timing()
        dialogs = levels[len(self.steps)]
        self.steps.append(Step(dialogs, dialogs * cores, now, now + settle_s,
                               repeats=repeats, window_s=window_s))
        self._marks = []
        log.info("density level: %d dialogs per core (%d callers), %d x %.0f s windows",
                 dialogs, dialogs * cores, repeats, window_s)
        return True

    def _mark(self, step: Step, now: float) -> None:
        self._marks.append(_Mark(now, scrape(self._host()), time.process_time()))
        if len(self._marks) == 1:
            step.settle_unix = now

    def finish_step(self, step: Step, now: float) -> bool:
        """Close ``step`` with its figures; False when the sweep should stop."""
        step.end_unix = now
        marks = [*self._marks, _Mark(now, scrape(self._host()), time.process_time())] \
            if self._marks else []
        self._marks = []
        pooled, summaries = summarize_windows(COLLECTOR.rows, start_unix=step.start_unix,
                                              bounds_unix=[m.unix for m in marks])
        local = isinstance(self.runner, LocalRunner)  # is the load generator keeping up?
        step.windows = []
        for k, (a, b) in enumerate(pairwise(marks)):
            cpu, client, parts = _cpu(a, b, local=local)
            step.windows.append(Window(k, a.unix, b.unix, summaries[k], cpu_percent=cpu,
                                       client_cpu_percent=client, part_means_ms=parts))
        if marks:
            step.cpu_percent, step.client_cpu_percent, step.part_means_ms = _cpu(
                marks[0], marks[-1], local=local)
        step.summary = pooled
        step.verdict = level_verdict(pooled, summaries, slo_ms=float(self._option("vb_slo_ms")),
                                     repeats=step.repeats)
        log.info("level %d dialogs/core: p95 %.0f ms (windows %s), CPU %s%%: %s",
                 step.dialogs_per_core, pooled["turn"]["p95_ms"],
                 ", ".join(f"{w.summary['turn']['p95_ms']:.0f}" for w in step.windows),
                 step.cpu_percent, step.verdict)
        return step.verdict == HELD


def _cpu(a: _Mark, b: _Mark, *, local: bool) -> tuple[float, float | None, dict[str, float]]:
    """Server CPU %, Locust CPU % (local runs) and mean turn parts between two marks."""
    wall_s = b.unix - a.unix
    client = 100.0 * (b.process_s - a.process_s) / max(wall_s, 1e-9) if local else None
    return (b.server.cpu_percent_since(a.server, wall_s), client,
            b.server.part_means_ms_since(a.server))


@events.quitting.add_listener
def _write_steps(environment: Environment, **_: Any) -> None:
    shape = environment.shape_class
    options = environment.parsed_options
    if not isinstance(shape, DensityShape) or options is None or not options.vb_density_out:
        return
    if shape.steps and not shape.steps[-1].verdict:
        shape.finish_step(shape.steps[-1], time.time())
    out = Path(options.vb_density_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settle_s = float(options.vb_settle_s)
    out.write_text(json.dumps({"slo_ms": options.vb_slo_ms, "step_s": options.vb_step_s,
                               "settle_s": settle_s,
                               "window_s": max(0.0, float(options.vb_step_s) - settle_s),
                               "repeats": options.vb_repeats, "levels": list(shape.levels()),
                               "server_cores": options.vb_server_cores,
                               "protocol": options.vb_protocol,
                               "steps": [asdict(s) for s in shape.steps]}, indent=1) + "\n")
