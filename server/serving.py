"""Run a loaded :class:`~server.app.App`: the call listener (optionally TLS), the
optional admin listener, cell supervision, and the SIGTERM drain.

The call port serves ``/healthz``, ``/readyz`` and the call endpoints; ``/metrics``
is there only for loopback peers or with the admin token — or, with ``admin_port``
set, only on the admin listener (``/metrics``, ``/healthz``, ``/readyz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import logging
import signal
import ssl
from collections.abc import AsyncIterator

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from voicebot.errors import ConfigError

from .app import App
from .call_services import call_record_response, call_services
from .metrics import cpu_seconds, rss_bytes
from .transports import select_subprotocol

__all__ = ["run_server", "tls_context"]

log = logging.getLogger(__name__)


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+) from PEM files; ConfigError if they do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert_file} / key {key_file}: "
                          f"{exc}") from exc
    return context


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@contextlib.asynccontextmanager
async def _admin_listener(app: App) -> AsyncIterator[Server | None]:
    config = app.config
    if config.admin_port is None:
        yield None
        return

    async def process_request(connection: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path in ("/metrics", "/healthz", "/readyz"):
            return app.gate.probe(connection, path)
        if path.startswith("/calls/"):
            return await call_record_response(connection, path, app.services.store)
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not an admin endpoint\n")

    async def no_websockets(connection: ServerConnection) -> None:  # never reached
        await connection.close()

    host = config.admin_host or "127.0.0.1"
    async with serve(no_websockets, host, config.admin_port,
                     process_request=process_request) as admin:
        sockets = ", ".join(str(s.getsockname()[:2]) for s in admin.sockets)
        log.info("admin endpoints (/metrics /healthz /readyz /calls/ID) on %s", sockets)
        yield admin


async def run_server(app: App, *, started: asyncio.Future[Server] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or until the task is cancelled)."""
    config = app.config
    ssl_context = None
    if config.tls_cert_file is not None and config.tls_key_file is not None:
        ssl_context = tls_context(str(config.tls_cert_file), str(config.tls_key_file))
    if app.pool is not None:
        await app.pool.start()
        app.pool.on_change = lambda: _cells_changed(app)
        app.pool.on_restart = functools.partial(_cell_restarted, app)
        _cells_changed(app)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _resolve, stop)
    async with call_services(config, app.webhooks, app.scenarios) as services:
        app.services = services  # before the first call
        writer = services.sinks.records
        if writer is not None:
            for state in ("dropped", "failed", "pending"):
                app.metrics.record_writes.labels(state=state).set_function(
                    functools.partial(getattr, writer, state))
        async with _admin_listener(app), serve(
            app.handle,
            config.host,
            config.port,
            ssl=ssl_context,
            max_size=config.max_message_bytes,
            max_queue=64,
            open_timeout=config.handshake_timeout_s,
            process_request=app.process_request,
            process_response=app.process_response,
            select_subprotocol=select_subprotocol,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
        ) as server:
            sockets = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
            log.info("voicebot listening on %s%s", sockets, " (TLS)" if ssl_context else "")
            if started is not None:
                started.set_result(server)
            try:
                await stop
            finally:
                await _drain(app)
    if app.gpu is not None:  # its held jobs answered, its thread joined
        await app.gpu.close()
    if app.pool is not None:
        app.pool.stop()
    app.executor.shutdown(wait=False, cancel_futures=True)


def _cells_changed(app: App) -> None:
    """A cell died or came back: capacity follows the ready cells."""
    assert app.pool is not None
    ready = app.pool.ready_cells()
    app.admission.set_cells(str(cell.index) for cell in ready)
    for cell in app.pool.cells:
        app.metrics.cell_restarts.labels(cell=str(cell.index))  # the series starts at 0
        app.metrics.cell_info.labels(cell=str(cell.index), cpu=str(cell.spec.cpu),
                                     pid=str(cell.pid)).set(1 if cell in ready else 0)
        if cell.pid is not None:
            app.metrics.rss.labels(cell=str(cell.index)).set_function(
                functools.partial(rss_bytes, cell.pid))
            app.metrics.cpu.labels(cell=str(cell.index)).set_function(
                functools.partial(cpu_seconds, cell.pid))


def _cell_restarted(app: App, index: int) -> None:
    app.metrics.cell_restarts.labels(cell=str(index)).inc()


async def _drain(app: App) -> None:
    """Stop admitting (``/readyz`` turns 503; ``voicebot_draining`` 1, ``voicebot_ready`` 0:
    the gauges read the admission) and let live calls finish, up to
    ``drain_timeout_s``; the server then closes what is left with 1001."""
    app.admission.draining = True
    log.info("draining: %d live calls, up to %.0f s", app.admission.active,
             app.config.drain_timeout_s)
    if app.admission.active:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.idle.wait(), app.config.drain_timeout_s)
    log.info("shutting down with %d live calls", app.admission.active)
