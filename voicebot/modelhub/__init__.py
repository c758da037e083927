"""Model hub: the manifest of downloadable models, verified resumable downloads, the store.

``voicebot models list|pull`` (server/models_cli.py) is the command-line face of
this package. Nothing here touches the network until :func:`pull` or
:func:`download_file` is called.
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
from voicebot.modelhub.manifest import KINDS, Manifest, ModelEntry, ModelFile, load_manifest
from voicebot.modelhub.store import (
    INSTALLED_FILE,
    InstalledModel,
    inspect_model,
    installed,
    model_dir,
    pull,
    resolve_model,
)

__all__ = [
    "INSTALLED_FILE",
    "KINDS",
    "ChecksumError",
    "DownloadError",
    "InstalledModel",
    "Manifest",
    "ModelEntry",
    "ModelFile",
    "NetworkError",
    "ProgressFn",
    "download_file",
    "file_sha256",
    "inspect_model",
    "installed",
    "load_manifest",
    "model_dir",
    "pull",
    "resolve_model",
]
