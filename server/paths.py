"""Where voicebot's files are: a repository checkout's, or the installed wheel's copies.

The one place that answers it (server/config.py's defaults, ``voicebot models``, the
benchmarks' stack configs):

* **checkout** -- this package is the ``server/`` folder of a repository checkout (next
  to ``pyproject.toml``, ``scenarios/`` and ``models/manifest.yaml``): the repository's
  ``scenarios/``, ``models/manifest.yaml`` and ``server/configs/``, and the git-ignored
  model cache ``models/cache/``, as ``make serve`` and ``make test`` always had;
* **installed** (the wheel installs this package as ``voicebot_server``): the copies
  shipped as its package data, found with :mod:`importlib.resources` --
  ``voicebot_server/scenarios/``, ``voicebot_server/models/manifest.yaml``,
  ``voicebot_server/configs/`` -- and the per-user model cache
  (:func:`voicebot.modelhub.user_models_dir`: ``$XDG_CACHE_HOME/voicebot/models``, else
  ``~/.cache/voicebot/models``), never site-packages.

``VOICEBOT_MODELS_DIR`` (or ``models_dir:`` in a config file) overrides the model cache
in both; ``scenarios_dir:`` and ``manifest:`` override the others (server/config.py).
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

from voicebot.errors import ConfigError
from voicebot.modelhub.locations import user_models_dir

__all__ = [
    "REPO_ROOT",
    "checkout_root",
    "default_configs_dir",
    "default_data_dir",
    "default_manifest",
    "default_models_dir",
    "default_scenarios_dir",
    "resolve_config_path",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository checkout's root when :func:`checkout_root` is not None (installed:
the site-packages folder, which holds none of voicebot's data)."""


@functools.cache
def checkout_root() -> Path | None:
    """The repository root when this package is a checkout's ``server/`` folder, else None
    (installed from the wheel, where it is ``voicebot_server/``)."""
    here = Path(__file__).resolve().parent
    root = here.parent
    markers = (root / "pyproject.toml", root / "models" / "manifest.yaml")
    if here.name == "server" and all(m.is_file() for m in markers) \
            and (root / "scenarios").is_dir():
        return root
    return None


@functools.cache
def _package_data() -> Path:
    """The installed package's folder, holding its data (scenarios, manifest, configs)."""
    folder = resources.files(__name__.rpartition(".")[0])
    if not isinstance(folder, Path):  # a zip import: the data are not files
        raise ConfigError(f"voicebot's package data are not files on disk ({folder}); "
                          "install the wheel with pip, unzipped")
    return folder


def default_scenarios_dir() -> Path:
    """``scenarios/`` of the checkout, else the packaged scenarios."""
    root = checkout_root()
    return root / "scenarios" if root is not None else _package_data() / "scenarios"


def default_manifest() -> Path:
    """``models/manifest.yaml`` of the checkout, else the packaged copy."""
    root = checkout_root()
    return (root if root is not None else _package_data()) / "models" / "manifest.yaml"


def default_configs_dir() -> Path:
    """``server/configs/`` of the checkout, else the packaged stack configs."""
    root = checkout_root()
    return root / "server" / "configs" if root is not None else _package_data() / "configs"


def default_models_dir() -> Path:
    """``models/cache/`` of the checkout, else the per-user cache folder (XDG)."""
    root = checkout_root()
    return root / "models" / "cache" if root is not None else user_models_dir()


def default_data_dir() -> Path:
    """Where call records and recordings are kept: ``data/`` of the checkout, else
    ``$XDG_DATA_HOME/voicebot`` (``~/.local/share/voicebot``)."""
    root = checkout_root()
    if root is not None:
        return root / "data"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "voicebot"


def resolve_config_path(path: Path) -> Path:
    """``path`` itself when it exists or names a folder; a bare name such as
    ``reference`` or ``bench-lite.yaml`` that is no file here names a shipped stack
    config (:func:`default_configs_dir`) when there is one."""
    if path.exists() or len(path.parts) != 1:
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    shipped = default_configs_dir() / name
    return shipped if shipped.is_file() else path
