"""Outgoing webhooks on httpx: POST JSON, read JSON, within an egress policy.

One :class:`WebhookClient` per server (``async with`` it, or ``await aclose()``): one
``httpx.AsyncClient`` whose keep-alive pool all calls share.  :meth:`WebhookClient.post`
and :meth:`WebhookClient.post_json` never raise (cancellation aside): they return a
:class:`WebhookReply` / ``(data, None)`` or ``(None, short error message)``.

Egress (:mod:`.egress`): every hop's URL is checked before it is requested, and every
address its host resolves to is checked *inside the connection pool's network backend*,
immediately before the TCP connect to exactly those addresses.  The check and the
connect therefore see the same DNS answer (no rebinding window), TLS still verifies the
certificate against the host name (SNI and Host are the name, not the IP), and a kept-
alive connection is one whose addresses were checked when it was opened.  Redirects
(301/302/303/307/308) are followed by hand, at most ``max_redirects``, each target
checked the same way; a redirect from https to http is refused; on a redirect to
another origin the configured and per-call headers (``Authorization``...) are dropped;
303, and 301/302 after a POST, continue with a GET without body (as browsers do).
``trust_env=False``: no proxy from ``HTTP(S)_PROXY`` (it would bypass the check), no
``.netrc``.  Header values are secrets and are never logged; logs name the host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx

from .egress import EgressPolicy

__all__ = [
    "MAX_ANSWER_BYTES",
    "USER_AGENT",
    "EgressRefused",
    "Resolver",
    "WebhookClient",
    "WebhookReply",
    "resolve_host",
]

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1 << 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DRAIN_BYTES = 64 << 10

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``await resolve(host, port)`` → the IP addresses (text) to connect to."""


def _version() -> str:
    try:
        return importlib.metadata.version("voicebot")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"voicebot/{_version()}"


class EgressRefused(Exception):
    """The egress policy refused a URL or the addresses of its host."""


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the event loop's resolver (a thread, not a block)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# ------------------------------------------------------------ transport (httpcore)


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's (what httpx's own transport does)."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc)) from exc
    except httpcore.ConnectError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
            httpcore.ConnectionNotAvailable) as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__) from exc


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Checks the host, resolves it, checks every address, then connects to one of them:
    the only place the pool opens connections, so nothing reaches an unchecked address."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._policy.host_allowed(host):  # again, on the host httpx parsed
            raise EgressRefused(f"host {host} is not allowed")
        try:
            ipaddress.ip_address(host)
            addresses = [host]  # an IP literal: nothing to resolve
        except ValueError:
            addresses = []
        try:
            addresses = addresses or list(await self._resolve(host, port))
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if (reason := self._policy.check_addresses(host, addresses)) is not None:
            raise EgressRefused(reason)
        failure: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _mapped_errors():
                await close()


class _EgressTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, with the checking network backend under its pool."""

    def __init__(self, *, backend: httpcore.AsyncNetworkBackend, ssl_context: ssl.SSLContext,
                 limits: httpx.Limits) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        with _mapped_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


# ------------------------------------------------------------------ the client


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookReply:
    """What one POST got: the final status (None: no HTTP answer) and body, or an error."""

    status: int | None = None
    body: bytes = b""
    retry_after_s: float | None = None
    error: str | None = None
    refused: bool = False  # by the egress policy: retrying will not help

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def _retry_after_s(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: ignored
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


async def _drain(response: httpx.Response) -> None:
    """Read a small body we do not need (a redirect's, an error's) so that the
    connection goes back to the pool; a larger one closes the connection instead."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) <= _DRAIN_BYTES:
        await response.aread()


