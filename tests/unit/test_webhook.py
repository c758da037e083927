"""The dialog webhook client against a real local HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.egress import EgressPolicy
from server.webhook import WebhookClient

__all__: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/fail":
            self.send_response(500)
            self.end_headers()
            return
        answer = b"not json" if self.path == "/garbage" else json.dumps(
            {"echo": body["slots"], "ok": True}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    async with WebhookClient(policy=EgressPolicy(allow_private=True)) as client:
        yield client


async def test_success_echoes_payload(base_url: str, client: WebhookClient) -> None:
    data, error = await client.post_json(f"{base_url}/ok", {"slots": {"a": "1"}}, timeout_s=2)
    assert error is None and data == {"echo": {"a": "1"}, "ok": True}


async def test_timeout(base_url: str, client: WebhookClient) -> None:
    started = time.perf_counter()
    data, error = await client.post_json(f"{base_url}/slow", {"slots": {}}, timeout_s=0.2)
    assert data is None and error is not None and "within 0.2 s" in error
    assert time.perf_counter() - started < 0.9


@pytest.mark.parametrize(("path", "message"), [("/fail", "HTTP 500"),
                                               ("/garbage", "not JSON")])
async def test_errors(base_url: str, client: WebhookClient, path: str, message: str) -> None:
    data, error = await client.post_json(f"{base_url}{path}", {"slots": {}}, timeout_s=2)
    assert data is None and error is not None and message in error


async def test_connection_refused(client: WebhookClient) -> None:
    data, error = await client.post_json("http://127.0.0.1:9/x", {}, timeout_s=2)
    assert data is None and error is not None and error.startswith("request failed")
