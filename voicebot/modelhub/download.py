"""Resumable, verified download of one file over HTTP(S), standard library only.

:func:`download_file` streams into ``<dest>.partial``. If that file is already
there (an earlier download was cut off) it asks for the rest with an HTTP
``Range`` request: a ``206`` answer is appended, a server that answers ``200``
(it ignores ``Range``) is read again from the start. When the body is complete
the size and sha256 are checked and the partial is renamed onto ``dest`` with
:func:`os.replace`, so ``dest`` never holds a half-written file.

:func:`fetch_page` reads one small document (a package index page) through the
same opener, with the same error translation.

Errors (all :class:`DownloadError`, an :class:`~voicebot.errors.EngineError`):

* :class:`NetworkError` -- the host cannot be reached or the connection broke;
  the partial file is kept, so running again resumes;
* :class:`ChecksumError` -- the bytes are not the pinned ones; the partial file
  is deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from voicebot.errors import EngineError

__all__ = [
    "ChecksumError",
    "DownloadError",
    "NetworkError",
    "Page",
    "ProgressFn",
    "download_file",
    "fetch_page",
    "file_sha256",
    "partial_path",
]

_log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total)``; ``bytes_total`` is None when unknown."""

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "voicebot-modelhub/1"
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


class DownloadError(EngineError):
    """A model file could not be downloaded or verified."""


class NetworkError(DownloadError):
    """The host could not be reached, or the transfer broke off (partial kept)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the pinned size or sha256 (partial deleted)."""


def partial_path(dest: Path) -> Path:
    """Where :func:`download_file` keeps the bytes of ``dest`` until they are verified."""
    return dest.with_name(dest.name + ".partial")


def file_sha256(path: Path, *, chunk_bytes: int = _CHUNK_BYTES) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


class _RangeRejected(Exception):
    """Internal: the server refused our Range; start again from zero."""


