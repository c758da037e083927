"""Multinomial logistic regression on example embeddings, fitted at scenario load (numpy).

:func:`fit_softmax_regression` fits ``W`` (and a bias) minimising the mean
cross-entropy of the examples' intents plus ``l2 / 2 * |W|^2``, by Nesterov's
accelerated gradient descent with the step ``1 / L`` from the loss's Lipschitz
bound (``0.5 * |X|_2^2 / n + l2``): no learning rate to tune, a fixed number of
steps (no convergence test), each two ``[n, dim] x [dim, K]`` products.

The strength is ``l2 = l2_per_example / n`` (sklearn's ``C`` is ``1 / l2_per_example``):
more examples, less regularisation. :mod:`voicebot.nlu.classifier` multiplies the
regression's intent probabilities with the calibrated similarity ones (a product
of two experts), see its docstring; :func:`fit_product_weights` weighs the regression
against the similarity by the log-loss of held-out predictions: the regression's
from ``folds``-fold cross-validation (:func:`cross_validated_logits`), the
similarity's leave-one-out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "SoftmaxRegression",
    "cross_validated_logits",
    "fit_regression_weight",
    "fit_softmax_regression",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the regression weighs at most as much as the similarity


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftmaxRegression:
    """Weights ``[dim, K]`` and bias ``[K]``: ``logits(q) = q @ weights + bias``."""

    weights: F32
    bias: F32

    def logits(self, queries: F32) -> F32:
        """Raw intent logits ``[m, K]`` of rows ``queries`` ``[m, dim]``."""
        out: F32 = (queries @ self.weights + self.bias).astype(np.float32)
        return out


def fit_softmax_regression(rows: F32, labels: npt.NDArray[np.int64], classes: int, *,
                           l2_per_example: float = 0.1, steps: int = 300) -> SoftmaxRegression:
    """Fit on unit ``rows`` [n, dim] with intent ``labels`` in ``[0, classes)``."""
    if rows.ndim != 2 or rows.shape[0] != labels.shape[0] or rows.shape[0] == 0:
        raise ValueError("rows and labels do not match")
    if l2_per_example <= 0.0 or steps < 1 or classes < 1:
        raise ValueError("l2_per_example must be > 0, steps and classes >= 1")
    n, dim = rows.shape
    x = np.hstack([rows.astype(np.float32), np.ones((n, 1), np.float32)])
    target = np.zeros((n, classes), np.float32)
    target[np.arange(n), labels] = 1.0
    l2 = np.float32(l2_per_example / n)
    penalised = np.ones((dim + 1, 1), np.float32)
    penalised[-1] = 0.0  # the bias is not regularised
    lipschitz = 0.5 * float(np.linalg.norm(x, 2)) ** 2 / n + float(l2)
    step = np.float32(1.0 / lipschitz)
    w = np.zeros((dim + 1, classes), np.float32)
    look = w.copy()
    momentum = 1.0
    for _ in range(steps):
        z = x @ look
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        grad = x.T @ ((p - target) / np.float32(n)) + l2 * penalised * look
        w_next = look - step * grad
        momentum_next = (1.0 + (1.0 + 4.0 * momentum * momentum) ** 0.5) / 2.0
        look = w_next + np.float32((momentum - 1.0) / momentum_next) * (w_next - w)
        w, momentum = w_next, momentum_next
    return SoftmaxRegression(weights=np.ascontiguousarray(w[:-1]), bias=w[-1].copy())


def cross_validated_logits(rows: F32, labels: npt.NDArray[np.int64], classes: int, *,
                           folds: int = 3, l2_per_example: float = 0.1, steps: int = 300,
                           seed: int = 0) -> F32:
    """Logits [n, K] of every row from a regression fitted without its fold.

    Folds are stratified: each intent's examples are dealt round the folds in a
    seeded random order."""
    if folds < 2:
        raise ValueError("folds must be >= 2")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for intent in range(classes):
        members = np.flatnonzero(labels == intent)
        fold[members] = rng.permutation(len(members)) % folds
    out = np.zeros((len(labels), classes), dtype=np.float32)
    for f in range(folds):
        held = fold == f
        if not held.any() or held.all():
            continue
        model = fit_softmax_regression(rows[~held], labels[~held], classes,
                                       l2_per_example=l2_per_example, steps=steps)
        out[held] = model.logits(rows[held])
    return out


def _log_softmax(z: F64) -> F64:
    z = z - z.max(axis=1, keepdims=True)
    out: F64 = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return out


def fit_regression_weight(similarity: F64, logits: F64, labels: npt.NDArray[np.int64]) -> float:
    """The weight ``c`` (a grid from 0 to 1) of ``p(i) ~ exp(similarity_i + c * logit_i)``
    with the least log-loss of ``labels``; both inputs are held-out predictions [n, K]
    (``similarity`` already divided by its temperature; -inf for an intent left
    with no example). Rows whose own intent is -inf are skipped."""
    rows = np.arange(len(labels))
    keep = np.isfinite(similarity[rows, labels])
    if not keep.any():
        return 0.0
    sim = np.where(np.isfinite(similarity[keep]), similarity[keep], -1e9)
    lin, own = logits[keep].astype(np.float64), labels[keep]
    picked = np.arange(len(own))
    best = (np.inf, 0.0)
    for c in _WEIGHTS:
        loss = float(-_log_softmax(sim + c * lin)[picked, own].mean())
        if loss < best[0]:
            best = (loss, c)
    return best[1]
