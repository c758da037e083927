"""Intent scores and their calibration, vectorised with numpy (pure: no I/O, no model).

Scores
------
Rows are unit vectors, so dot products are cosines.  Intent ``i`` with example
rows ``E_i`` and normalised centroid ``c_i`` scores a text ``q``::

    s_i = w * mean(top-k cosines of q to E_i) + (1 - w) * cos(q, c_i)

:class:`IntentIndex` holds every example in one matrix, so one ``[m, n]`` matrix
product scores ``m`` texts against all ``n`` examples; a padded ``[K, k_max]``
gather and ``np.partition`` take each intent's top k.

Calibration
-----------
The confidence is a probability across the intents *and* "none of them"::

    p_i   = exp(s_i / T) / (sum_j exp(s_j / T) + exp(b / T))
    p_oos = exp(b / T)   / (same)

``T`` (temperature) and ``b`` (the background score: what a text about nothing
the scenario handles scores) are fitted at load by :func:`fit_calibration` from
the scenario's own examples, by minimising the log-loss of:

* every example scored by **leave-one-out** (its own row left out of its intent's
  top-k and centroid) -- the answer is its intent;
* every example scored with **its whole intent left out** -- a simulated
  out-of-scope utterance (a caller asking for something near, but not in, the
  scenario), the answer is "none";
* the scenario's own ``out_of_scope`` examples, if any -- the answer is "none".

The out-of-scope terms are weighted so that together they count ``oos_prior /
(1 - oos_prior)`` times the in-scope ones: ``oos_prior`` is the share of turns
expected to be out of scope, the one assumption (default 0.1), not a constant
tuned on a scenario.  Because ``b`` competes in the same softmax, a text close to
no intent, or close to two at once, gets a low top probability: the top-two
margin is part of the probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Calibration",
    "IntentIndex",
    "fit_calibration",
    "probabilities",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_NEG = np.float32(-np.inf)
_MAX_FIT_SAMPLES = 3000  # examples used for fitting T and b (a fixed, seeded subsample)
_CHUNK_ROWS = 256  # leave-one-out rows scored at once: bounds the [rows, n] matrix


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """The fitted map from intent scores to probabilities."""

    temperature: float
    background: float
    fitted_on: int = 0
    """How many examples the fit used (0: not fitted, the defaults)."""

    def __post_init__(self) -> None:
        if not self.temperature > 0.0:
            raise ValueError("temperature must be > 0")


class IntentIndex:
    """A domain's examples as one matrix, grouped by intent, ready to score."""

    def __init__(self, names: tuple[str, ...], rows: F32, labels: npt.NDArray[np.int64],
                 *, top_k: int, top_k_weight: float) -> None:
        if rows.ndim != 2 or rows.shape[0] != labels.shape[0] or not names:
            raise ValueError("rows and labels do not match")
        order = np.argsort(labels, kind="stable")
        self.order: npt.NDArray[np.int64] = order.astype(np.int64)
        """Row ``j`` of the index is row ``order[j]`` of the rows given."""
        self.names = names
        self.rows: F32 = np.ascontiguousarray(rows[order], dtype=np.float32)
        self.labels = labels[order]
        self.top_k = top_k
        self.weight = float(top_k_weight)
        k = len(names)
        self.counts = np.bincount(self.labels, minlength=k).astype(np.int64)
        if (self.counts == 0).any():
            raise ValueError("every intent needs an example")
        self.sums: F32 = np.zeros((k, rows.shape[1]), dtype=np.float32)
        np.add.at(self.sums, self.labels, self.rows)
        norms = np.linalg.norm(self.sums, axis=1, keepdims=True)
        self.centroids: F32 = (self.sums / np.maximum(norms, 1e-12)).astype(np.float32)
        width = int(self.counts.max())
        starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        pad = self.rows.shape[0]  # index of a -inf column appended at scoring time
        self.gather = np.full((k, width), pad, dtype=np.int64)
        for i in range(k):
            self.gather[i, : self.counts[i]] = np.arange(starts[i], starts[i] + self.counts[i])

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def _topk_mean(self, sims: F32) -> F32:
        """``sims`` [m, n] (with -inf for rows left out) -> [m, K] mean of each top k."""
        padded = np.concatenate([sims, np.full((sims.shape[0], 1), _NEG, np.float32)], axis=1)
        grouped = padded[:, self.gather]  # [m, K, width]
        k = min(self.top_k, grouped.shape[2])
        if k < grouped.shape[2]:
            grouped = -np.partition(-grouped, k - 1, axis=2)[:, :, :k]
        finite = np.isfinite(grouped)
        total = np.where(finite, grouped, 0.0).sum(axis=2)
        count = finite.sum(axis=2)
        mean: F32 = (total / np.maximum(count, 1)).astype(np.float32)
        return np.where(count > 0, mean, _NEG).astype(np.float32)

    def score(self, queries: F32) -> F32:
        """Scores [m, K] of unit rows ``queries`` [m, dim] against every intent."""
        sims = queries @ self.rows.T
        centroid = queries @ self.centroids.T
        out: F32 = (self.weight * self._topk_mean(sims)
                    + (1.0 - self.weight) * centroid).astype(np.float32)
        return out

    def leave_one_out(self, indices: npt.NDArray[np.int64]) -> F32:
        """Scores [len(indices), K] of the index's own rows, each left out of its intent.

        An intent left with no example scores -inf for that row."""
        out = np.empty((len(indices), len(self.names)), dtype=np.float32)
        for start in range(0, len(indices), _CHUNK_ROWS):
            idx = indices[start: start + _CHUNK_ROWS]
            queries = self.rows[idx]
            sims = queries @ self.rows.T
            sims[np.arange(len(idx)), idx] = _NEG
            centroid = queries @ self.centroids.T
            own = self.labels[idx]
            u = self.sums[own]
            dot = np.einsum("ij,ij->i", u, queries)
            rest = np.sqrt(np.maximum((u * u).sum(axis=1) - 2.0 * dot + 1.0, 1e-12))
            centroid[np.arange(len(idx)), own] = (dot - 1.0) / rest
            scores = self.weight * self._topk_mean(sims) + (1.0 - self.weight) * centroid
            scores[np.arange(len(idx)), own] = np.where(
                self.counts[own] > 1, scores[np.arange(len(idx)), own], _NEG)
            out[start: start + len(idx)] = scores
        return out


