"""Prometheus metrics of a voicebot server, served at ``/metrics`` on the call port.

One registry per server (no global state, so tests can run several servers):
turn latency and its parts, live dialogs, admitted and refused calls, barge-ins,
engine real-time factors, resident memory and CPU time; what an orchestrator and
its alerts read (capacity, ready, draining, the SLO, cell restarts); the
contact-center counters of :class:`CallCounters` (call outcomes, intents, reprompts,
fallbacks, no-input timeouts); and how callers' turns end (:class:`TurnCounters`: the
rule that ended each, the end-of-turn model's time, the speculative transcriptions).

Label values are bounded: cells, scenario, intent and state names of the loaded
scenarios, and fixed words; never a call id, a transcript or a caller's number.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from voicebot.commands import ReplyKind, ReplyStarted
from voicebot.dialog.scenario import Ask, Scenario

from .admission import Admission

__all__ = ["CALL_OUTCOMES", "CONTENT_TYPE", "END_RULES", "NO_INTENT", "SPECULATION_RESULTS",
           "CallCounters", "Metrics", "TurnCounters", "cpu_seconds", "listening_states",
           "rss_bytes"]

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
_PART_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0)
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
_TURN_MODEL_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
TURN_PARTS = ("endpoint_wait", "asr", "nlu", "tts_first_audio", "queue_wait", "turn_model")
END_RULES = ("model", "expectation", "max_silence", "silence", "max_length")
"""What ends a caller's turn (:class:`voicebot.session_turns.UtteranceEnd`): the
end-of-turn policy's rules, the endpointer's fixed pause, the longest utterance."""
SPECULATION_RESULTS = ("started", "used", "discarded")
CALL_OUTCOMES = ("completed", "transferred", "caller_hung_up", "failed")
"""How a call ends (:class:`voicebot.commands.CallOutcome`); containment rate =
completed / all four."""
NO_INTENT = "none"
"""The ``intent`` label of a caller turn with no recognised intent of its scenario
(below the threshold, nothing matched, or keys pressed)."""
_CALLER_SOURCES = ("speech", "dtmf")  # a reply's source that is a caller turn


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
        self.capacity = Gauge(
            "voicebot_capacity_dialogs", "Dialogs this node admits at most now: ready cells "
            "x dialogs_per_core", registry=r)
        self.ready = Gauge(
            "voicebot_ready", "1 while /readyz answers 200 (admits new calls): not full, not "
            "draining, cells up, turn latency within the SLO", registry=r)
        self.draining = Gauge(
            "voicebot_draining", "1 after SIGTERM: no new calls, live calls finishing",
            registry=r)
        self.slo_p95 = Gauge(
            "voicebot_slo_p95_seconds", "The turn-latency SLO admission keeps (slo_p95_ms)",
            registry=r)
        self.cell_restarts = Counter(
            "voicebot_cell_restarts", "Cells restarted after they died or hung", ["cell"],
            registry=r)
        self.call_counters = CallCounters(r)
        self.turn_counters = self.call_counters.turns
        for outcome in ("admitted", "refused_full", "refused_slo", "refused_draining"):
            self.calls.labels(outcome=outcome)
        for part in TURN_PARTS:
            self.turn_part.labels(part=part)

    def follow(self, admission: Admission, scenarios: Iterable[Scenario]) -> None:
        """Read the admission gauges off ``admission`` at each scrape (``ready`` is what
        ``/readyz`` would answer); the contact-center series of ``scenarios`` start at 0."""
        config = admission.config
        self.capacity.set_function(lambda: admission.cores * config.dialogs_per_core)
        self.ready.set_function(lambda: 0.0 if admission.refusal() else 1.0)
        self.draining.set_function(lambda: 1.0 if admission.draining else 0.0)
        self.slo_p95.set(config.slo_p95_ms / 1000)
        for scenario in scenarios:
            self.call_counters.add_scenario(scenario)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def listening_states(scenario: Scenario) -> tuple[str, ...]:
    """The states of ``scenario`` that wait for the caller (and so may reprompt)."""
    return tuple(name for name, state in scenario.states.items()
                 if state.on or any(isinstance(a, Ask) for a in state.actions))


class CallCounters:
    """Contact-center counters, labelled by scenario and by intent or state: call
    outcomes at each call's end, and for each reply the caller turn's intent, the
    reprompts, fallbacks and no-input timeouts.  Only the loaded scenarios' names
    become labels (:meth:`add_scenario`); anything else is not counted."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.outcomes = Counter(
            "voicebot_call_outcomes", "Calls ended, by outcome (containment: completed / all)",
            ["scenario", "outcome"], registry=r)
        self.intents = Counter(
            "voicebot_intents", "Caller turns by recognised intent ('none': no intent)",
            ["scenario", "intent"], registry=r)
        self.reprompts = Counter(
            "voicebot_reprompts", "Turns (or silences) not understood, asked again; state: "
            "the state asking", ["scenario", "state"], registry=r)
        self.fallbacks = Counter(
            "voicebot_fallbacks", "Retries spent: the state's fallback taken; state: the "
            "state that gave up", ["scenario", "state"], registry=r)
        self.no_input = Counter(
            "voicebot_no_input_timeouts", "Caller silent past no_input_timeout_ms; state: "
            "the state waiting", ["scenario", "state"], registry=r)
        self.turns = TurnCounters(r)
        self._intents: dict[str, frozenset[str]] = {}
        self._states: dict[str, frozenset[str]] = {}

    def add_scenario(self, scenario: Scenario) -> None:
        """Count ``scenario``'s calls; its series exist (at 0) from now on."""
        name = scenario.name
        self._intents[name] = frozenset(scenario.intents)
        self._states[name] = frozenset(scenario.states)
        for outcome in CALL_OUTCOMES:
            self.outcomes.labels(scenario=name, outcome=outcome)
        for intent in (*sorted(scenario.intents), NO_INTENT):
            self.intents.labels(scenario=name, intent=intent)
        for state in listening_states(scenario):
            for counter in (self.reprompts, self.fallbacks, self.no_input):
                counter.labels(scenario=name, state=state)

    def reply(self, scenario: str, command: ReplyStarted) -> None:
        """A reply starts: count the caller turn it answers and how it answers it."""
        if command.end_rule is not None:
            self.turns.ended(command.end_rule)
        intents = self._intents.get(scenario)
        if intents is None:
            log.debug("no counters for scenario %r", scenario)
            return
        if command.source in _CALLER_SOURCES:
            intent = command.intent if command.intent in intents else NO_INTENT
            self.intents.labels(scenario=scenario, intent=intent).inc()
        state = command.retry_state
        if command.kind is ReplyKind.ANSWER or state not in self._states[scenario]:
            return
        counter = self.fallbacks if command.kind is ReplyKind.FALLBACK else self.reprompts
        counter.labels(scenario=scenario, state=state).inc()
        if command.source == "no_input":
            self.no_input.labels(scenario=scenario, state=state).inc()

    def ended(self, scenario: str, outcome: str) -> None:
        """A call of ``scenario`` ended with ``outcome`` (one of :data:`CALL_OUTCOMES`)."""
        if scenario in self._intents and outcome in CALL_OUTCOMES:
            self.outcomes.labels(scenario=scenario, outcome=outcome).inc()


