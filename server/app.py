"""The websocket server: engines loaded once, one Session + CallRuntime per call.

``/healthz`` answers 200 while the process serves; ``/readyz`` answers 200 once
engines and scenarios are loaded and while new calls are accepted (503 while
full or shutting down).  Every other path is a websocket call.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from server.config import ServerConfig
from server.runtime import CallRuntime
from voicebot.dialog.loader import load_scenarios
from voicebot.dialog.scenario import Scenario
from voicebot.engines.registry import EngineOptions, build_engine_set
from voicebot.errors import ConfigError
from voicebot.jobs import CallJobs, EngineSet
from voicebot.protocol import CloseCode
from voicebot.session import Session, SessionConfig

__all__ = ["App", "load_app", "run_server"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class App:
    """Everything a running server shares between calls."""

    config: ServerConfig
    engines: EngineSet
    scenarios: dict[str, Scenario]
    executor: ThreadPoolExecutor
    session_config: SessionConfig
    active_calls: int = 0
    accepting: bool = True
    calls: set[asyncio.Task[None]] = field(default_factory=set)

    def ready(self) -> bool:
        return self.accepting and self.active_calls < self.config.max_calls

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.ready():
                return connection.respond(http.HTTPStatus.OK, "ready\n")
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if not self.ready():
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")
            response.headers["Retry-After"] = "5"
            return response
        return None

    async def handle(self, ws: ServerConnection) -> None:
        self.active_calls += 1
        started = time.perf_counter()
        session = Session(scenarios=self.scenarios, config=self.session_config)
        runtime = CallRuntime(ws, session, CallJobs(self.engines), self.executor)
        try:
            await runtime.run()
        except Exception:
            log.exception("call %s: internal error", session.call_id)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.active_calls -= 1
            log.info(
                "call %s ended after %.1f s (close code %s)",
                session.call_id, time.perf_counter() - started, ws.close_code,
            )


def load_app(config: ServerConfig) -> App:
    """Load scenarios and engines, prepare every scenario's domain, warm up."""
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
    engines = build_engine_set(
        config.engines.names(), options, prompt_cache_dir=config.models_dir / "prompt-cache"
    )
    for scenario in scenarios.values():
        engines.prepare(scenario)
    engines.warm_up(domain=config.default_scenario)
    executor = ThreadPoolExecutor(config.worker_threads, thread_name_prefix="voicebot-engine")
    session_config = SessionConfig(
        default_scenario=config.default_scenario,
        asr_rate_hz=engines.transcriber.sample_rate_hz,
        vad_window_samples=engines.detector.window_samples,
        speculative_asr_ms=config.speculative_asr_ms,
    )
    log.info(
        "engines vad=%s asr=%s nlu=%s tts=%s ready in %.1f s; scenarios: %s",
        config.engines.vad, config.engines.asr, config.engines.nlu, config.engines.tts,
        time.perf_counter() - started, ", ".join(sorted(scenarios)),
    )
    return App(config, engines, scenarios, executor, session_config)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_server(app: App, *, started: asyncio.Future[Server] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until the task is cancelled)."""
    config = app.config
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
            app.accepting = False
            log.info("shutting down")
    app.executor.shutdown(wait=False, cancel_futures=True)
