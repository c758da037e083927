"""Architecture-faithful Whisper models with random weights, for load and latency work.

:func:`build_synthetic_whisper` writes a CTranslate2 Whisper model directory that
faster-whisper loads like a converted OpenAI checkpoint: the real layer sizes
(see :data:`ARCHITECTURES`), 80 mel bins, 1500 audio and 448 text positions, the
real vocabulary size and special token ids (English-only ``.en`` layout by
default, 51864 tokens; ``multilingual=True`` gives the 51865-token layout), a
``tokenizer.json``, the ``config.json`` fields faster-whisper reads and a
``preprocessor_config.json``.  The weights are random (normal * 0.02, layer
norms at identity, sinusoidal encoder positions as in Whisper), quantized on
save (int8 by default), so its compute and memory match the real model but its
transcripts are random tokens.

Every such model says so: ``config.json`` holds ``"synthetic": true`` and the
architecture, and a ``SYNTHETIC.md`` sits next to the weights;
:func:`is_synthetic` checks.  Building is idempotent (an existing model built
with the same settings is kept) and atomic (built in a temporary sibling
directory, then renamed into place).  Only ``ctranslate2.specs`` and numpy are
used; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.errors import EngineUnavailableError, ModelBuildError
from voicebot.whisper.architecture import (
    ARCHITECTURES,
    AUDIO_POSITIONS,
    MEL_BINS,
    TEXT_POSITIONS,
    WhisperArchitecture,
    fill_random_weights,
)
from voicebot.whisper.vocabulary import build_tokenizer, non_speech_ids, token_layout

__all__ = ["ARCHITECTURES", "WhisperArchitecture", "build_synthetic_whisper", "is_synthetic"]

logger = logging.getLogger(__name__)

_BUILDER_REVISION = 1  # bump when the files written change
_PREPROCESSOR_CONFIG = {
    "chunk_length": 30,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": MEL_BINS,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "WhisperProcessor",
    "return_attention_mask": False,
    "sampling_rate": 16000,
}

_NOTICE = """# SYNTHETIC MODEL: random weights

This directory is a CTranslate2 Whisper model ({name}, {layout}, {quantization}) with
the real architecture and vocabulary size but RANDOM weights (seed {seed}), built by
`voicebot.whisper.synthetic.build_synthetic_whisper`.  Its transcripts are random
tokens.  Use it for load, latency and memory measurements only, and label every
figure taken with it as synthetic.
"""


def is_synthetic(model_dir: str | os.PathLike[str]) -> bool:
    """Whether ``model_dir`` holds a model built by :func:`build_synthetic_whisper`."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("synthetic") is True


