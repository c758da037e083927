"""Locust load test for voicebot: each user is a caller placing scripted real-time calls.

    locust -f loadtests/locustfile.py --host ws://127.0.0.1:8765 --headless -u 2 -t 2m \\
        --vb-protocol twilio --vb-turn-csv out/turns.csv

Every user places one call after another, scripted by walking the scenario's
dialog (``--vb-scenario``, a file or a name in ``scenarios/``; default the demo,
bank_card: an intent the state accepts, answers to the slots it asks, until the
bot hangs up or transfers; :mod:`loadtests.scripts`) and spoken from its caller
audio (``--vb-audio-dir``; ``python -m bench caller-audio`` makes it), streaming
20 ms frames in real time over the native protocol or a provider's websocket
(``--vb-protocol``).  Locust's statistics get one entry per measurement:
``greeting``, ``turn`` (end of caller speech → first bot audio), ``dtmf``,
``barge_in`` (caller onset → ``clear``) and ``call`` (whole call; refused and
failed calls are Locust failures); over the native protocol, each intent the
caller meant is checked against the one the server recognised: request type
``intent``, named after the intent, or ``mismatch:<meant>→<heard>`` (a failure).
Locust rounds and buckets response times, so every raw value also goes to
``--vb-turn-csv``; with ``--master`` and workers, the workers ship their rows
to the master in their regular reports and the master writes the one CSV.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

from locust import User, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.caller import Caller, CallerOptions
from loadtests.phrases import DEFAULT_SCENARIO
from loadtests.results import CallResult, CsvSink, Sample, sample_row
from loadtests.scripts import CallPlanner, load_planner
from voicebot.errors import VoicebotError
from voicebot.telephony.dialects import DIALECTS

__all__ = ["COLLECTOR", "RowCollector", "VoiceCallUser"]


class RowCollector:
    """The raw rows of this process: written to the CSV (local or master) or held for
    the next report to the master (worker).  ``annotate`` adds columns on the writing
    side (users now, a density step)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.sink: CsvSink | None = None
        self.forward = False  # a worker: hold rows for the master
        self.annotate: list[Any] = []

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if self.forward:
                self._pending += rows
                return
            for row in rows:
                for hook in self.annotate:
                    hook(row)
            self.rows += rows
        if self.sink is not None:
            self.sink.write(rows)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self._pending = self._pending, []
        return rows


COLLECTOR = RowCollector()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--vb-protocol", choices=sorted(DIALECTS), default="native",
                        include_in_web_ui=True,
                        help="what the callers speak: native (16 kHz PCM), native-mulaw, "
                             "or a provider's websocket (twilio: 8 kHz μ-law)")
    parser.add_argument("--vb-scenario", default=DEFAULT_SCENARIO, include_in_web_ui=True,
                        help="the scenario the callers walk and ask the server for: a file, or "
                             "a name in scenarios/")
    parser.add_argument("--vb-barge-in", type=float, default=0.2, include_in_web_ui=True,
                        help="share of calls whose caller talks over the greeting (0..1)")
    parser.add_argument("--vb-spoken-digits", action="store_true", default=False,
                        help="say card digits even over 8 kHz audio (default: keypad there)")
    parser.add_argument("--vb-turn-timeout-s", type=float, default=15.0,
                        help="longest wait for a bot reply before the call counts as failed")
    parser.add_argument("--vb-turn-csv", default="",
                        help="write every raw measurement here (CSV)")
    parser.add_argument("--vb-audio-dir", default="",
                        help="the scenario's caller audio, made by `python -m bench caller-audio"
                             "` (default: loadtests/audio for bank_card, else "
                             "out/caller-audio/NAME)")


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        COLLECTOR.forward = True  # its options come from the master with the first spawn
        return
    if options is not None:
        try:  # refuse to start without caller audio that fits the scenario
            planner(options.vb_scenario, options.vb_audio_dir)
        except (OSError, ValueError, VoicebotError) as exc:
            raise SystemExit(f"voicebot load test: {exc}") from exc
    if options is not None and options.vb_turn_csv:
        COLLECTOR.sink = CsvSink(Path(options.vb_turn_csv))
    runner = environment.runner
    COLLECTOR.annotate.append(lambda row: row.setdefault(
        "users", runner.user_count if runner is not None else ""))


