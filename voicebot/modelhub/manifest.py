"""The models manifest: which models ``voicebot models pull`` can fetch, and from where.

``models/manifest.yaml`` lists every model voicebot knows by name, each with its
kind, licence, description and files (relative path, URL, size in bytes,
sha256, and optional PyPI ``mirrors`` of the same bytes: see
:mod:`voicebot.modelhub.mirrors`). :func:`load_manifest` parses and validates it
into frozen dataclasses; every validation error is a
:class:`~voicebot.errors.ConfigError` naming the file, the model entry and the
field at fault.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from voicebot.errors import ConfigError
from voicebot.modelhub.mirrors import Mirror, check_wheel_pins, parse_mirrors

__all__ = [
    "KINDS",
    "Manifest",
    "ModelEntry",
    "ModelFile",
    "load_manifest",
    "parse_manifest",
]

_log = logging.getLogger(__name__)

KINDS = ("whisper", "piper", "onnx", "builtin")
_MODEL_KEYS = frozenset({"name", "kind", "licence", "description", "source", "build", "files"})
_FILE_KEYS = frozenset({"path", "url", "size_bytes", "sha256", "mirrors"})
_FILE_REQUIRED = frozenset({"path", "url", "size_bytes", "sha256"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model: where it goes under the model's directory, and its pins.

    ``url`` is the official source, tried first; ``mirrors`` carry the same bytes.
    """

    path: str
    url: str
    size_bytes: int
    sha256: str | None
    mirrors: tuple[Mirror, ...] = ()

    @property
    def verified(self) -> bool:
        """Whether the manifest pins this file's sha256."""
        return self.sha256 is not None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One named model of the manifest."""

    name: str
    kind: str
    licence: str
    description: str
    files: tuple[ModelFile, ...]
    source: str | None = None
    build: str | None = None

    @property
    def size_bytes(self) -> int:
        """The total download size of the model."""
        return sum(f.size_bytes for f in self.files)

    @property
    def downloadable(self) -> bool:
        """``builtin`` models are built locally and have nothing to download."""
        return self.kind != "builtin"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest: its source file and its models, in file order."""

    path: Path
    models: tuple[ModelEntry, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def find(self, name: str) -> ModelEntry | None:
        """The model called ``name``, or ``None``."""
        return next((m for m in self.models if m.name == name), None)

    def get(self, name: str) -> ModelEntry:
        """The model called ``name``; a ConfigError listing the known names otherwise."""
        entry = self.find(name)
        if entry is None:
            known = ", ".join(self.names()) or "(none)"
            raise ConfigError(f"no model {name!r} in {self.path}; known models: {known}")
        return entry


def _text(where: str, node: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = node.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _parse_file(where: str, node: Any) -> ModelFile:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: each file must be a mapping with {sorted(_FILE_KEYS)}")
    unknown = sorted(set(node) - _FILE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    missing = sorted(_FILE_REQUIRED - set(node))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    path = _text(where, node, "path") or ""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ConfigError(f"{where}: 'path' {path!r} must be relative, inside the model folder")
    url = _text(where, node, "url") or ""
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: 'url' {url!r} must be an http(s) URL")
    size = node["size_bytes"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ConfigError(f"{where}: 'size_bytes' must be a whole number >= 0, not {size!r}")
    sha256 = node["sha256"]
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_RE.match(sha256)):
        raise ConfigError(f"{where}: 'sha256' must be 64 lowercase hex digits or null, "
                          f"not {sha256!r}")
    mirrors = parse_mirrors(where, node.get("mirrors"))
    return ModelFile(path=str(pure), url=url, size_bytes=size, sha256=sha256, mirrors=mirrors)


def _parse_model(source: str, index: int, node: Any) -> ModelEntry:
    where = f"{source}: models[{index}]"
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: each model must be a mapping")
    name = node.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: 'name' must be letters, digits, '.', '_' or '-', "
                          f"not {name!r}")
    where = f"{source}: model {name!r}"
    unknown = sorted(set(node) - _MODEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    kind = node.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    licence = _text(where, node, "licence") or ""
    description = _text(where, node, "description") or ""
    files_node = node.get("files")
    if not isinstance(files_node, list):
        raise ConfigError(f"{where}: 'files' must be a list")
    files = tuple(_parse_file(f"{where}: files[{j}]", f) for j, f in enumerate(files_node))
    build = _text(where, node, "build", required=False)
    if kind == "builtin":
        if files:
            raise ConfigError(f"{where}: a builtin model is built locally and lists no files")
        if build is None:
            raise ConfigError(f"{where}: a builtin model needs 'build' saying how it is built")
    elif not files:
        raise ConfigError(f"{where}: a {kind} model needs at least one file")
    paths = [f.path for f in files]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ConfigError(f"{where}: file path(s) listed twice: {duplicates}")
    return ModelEntry(name=name, kind=str(kind), licence=licence, description=description,
                      files=files, source=_text(where, node, "source", required=False),
                      build=build)


def parse_manifest(data: Any, *, path: Path) -> Manifest:
    """Validate already-parsed YAML ``data``; ``path`` names the file in errors."""
    source = str(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the manifest must be a mapping with a 'models' list")
    unknown = sorted(set(data) - {"version", "models"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}")
    if data.get("version", 1) != 1:
        raise ConfigError(f"{source}: unsupported manifest version {data.get('version')!r}")
    models_node = data.get("models")
    if not isinstance(models_node, list):
        raise ConfigError(f"{source}: 'models' must be a list")
    models = tuple(_parse_model(source, i, node) for i, node in enumerate(models_node))
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise ConfigError(f"{source}: model {model.name!r} is listed twice")
        seen.add(model.name)
    check_wheel_pins(source, (
        (f"model {model.name!r}: files[{j}]: mirrors[{k}]", part)
        for model in models for j, f in enumerate(model.files)
        for k, mirror in enumerate(f.mirrors) for part in mirror.parts))
    return Manifest(path=path, models=models)


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate the manifest at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read models manifest {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    manifest = parse_manifest(data, path=path)
    _log.debug("loaded %d model(s) from %s", len(manifest.models), path)
    return manifest
