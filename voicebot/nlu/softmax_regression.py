"""Multinomial logistic regression on example features, fitted at scenario load (numpy).

:func:`fit_softmax_regression` fits ``W`` (and a bias) minimising the mean
cross-entropy of the examples' intents plus ``l2 / 2 * |W|^2`` by L-BFGS
(:func:`_lbfgs`: two-loop recursion, a memory of 6 steps, Armijo backtracking),
each evaluation two ``[n, dim] x [dim, K]`` products; it stops when an iteration
lowers the objective by less than ``1e-5`` relative (about 40 iterations on a
77-intent, 770-example scenario, where 300 steps of accelerated gradient descent
were still 1 % above the optimum).  Written here rather than called from SciPy:
``scipy.optimize``'s L-BFGS-B spends 5 ms per iteration on its own bookkeeping for
a word regression's 360,000 float64 weights, more than the products themselves;
this one works in float32 on the weight matrix in place.

The strength is ``l2 = l2_per_example / n`` (sklearn's ``C`` is ``1 / l2_per_example``):
more examples, less regularisation.  The rows are dense unit embeddings or the
sparse word features of :mod:`voicebot.nlu.lexical`.  :mod:`voicebot.nlu.classifier`
adds the regressions' logits to the calibrated similarity (a product of experts,
see its docstring) and fits the sum's temperature with :func:`fit_temperature` on
held-out predictions: the regressions' from ``folds``-fold cross-validation
(:func:`cross_validated_logits`), the similarity's leave-one-out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicebot.nlu.lexical import SparseRows

__all__ = [
    "SoftmaxRegression",
    "cross_validated_logits",
    "fit_softmax_regression",
    "fit_temperature",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftmaxRegression:
    """``stacked`` ``[dim + 1, K]``: the weights with the bias as their last row, so
    ``logits(q) = q @ weights + bias`` (sparse rows carry the bias column themselves)."""

    stacked: F32

    @property
    def weights(self) -> F32:
        """``[dim, K]``."""
        return self.stacked[:-1]

    @property
    def bias(self) -> F32:
        """``[K]``."""
        bias: F32 = self.stacked[-1]
        return bias

    def logits(self, queries: F32 | SparseRows) -> F32:
        """Raw intent logits ``[m, K]`` of rows ``queries`` ``[m, dim]`` (dense), or of
        sparse rows ``[m, dim + 1]`` whose last column is the bias."""
        if isinstance(queries, SparseRows):
            return queries @ self.stacked
        out: F32 = (queries @ self.weights + self.bias).astype(np.float32)
        return out


def fit_softmax_regression(rows: F32 | SparseRows, labels: npt.NDArray[np.int64],
                           classes: int, *, l2_per_example: float = 0.1,
                           max_iterations: int = 200) -> SoftmaxRegression:
    """Fit on ``rows`` [n, dim] with intent ``labels`` in ``[0, classes)``: dense unit
    rows, or :class:`~voicebot.nlu.lexical.SparseRows` whose last column is the bias."""
    n = rows.shape[0]
    if n != labels.shape[0] or n == 0 or len(rows.shape) != 2:
        raise ValueError("rows and labels do not match")
    if l2_per_example <= 0.0 or max_iterations < 1 or classes < 1:
        raise ValueError("l2_per_example must be > 0, max_iterations and classes >= 1")
    x: F32 | SparseRows = (rows if isinstance(rows, SparseRows) else
                           np.hstack([rows.astype(np.float32), np.ones((n, 1), np.float32)]))
    width = x.shape[1]
    picked = np.arange(n)
    l2 = np.float32(l2_per_example / n)
    penalised = np.ones((width, 1), np.float32)
    penalised[-1] = 0.0  # the bias is not regularised

    def objective(w: F32) -> tuple[float, F32]:
        z = x @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        total = p.sum(axis=1, keepdims=True)
        loss = float(np.log(total[:, 0]).mean() - z[picked, labels].mean())
        p /= total
        p[picked, labels] -= 1.0
        p /= np.float32(n)
        grad = x.transpose_matmul(p) if isinstance(x, SparseRows) else x.T @ p
        shrunk = penalised * w
        grad += l2 * shrunk
        return loss + 0.5 * float(l2) * float(np.vdot(shrunk, shrunk)), grad

    w = _lbfgs(objective, np.zeros((width, classes), np.float32),
               max_iterations=max_iterations)
    return SoftmaxRegression(stacked=w)


def _lbfgs(objective: Callable[[F32], tuple[float, F32]], w: F32, *, max_iterations: int,
           memory: int = 6, tolerance: float = 1e-5) -> F32:
    """Minimise the smooth convex ``objective`` (value, gradient) from ``w``."""
    value, grad = objective(w)
    steps: list[tuple[F32, F32, float]] = []  # (s, y, 1 / s.y), oldest first
    for _ in range(max_iterations):
        direction = -grad
        ratios = []
        for s, y, rho in reversed(steps):
            ratio = rho * float(np.vdot(s, direction))
            ratios.append(ratio)
            direction -= np.float32(ratio) * y
        if steps:
            s, y, _ = steps[-1]
            direction *= np.float32(np.vdot(s, y) / np.vdot(y, y))
        else:  # the first step: at most 1 in any weight
            direction /= np.float32(max(float(np.abs(grad).max()), 1e-12))
        for (s, y, rho), ratio in zip(steps, reversed(ratios), strict=True):
            direction += np.float32(ratio - rho * float(np.vdot(y, direction))) * s
        slope = float(np.vdot(grad, direction))
        if slope >= 0.0:  # not a descent direction: restart from the gradient
            steps.clear()
            direction, slope = -grad, -float(np.vdot(grad, grad))
        t = 1.0
        while True:
            trial = w + np.float32(t) * direction
            trial_value, trial_grad = objective(trial)
            if trial_value <= value + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        s, y = trial - w, trial_grad - grad
        curvature = float(np.vdot(s, y))
        if curvature > 1e-12:
            steps.append((s, y, 1.0 / curvature))
            del steps[:-memory]
        done = value - trial_value <= tolerance * max(1.0, abs(trial_value))
        w, value, grad = trial, trial_value, trial_grad
        if done:
            break
    return w


def cross_validated_logits(rows: F32 | SparseRows, labels: npt.NDArray[np.int64],
                           classes: int, *, folds: int = 3, l2_per_example: float = 0.1,
                           max_iterations: int = 200, seed: int = 0) -> F32:
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
        train, test = np.flatnonzero(~held), np.flatnonzero(held)
        model = fit_softmax_regression(_take(rows, train), labels[train], classes,
                                       l2_per_example=l2_per_example,
                                       max_iterations=max_iterations)
        out[test] = model.logits(_take(rows, test))
    return out


def _take(rows: F32 | SparseRows, which: npt.NDArray[np.int64]) -> F32 | SparseRows:
    return rows.take(which) if isinstance(rows, SparseRows) else rows[which]


def _log_softmax(z: F64) -> F64:
    z = z - z.max(axis=1, keepdims=True)
    out: F64 = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return out


def fit_temperature(held_out: F64, labels: npt.NDArray[np.int64], *,
                    outside_weight: float = 0.0) -> float:
    """The temperature ``t`` of ``p(i) ~ exp(z_i / t)`` with the least log-loss of
    ``labels`` over held-out logits ``held_out`` [n, K] (a log grid, 1 to 20, then a
    finer one round the best: never sharper than the raw logits).

    ``outside_weight`` > 0 adds, with that weight, each row scored with its own intent
    taken out -- a simulated utterance about something the scenario does not have --
    whose answer is "none of the rest in particular" (the cross-entropy to a uniform
    distribution over them): a scenario whose held-out answers are all right does
    not get a temperature that makes every answer, in scope or not, certain.
    Rows whose own logit is not finite are skipped."""
    rows = np.arange(len(labels))
    keep = np.isfinite(held_out[rows, labels])
    if not keep.any():
        return 1.0
    z = np.where(np.isfinite(held_out[keep]), held_out[keep], -1e9)
    own = labels[keep]
    picked = np.arange(len(own))
    others = z.copy()
    others[picked, own] = -np.inf
    rest = np.isfinite(others).sum(axis=1)
    use_rest = outside_weight > 0.0 and bool((rest > 1).any())
    best = (np.inf, 1.0)
    lo, hi = 0.0, np.log(20.0)
    for _ in range(2):
        for log_t in np.linspace(lo, hi, 31):
            t = float(np.exp(log_t))
            loss = float(-_log_softmax(z / t)[picked, own].mean())
            if use_rest:
                logp = _log_softmax(others[rest > 1] / t)
                finite = np.isfinite(logp)
                uniform = -np.where(finite, logp, 0.0).sum(axis=1) / finite.sum(axis=1)
                loss += outside_weight * float(uniform.mean())
            if loss < best[0]:
                best = (loss, t)
        step = (hi - lo) / 30
        lo, hi = max(0.0, np.log(best[1]) - step), np.log(best[1]) + step
    return best[1]