def probabilities(scores: F32, calibration: Calibration) -> tuple[F64, F64]:
    """Per-intent probabilities [m, K] and the out-of-scope probability [m]."""
    t = calibration.temperature
    z = scores.astype(np.float64) / t
    b = calibration.background / t
    top = np.maximum(z.max(axis=1), b)
    ez = np.exp(z - top[:, None])
    eb = np.exp(b - top)
    total = ez.sum(axis=1) + eb
    return ez / total[:, None], eb / total


def _lse(z: F64) -> F64:
    top = z.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out: F64 = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return out


def _nll_grid(t: float, backgrounds: F64, own: F64, in_scores: F64, sim_scores: F64,
              oos_scores: F64, weights: tuple[float, float, float]) -> F64:
    """Weighted mean log-loss for temperature ``t`` and each background in ``backgrounds``."""
    w_in, w_sim, w_oos = weights
    b = backgrounds[:, None] / t  # [B, 1]
    lse_in = _lse(in_scores / t)[None, :]
    loss = w_in * (np.logaddexp(lse_in, b) - own[None, :] / t).mean(axis=1)
    if sim_scores.shape[0]:
        lse_sim = _lse(sim_scores / t)[None, :]
        loss += w_sim * (np.logaddexp(lse_sim, b) - b).mean(axis=1)
    if oos_scores.shape[0]:
        lse_oos = _lse(oos_scores / t)[None, :]
        loss += w_oos * (np.logaddexp(lse_oos, b) - b).mean(axis=1)
    result: F64 = loss
    return result


def fit_calibration(index: IntentIndex, *, out_of_scope: F32 | None = None,
                    oos_prior: float = 0.1, seed: int = 0) -> Calibration:
    """Fit temperature and background on ``index``'s own examples (module docstring).

    ``out_of_scope``: unit rows of the scenario's out-of-scope examples (may be empty).
    """
    if not 0.0 < oos_prior < 1.0:
        raise ValueError("oos_prior must be in (0, 1)")
    rng = np.random.default_rng(seed)
    chosen = np.arange(index.size, dtype=np.int64)
    if index.size > _MAX_FIT_SAMPLES:
        chosen = np.sort(rng.choice(index.size, _MAX_FIT_SAMPLES, replace=False))
    loo = index.leave_one_out(chosen).astype(np.float64)
    own_labels = index.labels[chosen]
    rows = np.arange(len(chosen))
    own = loo[rows, own_labels]
    keep = np.isfinite(own)  # an intent with one example has no leave-one-out score
    in_scores, own = loo[keep], own[keep]
    sim = loo.copy()
    sim[rows, own_labels] = -np.inf
    sim = sim[np.isfinite(sim).any(axis=1)]  # a one-intent domain has nothing left
    oos = (index.score(out_of_scope).astype(np.float64)
           if out_of_scope is not None and len(out_of_scope) else np.zeros((0, 1)))
    if not len(own):
        return Calibration(temperature=0.05, background=float(np.median(loo[np.isfinite(loo)]))
                           if np.isfinite(loo).any() else 0.3)
    ratio = oos_prior / (1.0 - oos_prior)
    share = 0.5 if len(oos) and len(sim) else 1.0
    weights = (1.0, ratio * share if len(sim) else 0.0, ratio * share if len(oos) else 0.0)
    finite = np.concatenate([in_scores[np.isfinite(in_scores)], own])
    lo, hi = float(finite.min()) - 0.1, float(finite.max()) + 0.1
    best = (math.inf, 0.05, 0.0)
    log_t_lo, log_t_hi = math.log(0.002), math.log(2.0)
    b_lo, b_hi = lo, hi
    for _ in range(3):  # a grid, then two finer grids around the best point
        for log_t in np.linspace(log_t_lo, log_t_hi, 25):
            t = math.exp(float(log_t))
            grid = np.linspace(b_lo, b_hi, 41)
            losses = _nll_grid(t, grid, own, in_scores, sim, oos, weights)
            i = int(np.argmin(losses))
            if float(losses[i]) < best[0]:
                best = (float(losses[i]), t, float(grid[i]))
        step_t = (log_t_hi - log_t_lo) / 24
        step_b = (b_hi - b_lo) / 40
        log_t_lo, log_t_hi = math.log(best[1]) - 2 * step_t, math.log(best[1]) + 2 * step_t
        b_lo, b_hi = best[2] - 2 * step_b, best[2] + 2 * step_b
    return Calibration(temperature=best[1], background=best[2], fitted_on=len(own))

