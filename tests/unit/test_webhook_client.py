"""WebhookClient against a real HTTP/1.1 server on 127.0.0.1 (asyncio, keep-alive):
headers, keep-alive, size cap, redirects and the egress checks at connect time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.egress import EgressPolicy
from server.webhook import USER_AGENT, WebhookClient, resolve_host

__all__: list[str] = []


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


Answer = tuple[int, Mapping[str, str], bytes | list[bytes]]  # a list: chunked
Route = Callable[[Request], Awaitable[Answer]]


class HttpServer:
    """Answers each request on a kept-alive connection with its path's route."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while line := await reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                status, extra, content = await self.routes[path](request)
                head = f"HTTP/1.1 {status} X\r\n" + "".join(
                    f"{name}: {value}\r\n" for name, value in extra.items())
                if isinstance(content, list):
                    writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                    for chunk in content:
                        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(f"{head}Content-Length: {len(content)}\r\n\r\n".encode()
                                 + content)
                await writer.drain()
        writer.close()


def answer(status: int = 200, body: bytes | list[bytes] = b"", **headers: str) -> Route:
    async def route(request: Request) -> Answer:
        return status, {k.replace("_", "-"): v for k, v in headers.items()}, body
    return route


async def echo(request: Request) -> Answer:
    """200 and a JSON object: the request's method, body and a few of its headers."""
    seen = {name: request.headers.get(name) for name in
            ("content-type", "user-agent", "authorization", "x-call")}
    payload = {"method": request.method, "body": json.loads(request.body or b"null"),
               "headers": seen}
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class Resolver:
    """A DNS of our own: name → addresses; counts the look-ups."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return self.table[host]


class TrustFirstHop(EgressPolicy):
    """The test server is on loopback: let ``first.example.com`` reach it, and judge
    every other host exactly as production does (how a redirect into a private range
    is refused can only be shown after a first hop that was allowed)."""

    __slots__ = ()

    def check_addresses(self, host: str, addresses: Iterable[str]) -> str | None:
        if host == "first.example.com":
            return None
        return super().check_addresses(host, addresses)


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async with HttpServer() as server:
        server.routes["/echo"] = echo
        yield server


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(policy=EgressPolicy(allow_private=True),
                             headers={"Authorization": "Bearer s3cret"}) as client:
        yield client


async def test_json_round_trip_and_headers(
        server: HttpServer, client: WebhookClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data, error = await client.post_json(server.url("/echo"), {"slots": {"a": "é"}},
                                         timeout_s=2, headers={"X-Call": "c1"})
    assert error is None and data is not None
    assert data["method"] == "POST" and data["body"] == {"slots": {"a": "é"}}
    assert data["headers"] == {"content-type": "application/json", "user-agent": USER_AGENT,
                               "authorization": "Bearer s3cret", "x-call": "c1"}
    assert USER_AGENT.startswith("voicebot/")
    assert "s3cret" not in caplog.text


async def test_keep_alive_reuses_one_connection(server: HttpServer) -> None:
    resolver = Resolver({"hooks.example.com": ["127.0.0.1"]})
    async with WebhookClient(policy=EgressPolicy(allow_private=True),
                             resolve=resolver) as client:
        for n in range(2):
            _, error = await client.post_json(server.url("/echo", "hooks.example.com"),
                                              {"n": n}, timeout_s=2)
            assert error is None
    assert len(server.requests) == 2 and server.connections == 1
    assert resolver.lookups == ["hooks.example.com"]  # checked once, when it connected


async def test_timeout(server: HttpServer, client: WebhookClient) -> None:
    async def slow(request: Request) -> Answer:
        await asyncio.sleep(1.0)
        return await echo(request)
    server.routes["/slow"] = slow
    started = time.perf_counter()
    data, error = await client.post_json(server.url("/slow"), {}, timeout_s=0.2)
    assert data is None and error == "no answer within 0.2 s"
    assert time.perf_counter() - started < 0.9


@pytest.mark.parametrize(("route", "message"), [
    (answer(500), "HTTP 500"),
    (answer(404, b"{}"), "HTTP 404"),
    (answer(200, b"<html>"), "answer is not JSON"),
    (answer(200, b"[1, 2]"), "answer is not a JSON object"),
    (answer(200, b"x" * (2 << 20)), "answer is larger than 1 MiB"),
    (answer(200, [b"x" * 65536] * 32), "answer is larger than 1 MiB"),  # chunked, no length
])
async def test_bad_answers(server: HttpServer, client: WebhookClient, route: Route,
                           message: str) -> None:
    server.routes["/x"] = route
    data, error = await client.post_json(server.url("/x"), {}, timeout_s=5)
    assert data is None and error == message


async def test_empty_answer_is_an_empty_object(server: HttpServer,
                                               client: WebhookClient) -> None:
    server.routes["/x"] = answer(204)
    assert await client.post_json(server.url("/x"), {}, timeout_s=2) == ({}, None)


async def test_retry_after_and_status_reported(server: HttpServer,
                                               client: WebhookClient) -> None:
    server.routes["/busy"] = answer(429, Retry_After="7")
    reply = await client.post(server.url("/busy"), b"{}", timeout_s=2)
    assert reply.status == 429 and reply.retry_after_s == 7.0 and not reply.ok


@pytest.mark.parametrize(("status", "method"), [(307, "POST"), (308, "POST"),
                                                (303, "GET"), (302, "GET")])
async def test_redirect_followed(server: HttpServer, client: WebhookClient, status: int,
                                 method: str) -> None:
    server.routes["/moved"] = answer(status, Location="/echo")
    data, error = await client.post_json(server.url("/moved"), {"k": 1}, timeout_s=2)
    assert error is None and data is not None and data["method"] == method
    assert data["body"] == ({"k": 1} if method == "POST" else None)
    assert data["headers"]["authorization"] == "Bearer s3cret"  # same origin
    assert server.connections == 1


async def test_redirect_to_another_origin_drops_the_secrets(server: HttpServer) -> None:
    server.routes["/moved"] = answer(307, Location=server.url("/echo", "other.example.com"))
    resolver = Resolver({"other.example.com": ["127.0.0.1"]})
    async with WebhookClient(policy=EgressPolicy(allow_private=True), resolve=resolver,
                             headers={"Authorization": "Bearer s3cret"}) as client:
        data, error = await client.post_json(server.url("/moved"), {}, timeout_s=2)
    assert error is None and data is not None
    assert data["headers"]["authorization"] is None
    assert data["headers"]["user-agent"] == USER_AGENT


async def test_too_many_redirects(server: HttpServer) -> None:
    server.routes["/loop"] = answer(302, Location="/loop")
    async with WebhookClient(policy=EgressPolicy(allow_private=True, max_redirects=2)) as c:
        assert await c.post_json(server.url("/loop"), {}, timeout_s=2) == (
            None, "more than 2 redirects")
    assert len(server.requests) == 3


async def test_redirect_to_a_host_not_allowed_is_refused(server: HttpServer) -> None:
    server.routes["/away"] = answer(307, Location="http://evil.example.net/steal")
    resolver = Resolver({"evil.example.net": ["93.184.216.34"]})
    policy = EgressPolicy(allowed_hosts=("127.0.0.1",), allow_private=True)
    async with WebhookClient(policy=policy, resolve=resolver) as client:
        reply = await client.post(server.url("/away"), b"{}", timeout_s=2)
    assert reply.refused and reply.error == (
        "refused by the egress policy: host evil.example.net is not allowed")
    assert resolver.lookups == []  # refused before it was even resolved


@pytest.mark.parametrize("location", [
    "http://inside.example.com:{port}/echo",  # a name that resolves into 10/8
    "http://169.254.169.254/latest/meta-data/",  # the metadata service, literally
])
async def test_redirect_into_a_private_range_is_refused(server: HttpServer,
                                                        location: str) -> None:
    server.routes["/hook"] = answer(307, Location=location.format(port=server.port))
    resolver = Resolver({"first.example.com": ["127.0.0.1"],
                         "inside.example.com": ["10.0.0.7"]})
    policy = TrustFirstHop(allowed_hosts=("*.example.com", "169.254.169.254"))
    async with WebhookClient(policy=policy, resolve=resolver) as client:
        data, error = await client.post_json(server.url("/hook", "first.example.com"), {},
                                             timeout_s=2)
    assert data is None and error is not None
    assert error.startswith("refused by the egress policy: host ")
    assert "private address" in error
    assert len(server.requests) == 1 and server.connections == 1


async def test_name_resolving_to_a_private_address_is_never_connected(
        server: HttpServer) -> None:
    resolver = Resolver({"hooks.example.com": ["93.184.216.34", "127.0.0.1"]})
    policy = EgressPolicy(allowed_hosts=("hooks.example.com",))
    async with WebhookClient(policy=policy, resolve=resolver) as client:
        reply = await client.post(server.url("/echo", "hooks.example.com"), b"{}",
                                  timeout_s=2)
    assert reply.refused and reply.error == ("refused by the egress policy: host "
                                             "hooks.example.com resolves to the private "
                                             "address 127.0.0.1")
    assert server.connections == 0


async def test_url_refused_before_anything() -> None:
    async with WebhookClient() as strict:
        _, error = await strict.post_json("http://127.0.0.1:9/x", {}, timeout_s=2)
        assert error == "refused by the egress policy: host 127.0.0.1 is a private address"
        _, error = await strict.post_json("file:///etc/passwd", {}, timeout_s=2)
        assert error == "refused by the egress policy: scheme 'file' is not allowed"


async def test_unresolvable_host_and_bad_payload(client: WebhookClient) -> None:
    async with WebhookClient(resolve=Resolver({})) as c:
        reply = await c.post("http://nowhere.example.com/", b"{}", timeout_s=2)
    assert not reply.refused and reply.error is not None
    assert reply.error.startswith("request failed: cannot resolve nowhere.example.com")
    _, error = await client.post_json("http://127.0.0.1:9/", {"x": object()}, timeout_s=2)
    assert error is not None and error.startswith("payload is not JSON")


async def test_default_resolver_uses_the_system() -> None:
    assert set(await resolve_host("localhost", 80)) & {"127.0.0.1", "::1"}


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.com (its own trust anchor)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-keyout", key,
                    "-out", cert, "-subj", "/CN=hooks.example.com",
                    "-addext", "subjectAltName=DNS:hooks.example.com"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_tls_by_name_on_the_checked_address(certificate: tuple[Path, Path]) -> None:
    """Connected to the checked IP, TLS still sends and verifies the host *name*."""
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(*certificate)
    names: list[str | None] = []

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = sni
    resolver = Resolver({"hooks.example.com": ["127.0.0.1"],
                         "other.example.com": ["127.0.0.1"]})
    async with HttpServer(tls=server_tls) as server, WebhookClient(
            policy=EgressPolicy(allow_private=True), resolve=resolver,
            ssl_context=ssl.create_default_context(cafile=certificate[0])) as client:
        server.routes["/echo"] = echo
        data, error = await client.post_json(server.url("/echo", "hooks.example.com"),
                                             {"k": 1}, timeout_s=5)
        assert error is None and data is not None and data["body"] == {"k": 1}
        assert names == ["hooks.example.com"]
        _, error = await client.post_json(server.url("/echo", "other.example.com"), {},
                                          timeout_s=5)
        assert error is not None and error.startswith("request failed")
        assert "certificate" in error.lower() or "hostname" in error.lower()
        plain = f"http://hooks.example.com:{server.port}/echo"
        server.routes["/down"] = answer(307, Location=plain)
        _, error = await client.post_json(server.url("/down", "hooks.example.com"), {},
                                          timeout_s=5)
        assert error == "refused by the egress policy: redirect from https to http"
