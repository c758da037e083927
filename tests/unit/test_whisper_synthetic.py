"""Tests of the synthetic (random-weight) Whisper builder and its token layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tokenizers

from voicebot.errors import ModelBuildError
from voicebot.whisper import ARCHITECTURES, build_synthetic_whisper, is_synthetic
from voicebot.whisper.vocabulary import LANGUAGES, build_tokenizer, token_layout

__all__: list[str] = []

# Whisper's real special token ids (English-only / multilingual vocabularies).
EN_IDS = {
    "<|endoftext|>": 50256,
    "<|startoftranscript|>": 50257,
    "<|en|>": 50258,
    "<|su|>": 50356,
    "<|translate|>": 50357,
    "<|transcribe|>": 50358,
    "<|startoflm|>": 50359,
    "<|startofprev|>": 50360,
    "<|nocaptions|>": 50361,
    "<|notimestamps|>": 50362,
    "<|0.00|>": 50363,
    "<|30.00|>": 51863,
}
MULTILINGUAL_IDS = {token: i + 1 for token, i in EN_IDS.items()}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic whisper-tiny (English-only, int8), shared with the whisper unit tests."""
    return build_synthetic_whisper(
        "whisper-tiny", tmp_path_factory.getbasetemp() / "synthetic-whisper" / "whisper-tiny"
    )


def _noise(seconds: float) -> np.typing.NDArray[np.float32]:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


def test_faster_whisper_loads_and_transcribes_it(tiny_dir: Path) -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(tiny_dir), device="cpu", compute_type="int8", cpu_threads=1)
    assert not model.model.is_multilingual
    assert model.model.n_mels == 80
    layout = token_layout(multilingual=False)
    segments, info = model.transcribe(
        _noise(3.0),
        language="en",
        beam_size=1,
        temperature=0.0,
        without_timestamps=True,
        condition_on_previous_text=False,
        no_speech_threshold=None,
        max_new_tokens=9,
        suppress_tokens=[-1, *range(layout.eot, layout.vocabulary_size)],  # random weights
    )
    listed = list(segments)
    assert info.language == "en"
    assert info.duration == pytest.approx(3.0)
    assert listed
    tokens = [t for s in listed for t in s.tokens]
    assert tokens and all(t < layout.eot for t in tokens)
    assert "".join(s.text for s in listed).strip()


def test_vocabulary_size_and_special_ids(tiny_dir: Path) -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 51864
    for token, token_id in EN_IDS.items():
        assert tokenizer.token_to_id(token) == token_id, token
    assert tokenizer.token_to_id("Ġ") == 220  # a space, as in GPT-2 / Whisper
    vocabulary = json.loads((tiny_dir / "vocabulary.json").read_text(encoding="utf-8"))
    assert len(vocabulary) == 51864
    assert vocabulary[50256] == "<|endoftext|>"
    assert vocabulary[50362] == "<|notimestamps|>"
    ids = tokenizer.encode(" hello there", add_special_tokens=False).ids
    assert tokenizer.decode(ids) == " hello there"
    assert all(i < 50256 for i in ids)


def test_config_has_what_faster_whisper_reads(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text(encoding="utf-8"))
    assert config["suppress_ids_begin"] == [220, 50256]
    assert config["suppress_ids"] and all(i < 50256 for i in config["suppress_ids"])
    assert config["lang_ids"] == list(range(50258, 50258 + 99))
    assert [1, 0] in config["alignment_heads"]
    preprocessor = json.loads((tiny_dir / "preprocessor_config.json").read_text("utf-8"))
    assert preprocessor["feature_size"] == 80
    assert preprocessor["sampling_rate"] == 16000


def test_marked_synthetic(tiny_dir: Path, tmp_path: Path) -> None:
    assert is_synthetic(tiny_dir)
    config = json.loads((tiny_dir / "config.json").read_text(encoding="utf-8"))
    assert config["synthetic"] is True
    arch = config["architecture"]
    assert (arch["d_model"], arch["encoder_layers"], arch["decoder_layers"], arch["heads"]) == (
        384,
        4,
        4,
        6,
    )
    assert arch["vocabulary_size"] == 51864
    assert "RANDOM weights" in (tiny_dir / "SYNTHETIC.md").read_text(encoding="utf-8")
    assert not is_synthetic(tmp_path)
    assert not is_synthetic(tmp_path / "missing")


def test_size_is_that_of_int8_tiny(tiny_dir: Path) -> None:
    # ~37.8 M parameters (output projection tied to the embeddings) in int8.
    assert 35e6 < (tiny_dir / "model.bin").stat().st_size < 45e6


def test_rebuild_is_idempotent_and_atomic(tiny_dir: Path) -> None:
    before = (tiny_dir / "model.bin").stat().st_mtime_ns
    assert build_synthetic_whisper("whisper-tiny", tiny_dir) == tiny_dir
    assert (tiny_dir / "model.bin").stat().st_mtime_ns == before
    leftovers = [p.name for p in tiny_dir.parent.iterdir() if ".build-" in p.name]
    assert leftovers == []


def test_other_settings_replace_a_synthetic_model(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    build_synthetic_whisper("whisper-tiny", out, seed=1)
    first = (out / "model.bin").read_bytes()
    build_synthetic_whisper("whisper-tiny", out, seed=2)
    assert (out / "model.bin").read_bytes() != first
    assert json.loads((out / "config.json").read_text("utf-8"))["architecture"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_refuses_to_overwrite_other_files(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"real weights")
    with pytest.raises(ModelBuildError, match="not a synthetic"):
        build_synthetic_whisper("whisper-tiny", tmp_path)
    with pytest.raises(ModelBuildError, match="unknown"):
        build_synthetic_whisper("whisper-huge", tmp_path / "x")


def test_multilingual_layout_loads(tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    out = build_synthetic_whisper("whisper-tiny", tmp_path / "tiny", multilingual=True)
    tokenizer = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 51865
    for token, token_id in MULTILINGUAL_IDS.items():
        assert tokenizer.token_to_id(token) == token_id, token
    model = WhisperModel(str(out), device="cpu", compute_type="int8", cpu_threads=1)
    assert model.model.is_multilingual


def test_token_layouts() -> None:
    assert len(LANGUAGES) == 99
    en, multi = token_layout(multilingual=False), token_layout(multilingual=True)
    assert (en.eot, en.no_timestamps, en.vocabulary_size) == (50256, 50362, 51864)
    assert (multi.eot, multi.no_timestamps, multi.vocabulary_size) == (50257, 50363, 51865)
    assert build_tokenizer(multilingual=True).get_vocab_size() == 51865


def test_real_architectures() -> None:
    sizes = {n: (a.d_model, a.encoder_layers, a.decoder_layers, a.heads) for n, a in
             ARCHITECTURES.items()}  # fmt: skip
    assert sizes == {
        "whisper-tiny": (384, 4, 4, 6),
        "whisper-base": (512, 6, 6, 8),
        "whisper-small": (768, 12, 12, 12),
    }
