"""Where models are cached when nobody says: the per-user cache folder.

An installed voicebot keeps its models in ``$XDG_CACHE_HOME/voicebot/models`` (the XDG
base-directory convention; a relative ``XDG_CACHE_HOME`` is ignored, as the spec says),
else ``~/.cache/voicebot/models`` -- never inside site-packages. ``VOICEBOT_MODELS_DIR``
overrides it (and a repository checkout uses its own ``models/cache``: server/paths.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MODELS_DIR_ENV", "user_models_dir"]

MODELS_DIR_ENV = "VOICEBOT_MODELS_DIR"
"""The environment variable that names the models folder, overriding every default
(applied by server/config.py's ``load_config``, like ``models_dir:`` in a config file)."""


def user_models_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/voicebot/models``, else ``~/.cache/voicebot/models``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME", "").strip()
        base = (Path(home) if home and os.path.isabs(home) else Path.home()) / ".cache"
    return base / "voicebot" / "models"

