"""``voicebot token mint`` and ``voicebot token new-secret`` (server/auth_cli.py)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from server import auth_cli
from server.auth import parse_auth_config
from server.auth_schemes import Secret, SigningKey, verify_token
from tests.unit.auth_helpers import KEY_1, NOW
from voicebot.errors import ConfigError

__all__: list[str] = []


def _cli(*argv: str, env: dict[str, str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    auth_cli.register(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    assert auth_cli.run(parser.parse_args(list(argv)), env=env or {}, now_s=NOW,
                        stdout=out) == 0
    return out.getvalue().strip()


def test_cli_mint_from_env_and_file(tmp_path: Path) -> None:
    keys = [SigningKey("k1", Secret(KEY_1))]
    token = _cli("token", "mint", "--key-id", "k1", "--path", "/native/", "--ttl-s", "60",
                 env={"VOICEBOT_TOKEN_KEY": KEY_1})
    assert verify_token(token, keys, "/native", now_s=NOW + 60) is None
    assert verify_token(token, keys, "/native", now_s=NOW + 61) == "token expired"
    (tmp_path / "key").write_text(KEY_1 + "\n")
    url = _cli("token", "mint", "--key-id", "k1", "--path", "/jambonz", "--key-file",
               str(tmp_path / "key"), "--url", "wss://bot.example.com/")
    assert url.startswith("wss://bot.example.com/jambonz?token=k1.")
    assert KEY_1 not in url


@pytest.mark.parametrize("argv, env, match", [
    (["--path", "/native"], {}, "VOICEBOT_TOKEN_KEY is not set"),
    (["--path", "/native", "--key-env", "K"], {"K": "short"}, "shorter than"),
    (["--path", "/nowhere"], {"VOICEBOT_TOKEN_KEY": KEY_1}, "not a call endpoint"),
    (["--path", "/native", "--ttl-s", "0"], {"VOICEBOT_TOKEN_KEY": KEY_1}, "positive"),
    (["--path", "/native", "--key-file", "/nonexistent/key"], {}, "cannot read key file"),
])
def test_cli_mint_errors(argv: list[str], env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _cli("token", "mint", "--key-id", "k1", *argv, env=env)


def test_cli_new_secret() -> None:
    first, second = _cli("token", "new-secret"), _cli("token", "new-secret", "--bytes", "48")
    assert len(first) == 43 and len(second) == 64 and first != second
    parse_auth_config({"native": {"tokens": first}}, env={}, base_dir=Path())
