"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ServerConfig, load_config
from server.stacks import get_stack
from voicebot.errors import ConfigError

__all__: list[str] = []


def test_defaults() -> None:
    config = load_config(env={})
    assert (config.host, config.port) == ("127.0.0.1", 8765)
    assert config.stack == "default" and config.pull_models
    assert config.engines == get_stack("default").engines  # real Whisper tiny.en + Piper joe
    assert config.engines.names() == {"vad": "silero", "asr": "whisper",
                                      "nlu": "minilm", "tts": "piper"}
    assert ServerConfig().engines == config.engines


def test_stack_from_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("stack: reference\n")
    assert load_config(path, env={}).engines == get_stack("reference").engines
    lite = load_config(path, env={"VOICEBOT_STACK": "lite"})
    assert (lite.stack, lite.engines) == ("lite", get_stack("lite").engines)
    # A stack's settings come with it; the file still overrides them.
    assert (load_config(env={}).speculative_asr_ms, lite.speculative_asr_ms) == (200, 0)
    path.write_text("stack: default\nspeculative_asr_ms: 0\n")
    assert load_config(path, env={}).speculative_asr_ms == 0
    path.write_text("stack: reference\n")
    flags = load_config(path, env={"VOICEBOT_STACK": "lite"}, overrides={"stack": "default"})
    assert flags.engines.options["asr"]["model"] == "whisper-tiny.en"
    assert load_config(env={}, overrides={"pull_models": False}).pull_models is False


def test_the_files_engines_override_pieces_of_the_stack(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("stack: default\nengines:\n  tts: espeak\n  options:\n"
                    "    asr: {encoder_window: utterance, model: ./my-whisper}\n")
    engines = load_config(path, env={}).engines
    assert engines.names() == {"vad": "silero", "asr": "whisper", "nlu": "minilm",
                               "tts": "espeak"}
    assert "tts" not in engines.options  # the stack's Piper voice is not espeak's option
    assert engines.options["asr"] == {**get_stack("default").engines.options["asr"],
                                      "encoder_window": "utterance",
                                      "model": str(tmp_path / "my-whisper")}
    # Flags choose the stack; the file's engines section still overrides pieces of it
    # (here options meant for Whisper, which pocketsphinx will refuse when it is built).
    lite = load_config(path, env={}, overrides={"stack": "lite"}).engines
    assert (lite.asr, lite.tts, lite.options["asr"]["encoder_window"]) == (
        "pocketsphinx", "espeak", "utterance")


@pytest.mark.parametrize("name", ["reference.yaml", "reference-30s.yaml"])
def test_shipped_configs_name_real_models(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "server" / "configs" / name
    config = load_config(path, env={})
    assert config.stack == "reference" and config.speculative_asr_ms == 200
    asr = config.engines.options["asr"]
    assert (asr["model"], config.engines.options["tts"]["voice"]) == ("whisper-base",
                                                                      "en_US-joe-medium")
    assert asr["encoder_window"] == ("30s" if "30s" in name else "utterance")
    assert "../" not in path.read_text()  # no path leaves the repository


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
    ("stack: huge\n", "unknown stack 'huge'; known: lite, default, reference"),
    ("stack: [lite]\n", "stack must be a name"),
    ("pull_models: maybe\n", "pull_models must be true or false"),
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


def test_commands_without_a_call_port_need_no_call_credentials(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`voicebot models` / `voicebot calls` load the server's config without reading the
    auth: section's secrets (an image build pulls models with no token set)."""
    from server.cli import main
    from server.config import without_auth

    config = tmp_path / "voicebot.yaml"
    config.write_text("host: 0.0.0.0\nauth:\n  native: {tokens_env: VB_TEST_UNSET_TOKEN}\n"
                      f"data_dir: {tmp_path / 'data'}\n")
    with pytest.raises(ConfigError, match="VB_TEST_UNSET_TOKEN"):
        load_config(config, env={})
    assert load_config(config, env=without_auth({})).host == "0.0.0.0"
    assert main(["models", "list", "--config", str(config)]) == 0
    capsys.readouterr()
    main(["calls", "list", "--config", str(config)])  # no records yet: that, not the token
    assert "no call records" in capsys.readouterr().err
