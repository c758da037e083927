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
from voicebot.nlu.softmax_regression import (
    cross_validated_logits,
    fit_regression_weight,
    fit_softmax_regression,
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


def test_converges_to_the_regularised_optimum() -> None:
    rows, labels = clusters(4, 10, 16, 1.0, seed=5)
    n = len(labels)
    model = fit_softmax_regression(rows, labels, 4, l2_per_example=1.0, steps=600)
    grad = _gradient(rows, labels, model.weights.astype(np.float64),
                     model.bias.astype(np.float64), 1.0 / n)
    start = _gradient(rows, labels, np.zeros((16, 4)), np.zeros(4), 1.0 / n)
    assert np.abs(grad).max() < 0.02 * np.abs(start).max()


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
                                                             steps=50))
    queries = np.vstack([rows, -rows[:2]]).astype(np.float32)
    probs, outside = domain.probabilities(queries)
    _, alone = probabilities(index.score(queries), calibration)
    assert np.allclose(outside, alone)
    assert np.allclose(probs.sum(axis=1) + outside, 1.0)
    assert (probs >= 0).all()


def test_cross_validated_logits_are_held_out() -> None:
    rows, labels = clusters(3, 6, 8, 0.3, seed=2)
    rows[0] = -rows[0]  # an outlier: only a model that saw it can get it right
    held = cross_validated_logits(rows, labels, 3, folds=3, steps=200)
    seen = fit_softmax_regression(rows, labels, 3, steps=200).logits(rows)
    assert held.shape == (18, 3)
    assert seen[0].argmax() == labels[0] and held[0].argmax() != labels[0]
    assert (held[1:].argmax(axis=1) == labels[1:]).mean() >= 0.9


@pytest.mark.parametrize("informative", ["similarity", "regression"])
def test_regression_weight_follows_the_informative_expert(informative: str) -> None:
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(5), 8).astype(np.int64)
    good = rng.normal(size=(40, 5))
    good[np.arange(40), labels] += 4.0
    noise = 3.0 * rng.normal(size=(40, 5))
    sim, logits = (good, noise) if informative == "similarity" else (noise, good)
    weight = fit_regression_weight(sim, logits, labels)
    assert (weight <= 0.25) if informative == "similarity" else (weight >= 1.0)


def test_regression_weight_skips_rows_without_a_score() -> None:
    sim = np.array([[-np.inf, 0.0], [0.0, -np.inf]])
    assert fit_regression_weight(sim, np.ones((2, 2)), np.array([0, 1])) == 0.0
