"""Where voicebot's files are: the checkout's, or the installed package's (server/paths.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import server
from server import paths
from server.config import ServerConfig, load_config
from voicebot.modelhub import user_models_dir

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]


def test_a_checkout_uses_the_repository_files() -> None:
    assert paths.checkout_root() == REPO
    config = ServerConfig()
    assert config.scenarios_dir == REPO / "scenarios"
    assert config.manifest == REPO / "models" / "manifest.yaml"
    assert config.models_dir == REPO / "models" / "cache"
    assert paths.default_configs_dir() == REPO / "server" / "configs"


def test_installed_it_uses_the_package_data_and_the_user_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    package = Path(server.__file__).parent  # voicebot_server/ in the wheel
    config = ServerConfig()
    assert config.scenarios_dir == package / "scenarios"
    assert config.manifest == package / "models" / "manifest.yaml"
    assert paths.default_configs_dir() == package / "configs"
    assert config.models_dir == tmp_path / "voicebot" / "models"
    assert load_config(env={"VOICEBOT_MODELS_DIR": str(tmp_path / "m")}).models_dir \
        == tmp_path / "m"


@pytest.mark.parametrize(("env", "expected"), [
    ({"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}, "/x/cache/voicebot/models"),
    ({"XDG_CACHE_HOME": "relative", "HOME": "/h"}, "/h/.cache/voicebot/models"),
    ({"HOME": "/h"}, "/h/.cache/voicebot/models"),
])
def test_the_user_cache_follows_xdg(env: dict[str, str], expected: str) -> None:
    assert user_models_dir(env) == Path(expected)


def test_the_env_beats_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("models_dir: mine\n")
    assert load_config(path, env={}).models_dir == tmp_path / "mine"
    assert load_config(path, env={"VOICEBOT_MODELS_DIR": "/elsewhere"}).models_dir \
        == Path("/elsewhere")


def test_a_bare_config_name_is_a_shipped_config(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = REPO / "server" / "configs" / "reference.yaml"
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_config_path(Path("reference")) == shipped
    assert paths.resolve_config_path(Path("reference.yaml")) == shipped
    assert load_config(Path("reference-30s"), env={}).stack == "reference"
    assert paths.resolve_config_path(Path("nothing")) == Path("nothing")
    (tmp_path / "reference").write_text("stack: lite\n")  # a file here wins
    assert paths.resolve_config_path(Path("reference")) == Path("reference")