class TurnCounters:
    """How callers' turns end: the rule that ended each turn a reply answers, the
    end-of-turn model's jobs (from sent to verdict: the cell's queue and the pipe
    included) and the speculative transcriptions (started: kept in a pause; used: they
    were the final transcript; discarded: the caller went on, or hung up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.ends = Counter(
            "voicebot_turn_end", "Caller turns answered, by the rule that ended them (model, "
            "expectation, max_silence: the end-of-turn policy; silence: the fixed pause; "
            "max_length: cut at max_utterance_s)", ["rule"], registry=r)
        self.model = Histogram(
            "voicebot_turn_model_seconds", "End-of-turn model jobs, from sent to verdict",
            buckets=_TURN_MODEL_BUCKETS_S, registry=r)
        self.speculations = Counter(
            "voicebot_speculations", "Speculative transcriptions: started, used (the final "
            "transcript), discarded (the caller went on)", ["result"], registry=r)
        self.replies_ahead = Counter(
            "voicebot_reply_speculations", "Speculative replies (NLU, dialog step and first "
            "sentence made in a pause, held): started, used (the turn ended on their "
            "transcript), discarded (the caller went on; CPU only)", ["result"], registry=r)
        for rule in END_RULES:
            self.ends.labels(rule=rule)
        for result in SPECULATION_RESULTS:
            self.speculations.labels(result=result)
            self.replies_ahead.labels(result=result)

    def ended(self, rule: str) -> None:
        if rule in END_RULES:
            self.ends.labels(rule=rule).inc()

    def model_ran(self, ms: float) -> None:
        self.model.observe(ms / 1000)

    def speculation(self, result: str) -> None:
        if result in SPECULATION_RESULTS:
            self.speculations.labels(result=result).inc()

    def reply_speculation(self, result: str) -> None:
        if result in SPECULATION_RESULTS:
            self.replies_ahead.labels(result=result).inc()
