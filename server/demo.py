"""The browser softphone at ``/demo``: static files on the call port (``demo: true``).

The page (``server/demo/``: HTML, CSS, two scripts and an AudioWorklet, no build step,
nothing from another origin) places a call over the native protocol on ``/native``
with ``"events": ["turn"]`` and draws each turn's explanation (docs/demo.md).

What this module serves is a fixed table of file names: a request names one of them or
gets 404, so no request path ever reaches the file system (no traversal).  Every answer
carries a Content-Security-Policy that allows this origin only.  ``/demo/config.json``
tells the page the scenarios and whether the native endpoint wants a token.  With
``demo: false`` (the default) every ``/demo`` path is 404, as any unknown path is.  The
server's network rules (allowed networks, Origin) apply to the page as to a call; the
call itself is authenticated by the native endpoint as any other call (a browser cannot
set headers on a websocket: the page sends ``?token=``).
"""

from __future__ import annotations

import asyncio
import http
import json
import time
from collections.abc import Sequence
from importlib import resources

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .auth import check_handshake
from .config import ServerConfig
from .netpolicy import HandshakeRequest

__all__ = ["CSP", "DEMO_FILES", "DEMO_PATH", "demo_response", "is_demo_path", "page_config"]

DEMO_PATH = "/demo"
DEMO_FILES = {
    "index.html": "text/html; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "audio.js": "text/javascript; charset=utf-8",
    "worklet.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""Every file the page has, with its content type: nothing else is served."""
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; media-src 'self'; worker-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
"""This origin only (``connect-src 'self'`` covers ws:/wss: to it); no inline script."""

_cache: dict[str, bytes] = {}  # at most len(DEMO_FILES) entries


def is_demo_path(target: str) -> bool:
    path = target.split("?", 1)[0]
    return path == DEMO_PATH or path.startswith(DEMO_PATH + "/")


def _read(name: str) -> bytes:
    package = __name__.rpartition(".")[0]  # server, or voicebot_server when installed
    return (resources.files(package) / "demo" / name).read_bytes()


async def _file(name: str) -> bytes:
    data = _cache.get(name)
    if data is None:  # read once, off the event loop
        data = _cache[name] = await asyncio.to_thread(_read, name)
    return data


def page_config(config: ServerConfig, scenarios: Sequence[str]) -> dict[str, object]:
    """What the page needs to know (no secret): the scenarios, the default one, and
    whether a call on ``/native`` needs a token (``token``) or not (``none``)."""
    native = config.auth.endpoint("native")
    needs_token = not config.auth.disabled and native.configured
    return {"scenarios": sorted(scenarios), "default_scenario": config.default_scenario,
            "auth": "token" if needs_token else "none", "path": "/native",
            "events": ["turn"]}


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([
        ("Content-Type", content_type), ("Content-Length", str(len(body))),
        ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-cache"),
        ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


def _text(status: http.HTTPStatus, text: str) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8")


async def demo_response(request: Request, config: ServerConfig, scenarios: Sequence[str], *,
                        peer_ip: str) -> Response:
    """The answer to a ``/demo`` request (:func:`is_demo_path`)."""
    if not config.demo:
        return _text(http.HTTPStatus.NOT_FOUND, "no call endpoint here\n")
    handshake = HandshakeRequest.from_target(request.path, request.headers, peer_ip=peer_ip,
                                             tls=config.tls_cert_file is not None)
    decision = check_handshake(handshake, config.auth, now_s=time.time())
    if not decision.allowed:  # the network rules: source networks, Origin
        status = http.HTTPStatus(decision.status or http.HTTPStatus.FORBIDDEN)
        return _text(status, f"{status.phrase}\n")
    path = request.path.split("?", 1)[0]
    name = path.removeprefix(DEMO_PATH).removeprefix("/") or "index.html"
    if name == "config.json":
        body = json.dumps(page_config(config, scenarios)).encode()
        return _response(http.HTTPStatus.OK, body, "application/json")
    content_type = DEMO_FILES.get(name)
    if content_type is None:
        return _text(http.HTTPStatus.NOT_FOUND, "not part of the demo page\n")
    return _response(http.HTTPStatus.OK, await _file(name), content_type)
