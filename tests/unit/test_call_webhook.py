"""The end-of-call webhook against a real HTTP server (stdlib, in a thread): signature,
retries and backoff, the in-flight bound, shutdown, and its configuration."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.call_webhook import (
    CallEndNotifier,
    CallWebhookConfig,
    parse_call_webhook,
    sign,
    verify_signature,
)
from server.egress import EgressPolicy
from server.webhook import WebhookClient
from voicebot.errors import ConfigError

__all__: list[str] = []

SECRET = "whsec-test"
PAYLOAD = {"call_id": "c-42", "outcome": "transferred", "transcript": "my card number"}


class Server(ThreadingHTTPServer):
    """Answers with the next scripted (status, headers); 200 once the script is done."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.connections = 0
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/calls/ended"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        time.sleep(self.server.delay_s)
        status, headers = self.server.script.pop(0) if self.server.script else (200, {})
        self.send_response(status)
        for name, value in {**headers, "Content-Length": "2"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(policy=EgressPolicy(allow_private=True)) as client:
        yield client


class Sleeps:
    """The notifier's ``sleep``: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def _notifier(client: WebhookClient, url: str, sleeps: Sleeps, **options: object
              ) -> CallEndNotifier:
    config = CallWebhookConfig(url=url, secret=SECRET, timeout_s=2.0, **options)  # type: ignore[arg-type]
    return CallEndNotifier(client, config, sleep=sleeps, rng=random.Random(7))


async def test_retries_with_backoff_then_success(server: Server, client: WebhookClient) -> None:
    server.script = [(503, {}), (503, {})]
    sleeps = Sleeps()
    notifier = _notifier(client, server.url, sleeps)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    assert notifier.delivered == 1 and notifier.failed == 0
    assert len(server.received) == 3 and server.connections == 1  # one kept-alive connection
    rng = random.Random(7)
    assert sleeps.delays == [0.25 + rng.random() * 0.25, 0.5 + rng.random() * 0.5]
    deliveries = {headers["x-voicebot-delivery"] for headers, _ in server.received}
    assert len(deliveries) == 1  # the receiver can recognize a retry
    for headers, body in server.received:
        assert json.loads(body) == PAYLOAD
        assert headers["content-type"] == "application/json"
        assert verify_signature(SECRET, headers["x-voicebot-timestamp"], body,
                                headers["x-voicebot-signature"], now=time.time())


async def test_retry_after_is_respected_and_capped(server: Server,
                                                   client: WebhookClient) -> None:
    server.script = [(429, {"Retry-After": "2"}), (503, {"Retry-After": "999"})]
    sleeps = Sleeps()
    notifier = _notifier(client, server.url, sleeps, max_backoff_s=10.0)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    assert sleeps.delays == [2.0, 10.0] and notifier.delivered == 1


async def test_no_retry_on_400(server: Server, client: WebhookClient,
                               caplog: pytest.LogCaptureFixture) -> None:
    server.script = [(400, {})]
    sleeps = Sleeps()
    notifier = _notifier(client, server.url, sleeps)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    assert len(server.received) == 1 and sleeps.delays == [] and notifier.failed == 1
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert failures == ["call webhook to 127.0.0.1 failed after 1 attempt(s): HTTP 400"]
    assert "card number" not in caplog.text and SECRET not in caplog.text


async def test_gives_up_after_max_attempts(server: Server, client: WebhookClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    server.script = [(500, {})] * 5
    sleeps = Sleeps()
    notifier = _notifier(client, server.url, sleeps, max_attempts=3, backoff_s=1.0)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    assert len(server.received) == 3 and len(sleeps.delays) == 2 and notifier.failed == 1
    assert 0.5 <= sleeps.delays[0] <= 1.0 and 1.0 <= sleeps.delays[1] <= 2.0
    assert "failed after 3 attempt(s): HTTP 500" in caplog.text


async def test_connection_errors_are_retried(client: WebhookClient,
                                             caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    notifier = _notifier(client, "http://127.0.0.1:9/x", sleeps, max_attempts=2)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    assert len(sleeps.delays) == 1 and notifier.failed == 1
    assert "failed after 2 attempt(s): request failed" in caplog.text


async def test_refused_by_the_policy_is_not_retried(server: Server) -> None:
    sleeps = Sleeps()
    async with WebhookClient() as strict:  # 127.0.0.1 is private
        notifier = _notifier(strict, server.url, sleeps)
        notifier.notify(PAYLOAD)
        await notifier.close(5.0)
    assert sleeps.delays == [] and notifier.failed == 1 and server.received == []


def test_signature_verifies_and_a_tampered_body_does_not() -> None:
    body = json.dumps(PAYLOAD).encode()
    header = sign(SECRET, "1718000000", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, "1718000000", body, header, now=1718000100)
    assert not verify_signature(SECRET, "1718000000", body + b" ", header, now=1718000100)
    assert not verify_signature("other", "1718000000", body, header, now=1718000100)
    assert not verify_signature(SECRET, "1718000001", body, header, now=1718000100)
    assert not verify_signature(SECRET, "1718000000", body, header, now=1718000301)  # stale
    assert not verify_signature(SECRET, "-1", body, header, now=0)


async def test_no_secret_no_signature(server: Server, client: WebhookClient) -> None:
    config = CallWebhookConfig(url=server.url, headers={"X-Tenant": "acme"})
    notifier = CallEndNotifier(client, config, sleep=Sleeps(), clock=lambda: 1718000000.5)
    notifier.notify(PAYLOAD)
    await notifier.close(5.0)
    headers, _ = server.received[0]
    assert "x-voicebot-signature" not in headers and headers["x-tenant"] == "acme"
    assert headers["x-voicebot-timestamp"] == "1718000000"


async def test_in_flight_bound_then_close_cancels(server: Server, client: WebhookClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    server.script = [(503, {})] * 3
    retrying: list[float] = []
    both_retrying, never = asyncio.Event(), asyncio.Event()

    async def stuck(delay_s: float) -> None:
        retrying.append(delay_s)
        if len(retrying) == 2:
            both_retrying.set()
        await never.wait()  # the retry waits for ever: the delivery stays in flight

    config = CallWebhookConfig(url=server.url, max_in_flight=2)
    notifier = CallEndNotifier(client, config, sleep=stuck)
    started = time.perf_counter()
    for _ in range(3):
        notifier.notify(PAYLOAD)
    assert time.perf_counter() - started < 0.05  # notify never waits for the network
    assert notifier.in_flight == 2 and notifier.dropped == 1
    await asyncio.wait_for(both_retrying.wait(), 5.0)
    await notifier.close(0.1)
    assert notifier.in_flight == 0 and notifier.delivered == 0
    assert "2 deliveries cancelled at shutdown" in caplog.text
    notifier.notify(PAYLOAD)  # after close: dropped
    assert notifier.dropped == 2


async def test_close_waits_for_deliveries(server: Server, client: WebhookClient) -> None:
    server.delay_s = 0.3
    notifier = _notifier(client, server.url, Sleeps())
    notifier.notify(PAYLOAD)
    notifier.notify({"bad": object()})  # not JSON: dropped at once
    await notifier.close(5.0)
    assert notifier.delivered == 1 and notifier.dropped == 1


# ------------------------------------------------------------------ configuration


def test_parse_call_webhook() -> None:
    config = parse_call_webhook(
        {"url": "https://crm.example.com/hooks/call-ended", "secret_env": "CALL_SECRET",
         "timeout_s": 3, "max_attempts": 4, "headers": {"X-Tenant": "acme"}},
        {"CALL_SECRET": SECRET}, policy=EgressPolicy(allowed_hosts=("*.example.com",)))
    assert config == CallWebhookConfig(url="https://crm.example.com/hooks/call-ended",
                                       secret=SECRET, timeout_s=3.0, max_attempts=4,
                                       headers={"X-Tenant": "acme"})
    assert SECRET not in repr(config)
    assert parse_call_webhook(None, {}) is None
    assert parse_call_webhook({"url": "http://h/x"}, {}) == CallWebhookConfig(url="http://h/x")


@pytest.mark.parametrize(("data", "message"), [
    ({"url": "https://h/x", "secret": "inline"}, "environment variable"),
    ({"url": "https://h/x", "secret_env": "NOPE"}, "NOPE is not set"),
    ({"url": "https://h/x", "retries": 3}, "unknown key call_webhook.retries"),
    ({"secret_env": "CALL_SECRET"}, "url is required"),
    ({"url": "ftp://h/x"}, "must be an http"),
    ({"url": "https://h/x", "max_attempts": 0}, "must be >= 1"),
    ({"url": "https://h/x", "max_attempts": 2.5}, "max_attempts must be a whole number"),
    ({"url": "https://h/x", "timeout_s": "5"}, "timeout_s must be a number"),
    ({"url": "https://h/x", "timeout_s": 0}, "timeout_s must be positive"),
    ({"url": "https://other.example.net/x"}, "refused by the webhooks policy"),
])
def test_parse_call_webhook_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_call_webhook(data, {"CALL_SECRET": SECRET},
                           policy=EgressPolicy(allowed_hosts=("h",)))
