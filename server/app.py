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
import json
import logging
import signal
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from server.admission import Admission, AdmissionConfig
from server.cell_worker import CellSpec
from server.cells import CellFailed, CellPool
from server.config import ServerConfig
from server.metrics import CONTENT_TYPE, Metrics, cpu_seconds, rss_bytes
from server.runners import CellRunner, JobRunner, LocalRunner, VadRunner
from server.runtime import CallRuntime
from server.transports import (
    SUBPROTOCOLS,
    NativeTransport,
    ProviderTransport,
    Transport,
    provider_for_path,
    select_subprotocol,
)
from voicebot.dialog.loader import load_scenarios
from voicebot.dialog.scenario import Scenario
from voicebot.engines.base import SpeechDetector
from voicebot.engines.registry import EngineOptions, build_engine, build_engine_set
from voicebot.errors import ConfigError
from voicebot.jobs import CallJobs, EngineSet
from voicebot.protocol import CloseCode, ErrorEvent, encode_server_event
from voicebot.session import Session, SessionConfig
from voicebot.telephony import NATIVE, codec_for, detect_provider

__all__ = ["App", "load_app", "run_server"]

log = logging.getLogger(__name__)

_RETRY_AFTER_S = 5
_FIRST_MESSAGE_TIMEOUT_S = 10.0


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
    metrics: Metrics = field(default_factory=Metrics)
    _reserved: dict[int, str] = field(default_factory=dict)  # connection -> reserved cell
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the last live call ends (what a drain waits for)."""

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            refusal = self.admission.refusal()
            if refusal is None:
                return connection.respond(http.HTTPStatus.OK, "ready\n")
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal}\n")
        if path == "/metrics":
            body = self.metrics.exposition()
            headers = Headers([("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                               ("Connection", "close")])
            return Response(http.HTTPStatus.OK, "OK", headers, body)
        if not provider_for_path(path)[0]:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no call endpoint at {path}\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # websockets answers 426
        refusal = self.admission.refusal()
        if refusal is not None:
            self.metrics.calls.labels(outcome=f"refused_{refusal}").inc()
            log.info("refused a call: %s (%d live)", refusal, self.admission.active)
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal}\n")
            response.headers["Retry-After"] = str(_RETRY_AFTER_S)
            return response
        # Reserve the slot (on the best open cell) now: two handshakes in flight must not
        # both take the last one.
        self._reserved[id(connection)] = self.admission.admit()
        self.idle.clear()
        self.metrics.calls.labels(outcome="admitted").inc()
        return None

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._release(connection)  # the handshake failed after the slot was reserved

    def _release(self, connection: ServerConnection) -> None:
        cell = self._reserved.pop(id(connection), None)
        if cell is not None:
            self.admission.release(cell)
            if self.admission.active == 0:
                self.idle.set()
            else:
                self.idle.clear()

    def _runner(self, dialog: str, reserved: str) -> tuple[JobRunner, str]:
        if self.pool is not None:
            cell = self.pool.place(dialog, int(reserved))
            return CellRunner(cell, dialog), str(cell.index)
        assert self.engines is not None
        return LocalRunner(CallJobs(self.engines), self.executor), "0"

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
            first = await asyncio.wait_for(ws.recv(), _FIRST_MESSAGE_TIMEOUT_S)
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
        started = time.perf_counter()
        dialog = uuid.uuid4().hex
        provider, first = await self._provider(ws)
        if provider is None:
            self._release(ws)
            reason = ("cannot tell the protocol or provider from the first message; "
                      "use /native, /twilio, /vonage, ...")
            with contextlib.suppress(ConnectionClosed):
                if first is not None:
                    await ws.send(encode_server_event(ErrorEvent(CloseCode.BAD_MESSAGE, reason)))
                await ws.close(CloseCode.BAD_MESSAGE, reason)
            return
        session, transport = self._transport(ws, provider)
        try:
            runner, cell_name = self._runner(dialog, self._reserved.get(id(ws), "0"))
        except CellFailed as exc:
            self._release(ws)
            await ws.close(CloseCode.TRY_AGAIN_LATER, str(exc))
            return
        cell = self.metrics.active_dialogs.labels(cell=cell_name)
        cell.inc()
        vad = VadRunner(self.detector, self.executor)
        observer = _CellObserver(self, cell_name)
        runtime = CallRuntime(ws, session, runner, vad, observer=observer, transport=transport)
        try:
            await runtime.run(first)
        except Exception:
            log.exception("call %s: internal error", session.call_id)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            cell.dec()
            self._release(ws)
            log.info(
                "call %s (%s) ended after %.1f s on cell %s (close code %s)",
                session.call_id, provider, time.perf_counter() - started, cell_name,
                ws.close_code,
            )

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


def load_app(config: ServerConfig) -> App:
    """Load scenarios; then either describe the cells (``cells: true``: each loads its own
    engines when the server starts) or load the engines in process; warm up."""
    started = time.perf_counter()
    paths = sorted(config.scenarios_dir.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"no scenarios (*.yaml) in {config.scenarios_dir}")
    scenarios = load_scenarios(paths)
    if config.default_scenario not in scenarios:
        raise ConfigError(f"default scenario {config.default_scenario!r} is not loaded")
    options = {
        kind: EngineOptions(
            threads=config.engine_threads,
            models_dir=config.models_dir,
            options=dict(config.engines.options.get(kind, {})),
            manifest=config.manifest,
        )
        for kind in ("vad", "asr", "nlu", "tts")
    }
    cache_dir = config.models_dir / "prompt-cache"
    engines: EngineSet | None = None
    pool: CellPool | None = None
    if config.cells:
        detector = build_engine("vad", config.engines.vad, options["vad"])
        specs = [
            CellSpec(index=i, cpu=cpu, engine_names=config.engines.names(),
                     engine_options=options, scenario_paths=tuple(paths),
                     default_scenario=config.default_scenario, prompt_cache_dir=cache_dir,
                     log_level=config.log_level)
            for i, cpu in enumerate(config.cpus)
        ]
        pool = CellPool(specs)
    else:
        engines = build_engine_set(config.engines.names(), options, prompt_cache_dir=cache_dir)
        for scenario in scenarios.values():
            engines.prepare(scenario)
        engines.warm_up(domain=config.default_scenario)
        detector = engines.detector
    assert detector is not None
    executor = ThreadPoolExecutor(config.worker_threads, thread_name_prefix="voicebot-engine")
    session_config = SessionConfig(
        default_scenario=config.default_scenario,
        asr_rate_hz=detector.sample_rate_hz,
        vad_window_samples=detector.window_samples,
        speculative_asr_ms=config.speculative_asr_ms,
    )
    log.info(
        "engines vad=%s asr=%s nlu=%s tts=%s %s in %.1f s; scenarios: %s",
        config.engines.vad, config.engines.asr, config.engines.nlu, config.engines.tts,
        f"in {len(config.cpus)} cells" if pool else "in process",
        time.perf_counter() - started, ", ".join(sorted(scenarios)),
    )
    admission = Admission(AdmissionConfig(
        dialogs_per_core=config.dialogs_per_core, cores=len(config.cpus),
        slo_p95_ms=config.slo_p95_ms,
    ))
    return App(config, detector, engines, pool, scenarios, executor, session_config, admission)


def _has_type(text: str) -> bool:
    """Whether ``text`` is a JSON object with a ``type`` (the native protocol's shape)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and "type" in obj


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_server(app: App, *, started: asyncio.Future[Server] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until the task is cancelled)."""
    config = app.config
    if app.pool is not None:
        await app.pool.start()
        app.pool.on_change = lambda: _cells_changed(app)
        _cells_changed(app)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _resolve, stop)
    async with serve(
        app.handle,
        config.host,
        config.port,
        max_size=config.max_message_bytes,
        max_queue=64,
        process_request=app.process_request,
        process_response=app.process_response,
        select_subprotocol=select_subprotocol,
        compression=None,
        ping_interval=20,
        ping_timeout=20,
    ) as server:
        sockets = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
        log.info("voicebot listening on %s", sockets)
        if started is not None:
            started.set_result(server)
        try:
            await stop
        finally:
            await _drain(app)
    if app.pool is not None:
        app.pool.stop()
    app.executor.shutdown(wait=False, cancel_futures=True)


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


def _cells_changed(app: App) -> None:
    """A cell died or came back: capacity follows the ready cells."""
    assert app.pool is not None
    ready = app.pool.ready_cells()
    app.admission.set_cells(str(cell.index) for cell in ready)
    for cell in app.pool.cells:
        app.metrics.cell_info.labels(cell=str(cell.index), cpu=str(cell.spec.cpu),
                                     pid=str(cell.pid)).set(1 if cell in ready else 0)
        if cell.pid is not None:
            app.metrics.rss.labels(cell=str(cell.index)).set_function(
                functools.partial(rss_bytes, cell.pid))
            app.metrics.cpu.labels(cell=str(cell.index)).set_function(
                functools.partial(cpu_seconds, cell.pid))


async def _drain(app: App) -> None:
    """Stop admitting (``/readyz`` turns 503) and let live calls finish, up to
    ``drain_timeout_s``; the server then closes what is left with 1001."""
    app.admission.draining = True
    log.info("draining: %d live calls, up to %.0f s", app.admission.active,
             app.config.drain_timeout_s)
    if app.admission.active:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.idle.wait(), app.config.drain_timeout_s)
    log.info("shutting down with %d live calls", app.admission.active)
