"""Embedding example phrases at scenario load: length-sorted chunks and an on-disk cache.

:func:`embed_examples` embeds texts in chunks of ``chunk_size`` sorted by length,
so each chunk pads to about its own length and the ONNX Runtime working memory is
bounded by one chunk, whatever the scenario's size (one padded batch of 770
examples lifted a worker from 133 MB to 1.7 GB).

:class:`EmbeddingCache` keeps example embeddings in one SQLite file keyed by
``sha256(model key, text)``, so a restarted worker (or the next of a server's
cells) does not embed the same examples again.  SQLite does the locking between
the cells that load at the same time; a failing cache is logged and skipped, never
an error of the scenario load.  The model key names the model's content (the
MiniLM cache folder is keyed by a hash of the weights and the graph version).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["EmbeddingCache", "embed_examples"]

_log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
_BUSY_TIMEOUT_S = 30.0
_MAX_VARS = 500  # keys per SELECT (SQLite's variable limit is 999 on old builds)


class EmbeddingCache:
    """Example embeddings on disk, keyed by model and text."""

    def __init__(self, path: Path, *, model_key: str) -> None:
        self._path = Path(path)
        self._model_key = model_key

    @property
    def path(self) -> Path:
        return self._path

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self._model_key}\0{text}".encode()).digest()

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT_S)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS embedding "
                   "(key BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID")
        return db

    def get(self, texts: Sequence[str], *, dim: int) -> dict[str, F32]:
        """The cached embeddings of those ``texts`` that are cached (width ``dim``)."""
        keys = {self._key(t): t for t in texts}
        found: dict[str, F32] = {}
        try:
            db = self._connect()
            try:
                items = list(keys)
                for start in range(0, len(items), _MAX_VARS):
                    part = items[start: start + _MAX_VARS]
                    marks = ",".join("?" * len(part))
                    for key, blob in db.execute(
                            f"SELECT key, vector FROM embedding WHERE key IN ({marks})", part):
                        vector = np.frombuffer(blob, dtype=np.float32)
                        if vector.shape == (dim,):
                            found[keys[key]] = vector
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            _log.warning("embedding cache %s unreadable, embedding anew: %s", self._path, exc)
            return {}
        return found

    def put(self, vectors: dict[str, F32]) -> None:
        """Store ``vectors`` (text -> float32 row); errors are logged, not raised."""
        if not vectors:
            return
        rows = [(self._key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes())
                for t, v in vectors.items()]
        try:
            db = self._connect()
            try:
                with db:
                    db.executemany("INSERT OR REPLACE INTO embedding VALUES (?, ?)", rows)
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            _log.warning("embedding cache %s not written: %s", self._path, exc)


def embed_examples(texts: Sequence[str], embed: Callable[[Sequence[str]], F32], *,
                   dim: int | None = None, chunk_size: int = 32,
                   cache: EmbeddingCache | None = None) -> tuple[F32, int]:
    """Rows [len(texts), dim] for ``texts`` (unit rows from ``embed``) and how many
    were embedded now (the rest came from ``cache``).

    Texts missing from the cache are embedded in chunks of ``chunk_size``, shortest
    first; duplicates are embedded once.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    unique = list(dict.fromkeys(texts))
    known: dict[str, F32] = {}
    if cache is not None and dim is not None:
        known = cache.get(unique, dim=dim)
    missing = sorted((t for t in unique if t not in known), key=len)
    fresh: dict[str, F32] = {}
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start: start + chunk_size]
        vectors = embed(chunk)
        for text, vector in zip(chunk, vectors, strict=True):
            fresh[text] = np.array(vector, dtype=np.float32)
    if cache is not None:
        cache.put(fresh)
    known.update(fresh)
    if not texts:
        return np.zeros((0, dim or 0), dtype=np.float32), 0
    out: F32 = np.stack([known[t] for t in texts]).astype(np.float32)
    return out, len(fresh)
