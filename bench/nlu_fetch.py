"""The public NLU data sets of ``python -m bench nlu``: pinned, fetched, verified, cached.

Each file is pinned to a commit of its official repository (raw.githubusercontent.com)
with its size and sha256, and lands under ``out/nlu-data/`` (git-ignored, never
committed).  :func:`ensure_files` keeps a file already there when its size and
sha256 match, else downloads it with :func:`voicebot.modelhub.download.download_file`
(resumable, verified: wrong bytes raise ``ChecksumError`` and are deleted).

* CLINC150 (Larson et al. 2019), CC-BY-3.0: clinc/oos-eval ``data/data_full.json``.
* BANKING77 (Casanueva et al. 2020), CC-BY-4.0: PolyAI-LDN/task-specific-datasets
  ``banking_data/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from voicebot.modelhub.download import download_file, file_sha256

__all__ = ["BANKING77", "CLINC150", "DEFAULT_ROOT", "PinnedFile", "PinnedSet", "ensure_files"]

_log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("out/nlu-data")


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedFile:
    path: str
    """Where it lands under the data root (and its path after the set's base URL)."""
    remote: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedSet:
    name: str
    licence: str
    base_url: str
    files: tuple[PinnedFile, ...]


CLINC150 = PinnedSet(
    name="CLINC150", licence="CC-BY-3.0",
    base_url="https://raw.githubusercontent.com/clinc/oos-eval/"
             "828f8093932c8fe6ca7936c3d2e52903b1c523de",
    files=(PinnedFile(path="clinc150_data_full.json", remote="data/data_full.json",
                      size_bytes=2495390,
                      sha256="36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0"),))

BANKING77 = PinnedSet(
    name="BANKING77", licence="CC-BY-4.0",
    base_url="https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/"
             "57ec275d8078af65b7731c2a98be812d844a6d6b",
    files=(
        PinnedFile(path="banking77/train.csv", remote="banking_data/train.csv",
                   size_bytes=839073,
                   sha256="b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b"),
        PinnedFile(path="banking77/test.csv", remote="banking_data/test.csv",
                   size_bytes=239961,
                   sha256="d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d"),
        PinnedFile(path="banking77/categories.json", remote="banking_data/categories.json",
                   size_bytes=2036,
                   sha256="53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63"),
    ))


def _verified(dest: Path, pinned: PinnedFile) -> bool:
    return (dest.is_file() and dest.stat().st_size == pinned.size_bytes
            and file_sha256(dest) == pinned.sha256)


def ensure_files(pinned: PinnedSet, root: Path = DEFAULT_ROOT, *,
                 base_url: str | None = None, download: bool = True) -> Path:
    """``root`` once every file of ``pinned`` is there and verified.

    Missing or wrong files are downloaded from ``base_url`` (default: the pinned
    official URL) unless ``download`` is False; raises
    :class:`~voicebot.modelhub.download.DownloadError` (``ChecksumError``,
    ``NetworkError``) when a file cannot be had, ``FileNotFoundError`` when
    ``download`` is False and a file is missing or does not verify.
    """
    base = (base_url or pinned.base_url).rstrip("/")
    for item in pinned.files:
        dest = root / item.path
        if _verified(dest, item):
            continue
        if not download:
            raise FileNotFoundError(f"{dest} is missing or does not match its pinned sha256")
        _log.info("fetching %s (%s) %s", pinned.name, pinned.licence, item.remote)
        download_file(f"{base}/{item.remote}", dest, sha256=item.sha256,
                      size_bytes=item.size_bytes)
    return root
