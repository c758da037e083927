"""voicebot.nlu.softmax_regression and how the classifier multiplies it in: small
random embeddings, no model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.nlu_helpers import clusters
from voicebot.nlu.calibration import IntentIndex, fit_calibration, probabilities
from voicebot.nlu.classifier import TrainedDomain
from voicebot.nlu.lexical import SparseRows
from voicebot.nlu.softmax_regression import (
    cross_validated_logits,
    fit_softmax_regression,
    fit_temperature,
)

__all__: list[str] = []



def _gradient(rows: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray,
              l2: float) -> np.ndarray:
    z = rows.astype(np.float64) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    grad: np.ndarray = rows.T @ p / len(labels) + l2 * w
    return grad


def test_fits_separable_clusters_and_generalises() -> None:
    rows, labels = clusters(6, 12, 32, 0.4, seed=3)
    model = fit_softmax_regression(rows[::2], labels[::2], 6)
    assert model.weights.shape == (32, 6) and model.bias.shape == (6,)
    assert (model.logits(rows[1::2]).argmax(axis=1) == labels[1::2]).mean() >= 0.95


@pytest.mark.parametrize("l2_per_example", [1.0, 1.0 / 30.0])
def test_converges_to_the_regularised_optimum(l2_per_example: float) -> None:
    # C = 30 (the classifier's strength) is the ill-conditioned case: weak regularisation
    rows, labels = clusters(4, 10, 16, 1.0, seed=5)
    n = len(labels)
    model = fit_softmax_regression(rows, labels, 4, l2_per_example=l2_per_example)
    grad = _gradient(rows, labels, model.weights.astype(np.float64),
                     model.bias.astype(np.float64), l2_per_example / n)
    start = _gradient(rows, labels, np.zeros((16, 4)), np.zeros(4), l2_per_example / n)
    assert np.abs(grad).max() < 0.01 * np.abs(start).max()


def test_rejects_bad_input() -> None:
    rows, labels = clusters(2, 3, 4, 0.5, seed=0)
    with pytest.raises(ValueError):
        fit_softmax_regression(rows, labels[:-1], 2)
    with pytest.raises(ValueError):
        fit_softmax_regression(rows, labels, 2, l2_per_example=0.0)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 6), n=st.integers(2, 6), spread=st.floats(0.1, 2.0),
       seed=st.integers(0, 10_000))
def test_pool_is_a_distribution_with_the_same_out_of_scope(k: int, n: int, spread: float,
                                                            seed: int) -> None:
    rows, labels = clusters(k, n, 12, spread, seed)
    index = IntentIndex(tuple(f"i{i}" for i in range(k)), rows, labels, top_k=2,
                        top_k_weight=0.5)
    calibration = fit_calibration(index)
    domain = TrainedDomain(index=index, calibration=calibration,
                           regression=fit_softmax_regression(index.rows, index.labels, k,
                                                             max_iterations=50))
    queries = np.vstack([rows, -rows[:2]]).astype(np.float32)
    probs, outside = domain.probabilities(queries)
    _, alone = probabilities(index.score(queries), calibration)
    assert np.allclose(outside, alone)
    assert np.allclose(probs.sum(axis=1) + outside, 1.0)
    assert (probs >= 0).all()


def test_cross_validated_logits_are_held_out() -> None:
    rows, labels = clusters(3, 6, 8, 0.3, seed=2)
    rows[0] = -rows[0]  # an outlier: only a model that saw it can get it right
    held = cross_validated_logits(rows, labels, 3, folds=3, max_iterations=200)
    seen = fit_softmax_regression(rows, labels, 3, max_iterations=200).logits(rows)
    assert held.shape == (18, 3)
    assert seen[0].argmax() == labels[0] and held[0].argmax() != labels[0]
    assert (held[1:].argmax(axis=1) == labels[1:]).mean() >= 0.9


@pytest.mark.parametrize("scale", [1.0, 2.0, 4.0])
def test_temperature_undoes_a_scaling_of_calibrated_logits(scale: float) -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, size=4000).astype(np.int64)
    logits = rng.normal(size=(4000, 5))  # then the labels are drawn from softmax(logits)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p], dtype=np.int64)
    t = fit_temperature(logits * scale, labels)
    assert t == pytest.approx(scale, rel=0.15)


def test_temperature_never_sharpens_and_simulated_outside_rows_soften_it() -> None:
    labels = np.repeat(np.arange(4), 10).astype(np.int64)
    perfect = np.zeros((40, 4))
    perfect[np.arange(40), labels] = 3.0  # every held-out answer right and sure
    alone = fit_temperature(perfect, labels)
    assert alone == 1.0
    assert fit_temperature(perfect, labels, outside_weight=0.5) == 1.0
    spread = np.zeros((40, 4))
    spread[np.arange(40), labels] = 3.0
    spread[np.arange(40), (labels + 1) % 4] = 2.0  # a clear runner-up: "outside" is sure too
    assert fit_temperature(spread, labels, outside_weight=5.0) > fit_temperature(spread, labels)


def test_temperature_skips_rows_without_a_score() -> None:
    held = np.array([[-np.inf, 0.0], [0.0, -np.inf], [2.0, 0.0]])
    assert 1.0 <= fit_temperature(held, np.array([0, 1, 0])) <= 20.0
    assert fit_temperature(held[:2], np.array([0, 1])) == 1.0


def test_a_sparse_design_fits_as_its_dense_twin() -> None:
    rows, labels = clusters(3, 8, 6, 0.5, seed=3)
    sparse_rows = np.where(np.abs(rows) > 0.3, rows, 0.0).astype(np.float32)
    with_bias = np.hstack([sparse_rows, np.ones((len(rows), 1), np.float32)])
    indptr = np.concatenate(([0], np.cumsum((with_bias != 0).sum(axis=1)))).astype(np.int64)
    cols = np.nonzero(with_bias)[1].astype(np.int64)
    csr = SparseRows(indptr, cols, with_bias[with_bias != 0], width=7)
    dense = fit_softmax_regression(sparse_rows, labels, 3, max_iterations=400)
    sparse = fit_softmax_regression(csr, labels, 3, max_iterations=400)
    assert np.allclose(sparse.logits(csr), dense.logits(sparse_rows), atol=0.05)
    held = cross_validated_logits(csr, labels, 3, folds=3, max_iterations=100)
    assert held.shape == (24, 3)