def _open(url: str, offset: int, timeout_s: float, *, headers: Mapping[str, str] | None = None,
          accept: str | None = None) -> http.client.HTTPResponse:
    base = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if accept:
        base["Accept"] = accept
    if offset:
        base["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=base)
    for key, value in (headers or {}).items():  # e.g. credentials: never sent on a redirect
        request.add_unredirected_header(key, value)
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the partial is not a prefix the server knows
            raise _RangeRejected from exc
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(f"cannot reach {_host(url)} to download {url} (offline?): "
                           f"{reason}") from exc
    return response


def _start_offset(response: http.client.HTTPResponse, offset: int, url: str) -> int:
    """Where the body of ``response`` starts in the file: ``offset`` or 0."""
    if not offset:
        return 0
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            raise _RangeRejected(f"unexpected Content-Range from {url}")
        return offset
    _log.info("%s ignored the Range request; downloading it again from the start", _host(url))
    return 0


def _served_total(response: http.client.HTTPResponse, start: int) -> int | None:
    """The file size the server announces (``start`` + Content-Length), if it does."""
    length = response.headers.get("Content-Length", "").strip()
    return start + int(length) if length.isdigit() else None


def _stream(response: http.client.HTTPResponse, out: BinaryIO,
            update: Callable[[bytes], object], *, done: int, total: int | None, url: str,
            progress: ProgressFn | None) -> int:
    while True:
        try:
            chunk = response.read(_CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"download of {url} broke off after {done} bytes ({exc}); "
                               "run again to resume") from exc
        if not chunk:
            return done
        try:
            out.write(chunk)
        except OSError as exc:
            raise DownloadError(f"cannot write {out.name}: {exc}") from exc
        update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def _fetch(url: str, partial: Path, *, size_bytes: int | None, timeout_s: float,
           progress: ProgressFn | None, headers: Mapping[str, str] | None) -> str:
    """Fill ``partial`` with the whole body of ``url``; return its sha256."""
    for _attempt in range(2):
        offset = partial.stat().st_size if partial.exists() else 0
        if offset:
            _log.info("resuming %s at %d bytes", partial.name, offset)
        try:
            with _open(url, offset, timeout_s, headers=headers) as response:
                start = _start_offset(response, offset, url)
                digest = hashlib.sha256()
                if start:
                    with partial.open("rb") as old:
                        while chunk := old.read(_CHUNK_BYTES):
                            digest.update(chunk)
                served = _served_total(response, start)
                total = size_bytes if size_bytes is not None else served
                if progress is not None:
                    progress(start, total)
                with partial.open("ab" if start else "wb") as out:
                    done = _stream(response, out, digest.update, done=start, total=total,
                                   url=url, progress=progress)
        except _RangeRejected:
            _log.info("%s refused to resume %s; starting again", _host(url), partial.name)
            partial.unlink(missing_ok=True)
            continue
        if size_bytes is not None and served is not None and done == served < size_bytes:
            partial.unlink(missing_ok=True)
            raise ChecksumError(f"{url} is {served} bytes, but {size_bytes} are expected; "
                                "the partial download was deleted")
        if total is not None and done < total:
            raise NetworkError(f"download of {url} broke off after {done} of {total} bytes; "
                               "run again to resume")
        return digest.hexdigest()
    raise DownloadError(f"{url}: the server keeps refusing to resume; delete {partial} and retry")


def download_file(url: str, dest: Path, *, sha256: str | None, size_bytes: int | None,
                  progress: ProgressFn | None = None, timeout_s: float = 30.0,
                  headers: Mapping[str, str] | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming ``<dest>.partial``, verifying size and sha256.

    ``sha256``/``size_bytes`` may be None (not checked). ``headers`` (e.g. an
    ``Authorization`` for a private index) go to ``url`` only, never to a host it
    redirects to. Returns ``dest``.
    """
    dest = Path(dest)
    partial = partial_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest.parent}: {exc}") from exc
    have = partial.stat().st_size if partial.exists() else 0
    actual: str | None = None
    if size_bytes is not None and partial.exists() and have == size_bytes:  # never renamed
        actual = file_sha256(partial)
        if sha256 is not None and actual != sha256:
            actual = None
            partial.unlink()
    elif size_bytes is not None and have > size_bytes:
        partial.unlink()
    if actual is None:
        try:
            actual = _fetch(url, partial, size_bytes=size_bytes, timeout_s=timeout_s,
                            progress=progress, headers=headers)
        except OSError as exc:  # the network ones are translated already: this is the disk
            raise DownloadError(f"cannot write {partial}: {exc}") from exc
    got = partial.stat().st_size
    if size_bytes is not None and got != size_bytes:
        partial.unlink(missing_ok=True)
        raise ChecksumError(f"{dest.name} from {url} is {got} bytes, expected {size_bytes}; "
                            "the partial download was deleted")
    if sha256 is not None and actual != sha256:
        partial.unlink(missing_ok=True)
        raise ChecksumError(f"checksum mismatch for {dest.name} from {url}: expected sha256 "
                            f"{sha256}, got {actual}; the partial download was deleted")
    try:
        os.replace(partial, dest)
    except OSError as exc:
        raise DownloadError(f"cannot move {partial} to {dest}: {exc}") from exc
    _log.info("downloaded %s (%d bytes)%s", dest, got, "" if sha256 else " UNVERIFIED")
    return dest


@dataclass(frozen=True, slots=True)
class Page:
    """A small document read whole: the URL it came from (after redirects), its type, body."""

    url: str
    content_type: str
    body: bytes


def fetch_page(url: str, *, accept: str, timeout_s: float = 30.0, max_bytes: int = 16 << 20,
               headers: Mapping[str, str] | None = None) -> Page:
    """GET ``url`` (at most ``max_bytes``) with the errors of :func:`download_file`."""
    with _open(url, 0, timeout_s, headers=headers, accept=accept) as response:
        try:
            body = response.read(max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"reading {url} broke off ({exc})") from exc
        content_type = response.headers.get("Content-Type", "")
        final_url = response.geturl() or url
    if len(body) > max_bytes:
        raise DownloadError(f"{url}: the answer is larger than {max_bytes} bytes")
    return Page(url=final_url, content_type=content_type.split(";")[0].strip().lower(),
                body=body)
