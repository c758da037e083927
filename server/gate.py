"""The HTTP side of the call port: probes, ``/metrics``, and who may open a call.

:meth:`Gate.screen` answers every request the websocket server sees before the
upgrade: ``/healthz`` and ``/readyz`` (always open, for orchestrators), ``/metrics``
(admin token, loopback, or the admin port only), 404 for unknown paths, then the
handshake policy of ``server/auth.py`` (401/403/429) and admission (503).  What gets
through carries the :class:`~server.auth.Decision` the call is admitted under; the
caller (:class:`server.app.App`) reserves the slot.
"""

from __future__ import annotations

import http
import ipaddress
import logging
import time
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .admission import Admission
from .auth import Decision, check_admin, check_handshake
from .config import ServerConfig
from .metrics import CONTENT_TYPE, Metrics
from .netpolicy import HandshakeRequest, RateLimiter
from .transports import provider_for_path

__all__ = ["Gate", "Screened", "peer"]

log = logging.getLogger(__name__)

_RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class Screened:
    """A request screened: answer it with ``response`` now (``None`` too: websockets
    answers 426 to a plain HTTP request), or admit it under ``decision``."""

    response: Response | None = None
    decision: Decision | None = None


def peer(connection: ServerConnection) -> str:
    """The direct peer's IP address ('' when unknown)."""
    address = connection.remote_address
    return str(address[0]) if address else ""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class Gate:
    config: ServerConfig
    admission: Admission
    metrics: Metrics
    limiter: RateLimiter | None = None
    """New connections per source (``auth.rate_limit``); it holds the buckets."""

    def probe(self, connection: ServerConnection, path: str) -> Response:
        """``/healthz``, ``/readyz`` or ``/metrics`` (on the call or the admin listener)."""
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            refusal = self.admission.refusal()
            if refusal is None:
                return connection.respond(http.HTTPStatus.OK, "ready\n")
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal}\n")
        body = self.metrics.exposition()
        headers = Headers([("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                           ("Connection", "close")])
        return Response(http.HTTPStatus.OK, "OK", headers, body)

    def screen(self, connection: ServerConnection, request: Request) -> Screened:
        path = request.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz"):
            return Screened(self.probe(connection, path))
        if path == "/metrics":
            return Screened(self._metrics(connection, request))
        if not provider_for_path(path)[0]:
            return Screened(connection.respond(http.HTTPStatus.NOT_FOUND,
                                               "no call endpoint here\n"))
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return Screened()  # websockets answers 426
        decision = self._authenticate(connection, request)
        if not decision.allowed:
            return Screened(self._refuse(connection, path, decision))
        refusal = self.admission.refusal()
        if refusal is not None:
            self.metrics.calls.labels(outcome=f"refused_{refusal}").inc()
            log.info("refused a call: %s (%d live)", refusal, self.admission.active)
            response = connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal}\n")
            response.headers["Retry-After"] = str(_RETRY_AFTER_S)
            return Screened(response)
        return Screened(decision=decision)

    def _metrics(self, connection: ServerConnection, request: Request) -> Response:
        return self.admin(connection, request, "/metrics") or self.probe(connection, "/metrics")

    def admin(self, connection: ServerConnection, request: Request,
              what: str) -> Response | None:
        """An admin endpoint (``/metrics``, ``/calls/{id}``) asked for on the call port:
        None (serve it) with an admin token configured and given, or without one for a
        loopback peer (a Prometheus on the same host); never with an admin port (it is
        served there).  Otherwise the refusal."""
        if self.config.admin_port is not None:
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      f"{what} is served on the admin port\n")
        if self.config.auth.admin_tokens:
            allowed = check_admin(request.headers.get("Authorization"), self.config.auth)
        else:
            allowed = _is_loopback(peer(connection))
        if not allowed:
            log.warning("refused %s to %s: no valid admin token", what, peer(connection))
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "admin token required\n")
        return None

    def _authenticate(self, connection: ServerConnection, request: Request) -> Decision:
        """Networks, Origin, rate, then the endpoint's credentials (server/auth.py)."""
        handshake = HandshakeRequest.from_target(
            request.path, request.headers, peer_ip=peer(connection),
            tls=self.config.tls_cert_file is not None)
        return check_handshake(handshake, self.config.auth, now_s=time.time(),
                               limiter=self.limiter)

    def _refuse(self, connection: ServerConnection, path: str, decision: Decision) -> Response:
        status = http.HTTPStatus(decision.status or http.HTTPStatus.FORBIDDEN)
        self.metrics.calls.labels(outcome=f"refused_{status.value}").inc()
        log.warning("refused %s from %s: HTTP %d, %s", path, decision.client_ip or "?",
                    status.value, decision.reason)
        response = connection.respond(status, f"{status.phrase}\n")
        if decision.challenge and status == http.HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = decision.challenge
        if status == http.HTTPStatus.TOO_MANY_REQUESTS:
            response.headers["Retry-After"] = "1"
        return response