@events.report_to_master.add_listener
def _to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["voicebot_rows"] = COLLECTOR.drain()


@events.worker_report.add_listener
def _from_worker(client_id: str, data: dict[str, Any], **_: Any) -> None:
    COLLECTOR.add(data.get("voicebot_rows", []))


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    if COLLECTOR.sink is not None:
        COLLECTOR.sink.close()


class _Refused(Exception):
    """Locust's failure entry for a call the server refused."""


class _Failed(Exception):
    """Locust's failure entry for an admitted call that went wrong."""


class _TurnError(Exception):
    """Locust's failure entry for a measurement that never came."""


class _IntentMismatch(Exception):
    """Locust's failure entry for an intent the server recognised other than meant."""


_PLANNERS: dict[tuple[str, str], CallPlanner] = {}


def planner(scenario: str, audio_dir: str) -> CallPlanner:
    """The call planner of a scenario and its caller audio, loaded once per process."""
    key = (scenario, audio_dir)
    if key not in _PLANNERS:
        _PLANNERS[key] = load_planner(scenario, audio_dir or None)
    return _PLANNERS[key]


class VoiceCallUser(User):
    """A caller: one scripted real-time call after another."""

    wait_time = between(0.5, 1.5)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.rng = random.Random()
        runner = environment.runner
        self.worker = str(getattr(runner, "client_id", "local"))

    @task
    def call(self) -> None:
        options = self.environment.parsed_options
        plan = planner(options.vb_scenario, options.vb_audio_dir)
        protocol = options.vb_protocol
        narrow = DIALECTS[protocol].rate == 8000
        script = plan.script(self.rng, barge_in=self.rng.random() < options.vb_barge_in,
                             keypad_digits=narrow and not options.vb_spoken_digits)
        if not self.host:
            raise ValueError("give the server with --host ws://HOST:PORT")
        caller = Caller(CallerOptions(url=self.host, protocol=protocol,
                                      scenario=plan.scenario.name,
                                      turn_timeout_s=options.vb_turn_timeout_s), rng=self.rng)
        result = caller.run(script, on_sample=self._on_sample, on_check=self._on_check)
        exception: Exception | None = None
        if result.outcome == "refused":
            exception = _Refused(result.error)
        elif result.outcome == "failed":
            exception = _Failed(result.error)
        self.environment.events.request.fire(
            request_type=protocol, name="call", response_time=result.duration_s * 1000,
            response_length=len(result.samples), exception=exception,
            context={"script": result.script, "call_id": result.call_id})
        COLLECTOR.add([result.call_row(worker=self.worker)])

    def _on_sample(self, result: CallResult, sample: Sample) -> None:
        self.environment.events.request.fire(
            request_type=result.protocol, name=sample.kind,
            response_time=sample.latency_ms or 0.0, response_length=0,
            exception=_TurnError(sample.error) if sample.error else None,
            context={"phrase": sample.phrase, "call_id": result.call_id})
        COLLECTOR.add([sample_row(sample, **result.base(worker=self.worker))])

    def _on_check(self, result: CallResult, check: Sample) -> None:
        name, mismatch = check.intent_entry()
        self.environment.events.request.fire(
            request_type="intent", name=name, response_time=0.0, response_length=0,
            exception=_IntentMismatch(mismatch) if mismatch else None,
            context={"phrase": check.phrase, "call_id": result.call_id})
        COLLECTOR.add([sample_row(check, **result.base(worker=self.worker))])
