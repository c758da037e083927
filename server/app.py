"""The websocket server: engines loaded once, one Session + CallRuntime per call.

``/healthz`` answers 200 while the process serves; ``/readyz`` answers 200 once
engines and scenarios are loaded and while new calls are accepted (503 while
full or shutting down).  ``/`` is a websocket call whose provider (or native
protocol) is detected from its first message; ``/native``, ``/twilio``,
``/vonage``, ``/telnyx``, ``/exotel``, ``/freeswitch``, ``/jambonz`` and
``/asterisk`` name it.  Any other path is 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from voicebot.dialog.loader import load_scenarios
from voicebot.dialog.scenario import Scenario
from voicebot.engines.base import SpeechDetector
from voicebot.engines.engine_set import EngineSet
from voicebot.engines.registry import EngineOptions, build_engine, build_engine_set
from voicebot.errors import ConfigError
from voicebot.jobs import CallJobs
from voicebot.jsonsafe import load_json
from voicebot.protocol import CloseCode, ErrorEvent, close_reason, encode_server_event
from voicebot.session import Session, SessionConfig
from voicebot.telephony import NATIVE, codec_for, detect_provider

from . import turn_setup
from .admission import Admission, AdmissionConfig
from .auth import (
    Decision,
    check_exposure,
    make_rate_limiter,
)
from .call_log import CallLog
from .call_services import CallServices, call_record_response
from .cell_worker import CellSpec
from .cells import CellFailed, CellPool
from .config import ServerConfig
from .demo import demo_response, is_demo_path
from .devices import check_devices
from .gate import Gate, peer
from .gpu_setup import (
    GpuBackend,
    GpuOverrides,
    cpu_engine_names,
    cpu_engine_options,
    load_gpu_backend,
    make_admission,
)
from .limits import CallLimits
from .logsafe import call_id_var
from .metrics import Metrics
from .runners import CellRunner, JobRunner, LocalRunner, VadRunner
from .runtime import CallRuntime
from .stacks import describe_models, ensure_models, stack_label
from .transports import (
    SUBPROTOCOLS,
    NativeTransport,
    ProviderTransport,
    Transport,
    provider_for_path,
)
from .webhook import WebhookClient

__all__ = ["App", "load_app"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class App:
    """Everything a running server shares between calls."""

    config: ServerConfig
    detector: SpeechDetector
    engines: EngineSet | None  # in-process engines (cells: false)
    pool: CellPool | None  # the cells (cells: true)
    scenarios: dict[str, Scenario]
    executor: ThreadPoolExecutor
    session_config: SessionConfig
    admission: Admission
    webhooks: WebhookClient
    """Every webhook's HTTP client (keep-alive; the ``webhooks:`` egress policy)."""
    limits: CallLimits = field(default_factory=CallLimits)
    metrics: Metrics = field(default_factory=Metrics)
    services: CallServices = field(default_factory=CallServices)
    """Where calls' records, recordings and webhooks go (set while serving)."""
    _reserved: dict[ServerConnection, str] = field(default_factory=dict)  # -> reserved cell
    _handling: set[ServerConnection] = field(default_factory=set)  # handler took over
    _decisions: dict[ServerConnection, Decision] = field(default_factory=dict)
    gate: Gate = field(init=False)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the last live call ends (what a drain waits for)."""
    gpu: GpuBackend | None = None
    """The GPU worker serving the ASR / TTS lanes (``device: cuda``; server/gpu_setup.py)."""

    def __post_init__(self) -> None:
        self.gate = Gate(self.config, self.admission, self.metrics,
                         make_rate_limiter(self.config.auth))
        self.metrics.follow(self.admission, self.scenarios.values())

    async def process_request(self, connection: ServerConnection,
                              request: Request) -> Response | None:
        if is_demo_path(request.path):  # the browser softphone (demo: true), server/demo.py
            return await demo_response(request, self.config, tuple(self.scenarios),
                                       peer_ip=peer(connection))
        if request.path.startswith("/calls/"):  # a record: the /metrics rule (Gate.admin)
            refused = self.gate.admin(connection, request, "/calls")
            return refused or await call_record_response(
                connection, request.path.split("?", 1)[0], self.services.store)
        screened = self.gate.screen(connection, request)
        if screened.decision is None:
            return screened.response
        # Reserve the slot (on the best open cell) now: two handshakes in flight must not
        # both take the last one.  The websockets library calls neither process_response
        # nor the handler when the socket drops mid-handshake, so the slot is also bound
        # to the socket's end: whichever comes first releases it, once.
        self._reserved[connection] = self.admission.admit()
        self._decisions[connection] = screened.decision
        self.idle.clear()
        self.metrics.calls.labels(outcome="admitted").inc()
        connection.connection_lost_waiter.add_done_callback(
            functools.partial(self._lost_in_handshake, connection))
        return None

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._release(connection)  # the handshake failed after the slot was reserved

    def _lost_in_handshake(self, connection: ServerConnection, _: object) -> None:
        if connection not in self._handling:
            self._release(connection)

    def _release(self, connection: ServerConnection) -> None:
        self._handling.discard(connection)
        self._decisions.pop(connection, None)
        cell = self._reserved.pop(connection, None)
        if cell is not None:
            self.admission.release(cell)
            if self.admission.active == 0:
                self.idle.set()
            else:
                self.idle.clear()

    def _runner(self, dialog: str, reserved: str) -> tuple[JobRunner, str]:
        runner, cell = self._cpu_runner(dialog, reserved)
        if self.gpu is not None:  # its ASR / TTS lanes on the GPU, side by side
            return self.gpu.runner(dialog, runner, job_timeout_s=self.config.job_timeout_s), cell
        return runner, cell

    def _cpu_runner(self, dialog: str, reserved: str) -> tuple[JobRunner, str]:
        if self.pool is not None:
            cell = self.pool.place(dialog, int(reserved))
            return CellRunner(cell, dialog), str(cell.index)
        assert self.engines is not None
        return LocalRunner(CallJobs(self.engines), self.executor,
                           job_timeout_s=self.config.job_timeout_s), "0"

    async def _provider(self, ws: ServerConnection) -> tuple[str | None, str | bytes | None]:
        """The call's provider (by path, else by its first message) and that message."""
        path = ws.request.path if ws.request is not None else "/"
        provider = provider_for_path(path)[1]
        if provider is not None:
            return provider, None
        subprotocol = ws.subprotocol
        if subprotocol in SUBPROTOCOLS:
            return detect_provider("", subprotocol=subprotocol), None
        try:
            first = await asyncio.wait_for(ws.recv(), self.config.first_message_timeout_s)
        except (TimeoutError, ConnectionClosed):
            return None, None
        provider = detect_provider(first)
        if provider is None and (isinstance(first, bytes) or _has_type(first)):
            provider = NATIVE  # a native client's mistake: its own protocol explains it
        return provider, first

    def _transport(
        self, ws: ServerConnection, provider: str
    ) -> tuple[Session, Transport]:
        if provider == NATIVE:
            session = Session(scenarios=self.scenarios, config=self.session_config)
            return session, NativeTransport(ws, session)
        codec = codec_for(provider)
        session = Session(scenarios=self.scenarios, config=self.session_config,
                          marks=codec.has_marks)
        return session, ProviderTransport(ws, session, codec)

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one call; whatever happens, its slot, cell state and lanes are released."""
        self._handling.add(ws)
        started = time.perf_counter()
        provider: str | None = None
        call_id = "-"
        try:
            provider, first = await self._provider(ws)
            if provider is None:
                await self._undetected(ws, first)
                return
            decision = self._decisions.get(ws)
            if decision is None or not decision.permits(provider):
                log.warning("refused a %s call on %s: its credentials are for %s", provider,
                            peer(ws), ", ".join(sorted(decision.endpoints)) if decision
                            else "nothing")
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(CloseCode.UNAUTHORIZED,
                                   f"not authenticated as a {provider} connection")
                return
            call_id = await self._serve_call(ws, provider, first)
        except Exception as exc:  # a bug: one log line with the traceback, a clean close
            log.exception("call %s: internal error", call_id)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CloseCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
        finally:
            self._release(ws)
            log.info("call %s (%s) ended after %.1f s (close code %s)", call_id,
                     provider or "unknown", time.perf_counter() - started, ws.close_code)

    async def _undetected(self, ws: ServerConnection, first: str | bytes | None) -> None:
        if first is None:
            reason = "no first message within the timeout"
            code = CloseCode.TIMEOUT
        else:
            reason = ("cannot tell the protocol or provider from the first message; "
                      "use /native, /twilio, /vonage, ...")
            code = CloseCode.BAD_MESSAGE
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_server_event(ErrorEvent(code, reason)))
            await ws.close(code, reason)

    async def _serve_call(self, ws: ServerConnection, provider: str,
                          first: str | bytes | None) -> str:
        dialog = uuid.uuid4().hex
        call_id_var.set(dialog)  # every log line of this call's tasks names it
        session, transport = self._transport(ws, provider)
        try:
            runner, cell_name = self._runner(dialog, self._reserved.get(ws, "0"))
        except CellFailed as exc:
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CloseCode.TRY_AGAIN_LATER, close_reason(str(exc)))
            return "-"
        gauge = self.metrics.active_dialogs.labels(cell=cell_name)
        gauge.inc()
        try:
            vad = VadRunner(self.detector, self.executor)
            observer = _CellObserver(self, cell_name)
            call_log = CallLog(self.services.sinks, call_id=dialog, provider=provider,
                               counters=self.metrics.call_counters)
            runtime = CallRuntime(ws, session, runner, vad, observer=observer,
                                  transport=transport, limits=self.limits, call_log=call_log,
                                  webhook_client=self.webhooks)
            await runtime.run(first)
        except Exception as exc:  # a bug: one log line with the traceback, a clean close
            log.exception("call %s: internal error", session.call_id)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CloseCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
        finally:
            gauge.dec()
        return session.call_id or "-"

    # ------------------------------------------------------------------ TurnObserver

    def turn(self, *, latency_ms: float, greeting: bool, parts_ms: Mapping[str, float],
             cell: str = "0") -> None:
        self.metrics.turn_latency.labels(kind="greeting" if greeting else "turn").observe(
            latency_ms / 1000)
        for part, ms in parts_ms.items():
            self.metrics.turn_part.labels(part=part).observe(ms / 1000)
        if not greeting:
            self.admission.record_turn(latency_ms, cell)

    def barge_in(self) -> None:
        self.metrics.barge_ins.inc()

    def engine_rtf(self, engine: str, rtf: float) -> None:
        self.metrics.engine_rtf.labels(engine=engine).observe(rtf)


def load_app(config: ServerConfig, *, gpu_overrides: GpuOverrides | None = None) -> App:
    """Load scenarios; install the engines' models (pulled if missing and ``pull_models``,
    each step logged); then either describe the cells (``cells: true``: each loads its
    own engines when the server starts) or load the engines in process; warm up."""
    started = time.perf_counter()
    warning = check_exposure(config.host, config.auth)  # ConfigError: refuses to start
    if warning is not None:
        log.warning("%s (docs/security.md)", warning)
    paths = sorted(config.scenarios_dir.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"no scenarios (*.yaml) in {config.scenarios_dir}")
    scenarios = load_scenarios(paths)
    if config.default_scenario not in scenarios:
        raise ConfigError(f"default scenario {config.default_scenario!r} is not loaded")
    # device cuda without a usable GPU: refuse now, before any pull (gpu_overrides: tests)
    check_devices(config, probes=None if gpu_overrides is None else gpu_overrides.probes)
    ensure_models(config.engines, models_dir=config.models_dir, manifest=config.manifest,
                  say=log.info, pull_missing=config.pull_models, stack=config.stack)
    options = {
        kind: EngineOptions(
            threads=config.engine_threads,
            models_dir=config.models_dir,
            options=dict(config.engines.options.get(kind, {})),
            manifest=config.manifest,
        )
        for kind in config.engines.all_names()
    }
    cache_dir = config.models_dir / "prompt-cache"
    engines: EngineSet | None = None
    pool: CellPool | None = None
    if config.cells:
        detector = build_engine("vad", config.engines.vad, options["vad"])
        specs = [
            CellSpec(index=i, cpu=cpu, engine_names=cpu_engine_names(config),
                     engine_options=cpu_engine_options(config, options),
                     scenario_paths=tuple(paths),
                     default_scenario=config.default_scenario, prompt_cache_dir=cache_dir,
                     log_level=config.log_level)
            for i, cpu in enumerate(config.cpus)
        ]
        pool = CellPool(specs, heartbeat_interval_s=config.heartbeat_interval_s,
                        heartbeat_timeout_s=config.heartbeat_timeout_s,
                        job_timeout_s=config.job_timeout_s, stuck_job_s=config.stuck_job_s)
    else:
        engines = build_engine_set(cpu_engine_names(config), cpu_engine_options(config, options),
                                   prompt_cache_dir=cache_dir)
        for scenario in scenarios.values():
            engines.prepare(scenario)
        engines.warm_up(domain=config.default_scenario)
        detector = engines.detector
    assert detector is not None
    executor = ThreadPoolExecutor(config.worker_threads, thread_name_prefix="voicebot-engine")
    session_config = turn_setup.session_config(config, detector, scenarios.values())
    log.info(
        "stack %s: engines vad=%s asr=%s nlu=%s tts=%s (%s) %s in %.1f s; scenarios: %s",
        stack_label(config.stack, config.engines), config.engines.vad, config.engines.asr,
        config.engines.nlu, config.engines.tts, describe_models(config.engines),
        f"in {len(config.cpus)} cells" if pool else "in process",
        time.perf_counter() - started, ", ".join(sorted(scenarios)),
    )
    admission = make_admission(config, AdmissionConfig(
        dialogs_per_core=config.dialogs_per_core, cores=len(config.cpus),
        slo_p95_ms=config.slo_p95_ms,
    ))
    gpu = load_gpu_backend(config, scenarios.values(), options, prompt_cache_dir=cache_dir,
                           overrides=gpu_overrides)
    limits = CallLimits(first_message_timeout_s=config.first_message_timeout_s,
                        no_audio_timeout_s=config.no_audio_timeout_s,
                        max_audio_ahead_ms=config.max_audio_ahead_ms)
    webhooks = WebhookClient(policy=config.webhooks.policy, headers=config.webhooks.headers)
    return App(config, detector, engines, pool, scenarios, executor, session_config, admission,
               webhooks, limits=limits, gpu=gpu)


def _has_type(text: str) -> bool:
    """Whether ``text`` is a JSON object with a ``type`` (the native protocol's shape)."""
    try:
        obj = load_json(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and "type" in obj


class _CellObserver:
    """A call's measurements, attributed to the cell that serves it."""

    def __init__(self, app: App, cell: str) -> None:
        self._app = app
        self._cell = cell

    def turn(self, *, latency_ms: float, greeting: bool, parts_ms: Mapping[str, float]) -> None:
        self._app.turn(latency_ms=latency_ms, greeting=greeting, parts_ms=parts_ms,
                       cell=self._cell)

    def barge_in(self) -> None:
        self._app.barge_in()

    def engine_rtf(self, engine: str, rtf: float) -> None:
        self._app.engine_rtf(engine, rtf)
