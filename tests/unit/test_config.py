"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ServerConfig, load_config
from voicebot.errors import ConfigError

__all__: list[str] = []


def test_defaults() -> None:
    config = load_config(env={})
    assert (config.host, config.port) == ("127.0.0.1", 8765)
    assert config.engines.names() == {"vad": "silero", "asr": "pocketsphinx",
                                      "nlu": "minilm", "tts": "espeak"}


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("port: 9000\nhost: 0.0.0.0\nscenarios_dir: mine\n"
                    "engines:\n  tts: fake\n  options:\n    tts: {ms_per_char: 5}\n")
    config = load_config(path, env={})
    assert (config.host, config.port, config.engines.tts) == ("0.0.0.0", 9000, "fake")
    assert config.scenarios_dir == tmp_path / "mine"  # relative to the file
    assert load_config(path, env={"VOICEBOT_PORT": "9100"}).port == 9100
    assert load_config(path, env={"VOICEBOT_PORT": "9100"}, overrides={"port": 9200}).port == 9200


@pytest.mark.parametrize(("text", "message"), [
    ("bogus: 1\n", "unknown configuration key 'bogus'"),
    ("port: 70000\n", "out of range"),
    ("port: many\n", "whole number"),
    ("engines:\n  asr: nope\n", "unknown asr engine 'nope'"),
    ("engines:\n  colour: red\n", "bad 'engines' section"),
    ("- a list\n", "must be a mapping"),
    ("no_audio_timeout_s: 0\n", "must be positive"),
    ("tls_cert_file: c.pem\n", "go together"),
    ("admin_port: 99999\n", "out of range"),
    ("auth: maybe\n", "auth must be a mapping or the word none"),
])
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_bad_env() -> None:
    with pytest.raises(ConfigError, match="whole number"):
        load_config(env={"VOICEBOT_PORT": "eighty"})
    assert ServerConfig().max_message_bytes == 65536


DOCKER_CONFIG = Path(__file__).resolve().parents[2] / "docker" / "voicebot.yaml"


def test_docker_config_needs_a_token_or_auth_none() -> None:
    with pytest.raises(ConfigError, match="VOICEBOT_NATIVE_TOKEN"):
        load_config(DOCKER_CONFIG, env={})
    secret = "a-native-token-0123456789"
    config = load_config(DOCKER_CONFIG, env={"VOICEBOT_NATIVE_TOKEN": secret})
    assert config.host == "0.0.0.0" and config.auth.endpoint("native").configured
    assert secret not in repr(config)
    assert load_config(DOCKER_CONFIG, env={"VOICEBOT_AUTH": "none"}).auth.disabled
    with pytest.raises(ConfigError, match="VOICEBOT_AUTH can only be 'none'"):
        load_config(env={"VOICEBOT_AUTH": "tokens"})


def test_limits_and_admin_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("no_audio_timeout_s: 4\nfirst_message_timeout_s: 2.5\n"
                    "max_audio_ahead_ms: 500\nadmin_port: 9101\njob_timeout_s: 3\n"
                    "tls_cert_file: c.pem\ntls_key_file: k.pem\n")
    config = load_config(path, env={"VOICEBOT_ADMIN_PORT": "9102"})
    assert (config.no_audio_timeout_s, config.first_message_timeout_s) == (4.0, 2.5)
    assert (config.max_audio_ahead_ms, config.job_timeout_s) == (500.0, 3.0)
    assert config.admin_port == 9102  # env over file
    assert config.tls_cert_file == tmp_path / "c.pem"
