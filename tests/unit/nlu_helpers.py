"""Shared data of the NLU calibration and regression tests: unit-vector intent clusters."""

from __future__ import annotations

import numpy as np

__all__ = ["clusters"]


def clusters(k: int, n: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` intents of ``n`` unit rows each round random centres (``spread``: the noise),
    and their int64 labels, intent by intent."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    rows = np.repeat(centres, n, axis=0) + spread * rng.normal(size=(k * n, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32), np.repeat(np.arange(k), n).astype(np.int64)
