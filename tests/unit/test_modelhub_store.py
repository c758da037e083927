"""voicebot.modelhub.store and ``voicebot models`` against the local hub.

``pull`` installs, records and verifies a model, refuses unpinned files unless
allowed and leaves nothing behind on failure; ``resolve_model`` finds installed
models; the ``models list`` and ``pull`` commands. The hub is the
``hub`` fixture of modelhub_helpers.py. No test touches the real network.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from server.config import ServerConfig
from server.models_cli import register, run
from tests.unit import modelhub_helpers
from tests.unit.modelhub_helpers import (
    CONFIG,
    PAYLOAD,
    _FileServer,
    _free_port,
    _sha,
    _write_manifest,
)
from voicebot.errors import ConfigError, EngineUnavailableError
from voicebot.modelhub.download import ChecksumError, DownloadError, NetworkError
from voicebot.modelhub.manifest import load_manifest
from voicebot.modelhub.store import INSTALLED_FILE, installed, pull, resolve_model

__all__: list[str] = []

hub = modelhub_helpers.hub  # the fixture: a local hub serving PAYLOAD and CONFIG


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
