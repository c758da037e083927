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