async def _reply(response: httpx.Response) -> WebhookReply:
    """The final answer; a 2xx body is read, at most :data:`MAX_ANSWER_BYTES` of it."""
    status = response.status_code
    retry_after_s = _retry_after_s(response.headers.get("retry-after"))
    if not 200 <= status < 300:
        await _drain(response)
        return WebhookReply(status=status, retry_after_s=retry_after_s)
    too_large = WebhookReply(status=status, error="answer is larger than 1 MiB")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        return too_large
    data = bytearray()
    async for chunk in response.aiter_bytes():  # decoded: a gzip bomb is capped too
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            return too_large
    return WebhookReply(status=status, body=bytes(data), retry_after_s=retry_after_s)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class WebhookClient:
    """POSTs JSON to webhooks over one shared keep-alive pool, within ``policy``.

    ``headers`` go with every request (e.g. ``Authorization``), after ``Content-Type``
    and ``User-Agent``; ``resolve`` replaces the system resolver (tests).
    """

    def __init__(
        self, *, policy: EgressPolicy | None = None, headers: Mapping[str, str] | None = None,
        resolve: Resolver = resolve_host, ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100, max_keepalive_connections: int = 20,
        keepalive_expiry_s: float = 30.0,
    ) -> None:
        self._policy = policy or EgressPolicy()
        self._headers = dict(headers or {})
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_keepalive_connections,
                              keepalive_expiry=keepalive_expiry_s)
        transport = _EgressTransport(
            backend=_CheckedBackend(self._policy, resolve),
            ssl_context=ssl_context or httpx.create_ssl_context(), limits=limits)
        self._client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"})

    @property
    def policy(self) -> EgressPolicy:
        return self._policy

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the kept-alive connections; the client is unusable afterwards."""
        await self._client.aclose()

    async def post(self, url: str, body: bytes, *, timeout_s: float,
                   headers: Mapping[str, str] | None = None) -> WebhookReply:
        """POST ``body`` (JSON) to ``url``, redirects followed, all within ``timeout_s``."""
        extra = {**self._headers, **(headers or {})}
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(url, body, extra, timeout_s=timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            return WebhookReply(error=f"no answer within {timeout_s:.1f} s")
        except EgressRefused as exc:
            log.warning("webhook refused by the egress policy: %s", exc)
            return WebhookReply(error=f"refused by the egress policy: {exc}", refused=True)
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            return WebhookReply(error=f"request failed: {exc or type(exc).__name__}")

    async def post_json(
        self, url: str, payload: Mapping[str, Any], *, timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """POST ``payload``; the JSON object answered (an empty answer is ``{}``), or an
        error message: ``HTTP 500``, ``no answer within 2.0 s``, ``answer is not JSON``..."""
        try:
            body = json.dumps(payload).encode()
        except (TypeError, ValueError) as exc:
            return None, f"payload is not JSON: {exc}"
        reply = await self.post(url, body, timeout_s=timeout_s, headers=headers)
        if reply.error is not None:
            return None, reply.error
        if not reply.ok:
            return None, f"HTTP {reply.status}"
        try:
            answer = json.loads(reply.body or b"{}")
        except ValueError:
            return None, "answer is not JSON"
        if not isinstance(answer, dict):
            return None, "answer is not a JSON object"
        return answer, None

    async def _exchange(self, url: str, body: bytes, extra: dict[str, str], *,
                        timeout_s: float) -> WebhookReply:
        method, target, status = "POST", url, None
        content: bytes | None = body
        for _ in range(self._policy.max_redirects + 1):
            if (reason := self._policy.check_url(target)) is not None:
                raise EgressRefused(reason)
            headers = {"Content-Type": "application/json"} if content is not None else {}
            request = self._client.build_request(
                method, target, content=content, headers={**headers, **extra},
                timeout=timeout_s)
            response = await self._client.send(request, stream=True)
            try:
                status = response.status_code
                location = response.headers.get("location")
                if status not in _REDIRECTS or location is None:
                    reply = await _reply(response)
                    log.debug("webhook %s %s: HTTP %d", method, request.url.host, status)
                    return reply
                following = request.url.join(location)
                await _drain(response)
            finally:
                await response.aclose()
            if request.url.scheme == "https" and following.scheme != "https":
                raise EgressRefused(f"redirect from https to {following.scheme}")
            if _origin(following) != _origin(request.url):
                extra = {}  # secrets stay with the origin they were configured for
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
            log.debug("webhook %s redirected (%d) to %s", request.url.host, status,
                      following.host)
            target = str(following)
        return WebhookReply(status=status,
                            error=f"more than {self._policy.max_redirects} redirects")
