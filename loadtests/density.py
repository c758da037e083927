"""Density sweep: step concurrent dialogs per core 1, 2, 3, … until the SLO breaks.

    locust -f loadtests/density.py --host ws://127.0.0.1:8790 --headless \\
        --vb-server-cores 1 --vb-step-s 90 --vb-settle-s 30 --vb-density-out out/steps.json

Each step holds ``dialogs per core x server cores`` callers for ``--vb-step-s``;
its figures come from the turns after the first ``--vb-settle-s`` (the new
callers' greetings and the ramp are left out), and the server's CPU use over
the same window comes from its ``/metrics``.  The sweep stops after the first
step whose p95 turn latency exceeds ``--vb-slo-ms`` or that had a refused or
failed call, or after ``--vb-max-dialogs-per-core``.  ``make density`` runs
this against a pinned server and renders ``docs/benchmarks/density.md``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import LocalRunner

from loadtests.locustfile import COLLECTOR, VoiceCallUser
from loadtests.results import summarize
from loadtests.server_metrics import Snapshot, scrape

__all__ = ["DensityShape", "Step", "VoiceCallUser"]

log = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--vb-server-cores", type=int, default=1,
                        help="cores the server runs on (callers per step = dialogs x cores)")
    parser.add_argument("--vb-step-s", type=float, default=90.0, help="length of each step")
    parser.add_argument("--vb-settle-s", type=float, default=30.0,
                        help="start of each step left out of its figures")
    parser.add_argument("--vb-max-dialogs-per-core", type=int, default=16)
    parser.add_argument("--vb-slo-ms", type=float, default=1500.0,
                        help="p95 turn latency that ends the sweep")
    parser.add_argument("--vb-density-out", default="", help="write the steps here (JSON)")


@dataclass(slots=True)
class Step:
    dialogs_per_core: int
    users: int
    start_unix: float
    settle_unix: float
    end_unix: float = 0.0
    cpu_percent: float | None = None
    client_cpu_percent: float | None = None  # this Locust process (local runs only)
    part_means_ms: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Measurements taken in this step's settled window (calls: the whole step)."""
        out = []
        for row in rows:
            t = float(row["time_unix"])
            lo = self.start_unix if row["kind"] == "call" else self.settle_unix
            if lo <= t < self.end_unix:
                out.append(row)
        return out


class DensityShape(LoadTestShape):
    """Steps of dialogs per core; stops when a step breaks the SLO."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self._cpu_from: Snapshot | None = None
        self._client_cpu_from = 0.0
        self._done = False

    def _option(self, name: str) -> Any:
        assert self.runner is not None
        return getattr(self.runner.environment.parsed_options, name)

    def _host(self) -> str:
        assert self.runner is not None
        return str(self.runner.environment.host)

    def tick(self) -> tuple[int, float] | None:
        if self._done:
            return None
        now = time.time()
        cores = max(1, int(self._option("vb_server_cores")))
        step_s = float(self._option("vb_step_s"))
        index = int(self.get_run_time() // step_s)
        if self.steps and index >= len(self.steps):
            if not self.finish_step(self.steps[-1], now):
                self._done = True
                return None
        if index >= len(self.steps):
            dialogs = len(self.steps) + 1
            if dialogs > int(self._option("vb_max_dialogs_per_core")):
                self._done = True
                return None
            settle = now + float(self._option("vb_settle_s"))
            self.steps.append(Step(dialogs, dialogs * cores, now, settle))
            self._cpu_from = None
            log.info("density step: %d dialogs per core (%d callers)", dialogs, dialogs * cores)
        step = self.steps[-1]
        if self._cpu_from is None and now >= step.settle_unix:
            self._cpu_from = scrape(self._host())
            self._client_cpu_from = time.process_time()
            step.settle_unix = now
        return step.users, float(cores)

    def finish_step(self, step: Step, now: float) -> bool:
        """Close ``step`` with its figures; False when the sweep should stop."""
        step.end_unix = now
        if self._cpu_from is not None:
            cpu_to = scrape(self._host())
            step.cpu_percent = cpu_to.cpu_percent_since(self._cpu_from,
                                                        now - step.settle_unix)
            step.part_means_ms = cpu_to.part_means_ms_since(self._cpu_from)
            if isinstance(self.runner, LocalRunner):  # is the load generator keeping up?
                used_s = time.process_time() - self._client_cpu_from
                step.client_cpu_percent = 100.0 * used_s / max(now - step.settle_unix, 1e-9)
        step.summary = summarize(step.rows(COLLECTOR.rows))
        p95 = step.summary["turn"]["p95_ms"]
        calls = step.summary["calls"]
        slo = float(self._option("vb_slo_ms"))
        if calls["failed"] or calls["refused"]:
            step.verdict = f"stop: {calls['failed']} failed, {calls['refused']} refused calls"
        elif not step.summary["turn"]["n"]:
            step.verdict = "stop: no turns measured"
        elif p95 > slo:
            step.verdict = f"stop: p95 {p95:.0f} ms > SLO {slo:.0f} ms"
        else:
            step.verdict = "within SLO"
        log.info("step %d dialogs/core: p95 %.0f ms, CPU %s%%: %s", step.dialogs_per_core, p95,
                 step.cpu_percent, step.verdict)
        return step.verdict == "within SLO"


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
    out.write_text(json.dumps({"slo_ms": options.vb_slo_ms, "step_s": options.vb_step_s,
                               "settle_s": options.vb_settle_s,
                               "server_cores": options.vb_server_cores,
                               "protocol": options.vb_protocol,
                               "steps": [asdict(s) for s in shape.steps]}, indent=1) + "\n")
