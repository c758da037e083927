"""Shared pieces of the voicebot.modelhub tests: a local model hub and a test manifest.

The hub (ThreadingHTTPServer on 127.0.0.1:0) serves bytes the tests make, with
Range support written here, and modes that ignore Range, drop the connection half
way, serve wrong bytes, or hang. ``hub`` is the pytest fixture that runs it,
``_write_manifest`` a manifest of its files. Used by test_modelhub_download.py
and test_modelhub_store.py; ``_sha`` and ``_free_port`` also by the PyPI-mirror
tests. No test touches the real network.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

__all__ = ["CONFIG", "PAYLOAD", "_FileServer", "_free_port", "_sha", "_write_manifest", "hub"]

PAYLOAD = bytes((i * 7 + i // 251) % 256 for i in range(300_000))
CONFIG = b'{"dims": 4}\n'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.mode = "normal"  # normal | ignore-range | drop | corrupt | hang
        self.requests: list[tuple[str, str | None]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that timed out leaves a broken pipe behind."""


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = cast(_FileServer, self.server)
        requested = self.headers.get("Range")
        server.requests.append((self.path, requested))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if server.mode == "hang":
            time.sleep(2.0)
            return
        if server.mode == "corrupt":
            body = bytes(b ^ 0x5A for b in body)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match is not None and server.mode != "ignore-range":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.mode == "drop":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def hub() -> Iterator[_FileServer]:
    server = _FileServer()
    server.files = {"/m/model.bin": PAYLOAD, "/m/config.json": CONFIG}
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _write_manifest(tmp_path: Path, hub: _FileServer, *, sha: str | None = None,
                    unpinned: bool = False) -> Path:
    files = [
        {"path": "model.bin", "url": hub.url("/m/model.bin"), "size_bytes": len(PAYLOAD),
         "sha256": None if unpinned else (sha or _sha(PAYLOAD))},
        {"path": "config.json", "url": hub.url("/m/config.json"), "size_bytes": len(CONFIG),
         "sha256": _sha(CONFIG)},
    ]
    data = {"version": 1, "models": [
        {"name": "tiny-test", "kind": "whisper", "licence": "MIT", "description": "test model",
         "files": files},
        {"name": "encoder", "kind": "builtin", "licence": "Apache-2.0", "description": "local",
         "build": "built from the wheel on first use", "files": []},
    ]}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
