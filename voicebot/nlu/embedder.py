"""MiniLM-L6 sentence embeddings with onnxruntime: tokenize, run, done.

The ONNX graph (:mod:`voicebot.nlu.onnx_graph`, fused at build time into
onnxruntime's ``Attention`` / ``SkipLayerNormalization`` / ``BiasGelu`` CPU ops)
already mean-pools and L2-normalizes, so the only Python work per call is
tokenizing.  The session is
configured for a server that schedules its own threads: ``threads`` intra-op
threads (1 by default), one inter-op thread, sequential execution and no
spinning (idle pool threads sleep instead of burning a core).  Texts are
tokenized one by one (``encode_batch`` would start the tokenizers' own rayon
thread pool) and padded here to the longest text of the batch.

One :class:`MiniLmEmbedder` is shared by every call: ``embed`` is thread-safe
(onnxruntime's ``run`` and the Rust tokenizer both are).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineError, EngineUnavailableError
from voicebot.ort_session import open_session

__all__ = ["MAX_TOKENS", "MiniLmEmbedder"]

_log = logging.getLogger(__name__)

MAX_TOKENS = 128
"""Texts are truncated to this many tokens ([CLS] and [SEP] included)."""


class MiniLmEmbedder:
    """Sentence embeddings (float32, L2-normalized, 384-d) from an ONNX MiniLM."""

    def __init__(self, *, model_path: Path, tokenizer_path: Path, threads: int = 1,
                 memory_arena: bool = False) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EngineUnavailableError("tokenizers is not installed") from exc
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()  # padded here, to the longest text of a batch
        except Exception as exc:  # tokenizers raises its own types
            raise EngineError(f"cannot load the MiniLM embedder {model_path}: {exc}") from exc
        session = open_session(Path(model_path), threads=threads, what="MiniLM embedder",
                               memory_arena=memory_arena)
        self._tokenizer = tokenizer
        self._session = session
        self._model_path = Path(model_path)
        shape = session.get_outputs()[0].shape
        self._dim = int(shape[-1]) if isinstance(shape[-1], int) else 384
        _log.info("loaded MiniLM embedder %s (threads=%d)", model_path, threads)

    @classmethod
    def from_cache(
        cls,
        cache_dir: Path,
        *,
        quantized: bool = True,
        threads: int = 1,
        model_dir: Path | None = None,
    ) -> MiniLmEmbedder:
        """Build the models into ``cache_dir`` if needed, then load the int8 or fp32 one."""
        from voicebot.nlu.model_cache import build_models

        paths = build_models(cache_dir, model_dir=model_dir)
        model = paths.int8_model if quantized else paths.fp32_model
        return cls(model_path=model, tokenizer_path=paths.tokenizer, threads=threads)

    @property
    def dimension(self) -> int:
        """Width of one embedding (384 for MiniLM-L6)."""
        return self._dim

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def cache_key(self) -> str:
        """Names the model's content (its cache folder is keyed by the weights' hash)."""
        return f"{self._model_path.parent.name}/{self._model_path.name}"

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embeddings of ``texts``: float32 ``[len(texts), 384]``, rows of unit norm."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        try:
            # encode() one by one: encode_batch() would start a rayon thread pool.
            encodings = [self._tokenizer.encode(text) for text in texts]
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(encodings), width), dtype=np.int64)  # [PAD] is id 0
            mask = np.zeros((len(encodings), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            (out,) = self._session.run(
                ["sentence_embedding"], {"input_ids": ids, "attention_mask": mask}
            )
        except Exception as exc:  # onnxruntime / tokenizers errors
            raise EngineError(f"MiniLM embedding failed: {exc}") from exc
        return np.asarray(out, dtype=np.float32)