def build_synthetic_whisper(
    name: str,
    out_dir: Path,
    *,
    seed: int = 0,
    quantization: str = "int8",
    multilingual: bool = False,
) -> Path:
    """Write the synthetic ``name`` model (``whisper-tiny|base|small``) to ``out_dir``.

    Returns ``out_dir``.  A synthetic model already there with the same settings
    is kept; a different synthetic one is replaced; anything else there is an
    error (:class:`ModelBuildError`), as is an unknown ``name``.
    """
    architecture = ARCHITECTURES.get(name)
    if architecture is None:
        raise ModelBuildError(f"unknown Whisper size {name!r}; known: {sorted(ARCHITECTURES)}")
    out_dir = Path(out_dir)
    stamp = _stamp(
        name, architecture, seed=seed, quantization=quantization, multilingual=multilingual
    )
    if _matches(out_dir, stamp):
        logger.debug("synthetic %s already built in %s", name, out_dir)
        return out_dir
    empty = out_dir.is_dir() and not any(out_dir.iterdir())
    if out_dir.exists() and not (empty or is_synthetic(out_dir)):
        raise ModelBuildError(f"{out_dir} exists and is not a synthetic Whisper model")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        staged = work / "model"
        _write_model(staged, architecture, stamp)
        _install(staged, out_dir, work, stamp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("built synthetic %s (%s) in %s", name, quantization, out_dir)
    return out_dir


def _stamp(
    name: str, arch: WhisperArchitecture, *, seed: int, quantization: str, multilingual: bool
) -> dict[str, Any]:
    """What config.json records under ``"architecture"`` (and idempotent builds compare)."""
    stamp = {
        "name": name,
        "seed": seed,
        "quantization": quantization,
        "multilingual": multilingual,
        "builder_revision": _BUILDER_REVISION,
        "d_model": arch.d_model,
        "ffn_dim": 4 * arch.d_model,
        "encoder_layers": arch.encoder_layers,
        "decoder_layers": arch.decoder_layers,
        "heads": arch.heads,
        "mel_bins": MEL_BINS,
        "audio_positions": AUDIO_POSITIONS,
        "text_positions": TEXT_POSITIONS,
        "vocabulary_size": token_layout(multilingual=multilingual).vocabulary_size,
    }
    result: dict[str, Any] = json.loads(json.dumps(stamp))  # as config.json will hold it
    return result


def _matches(model_dir: Path, stamp: dict[str, Any]) -> bool:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    complete = all(
        (model_dir / f).is_file() for f in ("model.bin", "tokenizer.json", "SYNTHETIC.md")
    )
    return complete and config.get("synthetic") is True and config.get("architecture") == stamp


def _install(staged: Path, out_dir: Path, work: Path, stamp: dict[str, Any]) -> None:
    """Rename ``staged`` to ``out_dir``, moving a stale synthetic model out of the way."""
    if out_dir.exists():
        out_dir.rename(work / "stale")
    try:
        staged.rename(out_dir)
    except OSError as exc:  # another builder won the race
        if _matches(out_dir, stamp):
            return
        raise ModelBuildError(f"cannot install the synthetic model in {out_dir}: {exc}") from exc


def _write_model(staged: Path, arch: WhisperArchitecture, stamp: dict[str, Any]) -> None:
    try:
        from ctranslate2.converters import Converter
        from ctranslate2.specs import whisper_spec
    except ImportError as exc:
        raise EngineUnavailableError("ctranslate2 is not installed") from exc

    multilingual = bool(stamp["multilingual"])
    layout = token_layout(multilingual=multilingual)
    tokenizer = build_tokenizer(multilingual=multilingual)
    tokens = [tokenizer.id_to_token(i) for i in range(layout.vocabulary_size)]
    spec = whisper_spec.WhisperSpec(
        arch.encoder_layers, arch.heads, arch.decoder_layers, arch.heads
    )
    fill_random_weights(spec, arch, layout.vocabulary_size, np.random.default_rng(stamp["seed"]))
    spec.register_vocabulary(tokens)
    heads = arch.alignment_heads_multilingual if multilingual else arch.alignment_heads_en
    config = spec.config
    config.suppress_ids = non_speech_ids(tokenizer)
    config.suppress_ids_begin = [tokenizer.token_to_id("Ġ"), layout.eot]
    config.lang_ids = layout.language_ids
    config.alignment_heads = [list(h) for h in heads]
    config.add_attribute("synthetic", True)
    config.add_attribute("architecture", stamp)

    class _SyntheticConverter(Converter):  # type: ignore[misc]
        def _load(self) -> Any:
            return spec

    try:
        _SyntheticConverter().convert(str(staged), quantization=stamp["quantization"])
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise ModelBuildError(f"cannot write the synthetic {stamp['name']}: {exc}") from exc
    tokenizer.save(str(staged / "tokenizer.json"))
    (staged / "preprocessor_config.json").write_text(
        json.dumps(_PREPROCESSOR_CONFIG, indent=2) + "\n", encoding="utf-8"
    )
    (staged / "SYNTHETIC.md").write_text(
        _NOTICE.format(
            name=stamp["name"],
            layout="multilingual" if multilingual else "English-only",
            quantization=stamp["quantization"],
            seed=stamp["seed"],
        ),
        encoding="utf-8",
    )
