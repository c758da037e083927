"""The calibration math (voicebot.nlu.calibration) and the embedding cache, on small
hand-made and random embeddings: no model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.nlu_helpers import clusters
from voicebot.nlu.calibration import Calibration, IntentIndex, fit_calibration, probabilities
from voicebot.nlu.classifier import EmbeddingIntentClassifier
from voicebot.nlu.embedding_cache import EmbeddingCache, embed_examples

__all__: list[str] = []



def _index(rows: np.ndarray, labels: np.ndarray) -> IntentIndex:
    names = tuple(f"i{i}" for i in range(int(labels.max()) + 1))
    return IntentIndex(names, rows, labels.astype(np.int64), top_k=2, top_k_weight=0.5)


def test_scores_match_the_formula() -> None:
    rows = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    index = _index(rows, np.array([0, 0, 1]))
    q = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    scores = index.score(q)[0]
    centroid0 = np.array([1, 1, 0]) / np.sqrt(2)
    assert np.isclose(scores[0], 0.5 * (1.0 + 0.0) / 2 + 0.5 * float(centroid0 @ q[0]))
    assert np.isclose(scores[1], 0.0)


def test_leave_one_out_equals_retraining_without_the_row() -> None:
    rows, labels = clusters(4, 5, 16, 0.8, seed=1)
    index = _index(rows, labels)
    loo = index.leave_one_out(np.arange(index.size, dtype=np.int64))
    for i in (0, 7, 19):
        keep = np.arange(index.size) != i
        reduced = _index(index.rows[keep], index.labels[keep])
        assert np.allclose(loo[i], reduced.score(index.rows[i: i + 1])[0], atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(1, 6), st.floats(0.1, 2.0), st.integers(0, 10_000))
def test_probabilities_are_a_distribution(k: int, n: int, spread: float, seed: int) -> None:
    rows, labels = clusters(k, n, 8, spread, seed)
    index = _index(rows, labels)
    cal = fit_calibration(index)
    probs, oos = probabilities(index.score(rows), cal)
    assert cal.temperature > 0
    assert np.allclose(probs.sum(axis=1) + oos, 1.0)
    assert ((probs >= 0) & (probs <= 1)).all()


def test_separated_intents_are_confident_and_far_texts_are_not() -> None:
    rows, labels = clusters(6, 8, 32, 0.3, seed=3)
    index = _index(rows, labels)
    cal = fit_calibration(index)
    probs, _ = probabilities(index.score(rows), cal)
    assert (probs.argmax(axis=1) == labels).all() and probs.max(axis=1).min() > 0.5
    far = np.random.default_rng(9).normal(size=(20, 32)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    far_probs, far_oos = probabilities(index.score(far), cal)
    assert (far_probs.max(axis=1) < 0.5).mean() >= 0.5 and np.median(far_oos) > 0.5


def test_confidence_ranks_errors_last() -> None:
    rows, labels = clusters(10, 12, 24, 1.2, seed=5)  # overlapping intents
    index = _index(rows[::2], labels[::2])
    cal = fit_calibration(index)
    probs, _ = probabilities(index.score(rows[1::2]), cal)
    correct = probs.argmax(axis=1) == labels[1::2]
    confidence = probs.max(axis=1)
    assert 0.3 < correct.mean() < 1.0
    assert confidence[correct].mean() > confidence[~correct].mean()


def test_out_of_scope_examples_raise_the_background() -> None:
    rows, labels = clusters(3, 6, 16, 0.5, seed=2)
    index = _index(rows, labels)
    near = (rows[:6] + rows[6:12]) / 2
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    plain = fit_calibration(index)
    taught = fit_calibration(index, out_of_scope=near.astype(np.float32), oos_prior=0.3)
    _, oos_plain = probabilities(index.score(near), plain)
    _, oos_taught = probabilities(index.score(near), taught)
    assert oos_taught.mean() > oos_plain.mean()


def test_single_example_intents_and_one_intent_domains_fit() -> None:
    rows, labels = clusters(3, 1, 8, 0.1, seed=0)
    assert fit_calibration(_index(rows, labels)).temperature > 0
    rows, labels = clusters(1, 4, 8, 0.1, seed=0)
    cal = fit_calibration(_index(rows, labels))
    assert isinstance(cal, Calibration) and cal.temperature > 0


class CountingEmbedder:
    dimension = 4

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(list(texts))
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, len(text) % 4] = 1.0
            out[row, (len(text) + 1) % 4] = 0.5
        return out


def test_examples_are_embedded_in_length_sorted_chunks() -> None:
    fake = CountingEmbedder()
    texts = ["a" * n for n in (9, 1, 5, 3, 7, 2, 2)]
    vectors, embedded = embed_examples(texts, fake.embed, dim=4, chunk_size=3)
    assert embedded == 6  # the duplicate once
    assert [len(b) for b in fake.batches] == [3, 3]
    assert [len(t) for b in fake.batches for t in b] == [1, 2, 3, 5, 7, 9]
    assert vectors.shape == (7, 4) and np.allclose(vectors[5], vectors[6])


def test_cache_spares_a_restart_the_embedding(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite3"
    examples = {"x": ["one", "three"], "y": ["seven", "eleven!"]}
    first = CountingEmbedder()
    clf = EmbeddingIntentClassifier(embedder=first, cache=EmbeddingCache(path, model_key="m1"))
    clf.train(domain="d", examples=examples)
    assert sum(map(len, first.batches)) == 4
    again = CountingEmbedder()
    clf2 = EmbeddingIntentClassifier(embedder=again, cache=EmbeddingCache(path, model_key="m1"))
    clf2.train(domain="d", examples=examples)
    assert again.batches == []
    assert clf2.classify("three", domain="d") == clf.classify("three", domain="d")
    other_model = CountingEmbedder()
    EmbeddingIntentClassifier(embedder=other_model, cache=EmbeddingCache(path, model_key="m2")
                              ).train(domain="d", examples=examples)
    assert sum(map(len, other_model.batches)) == 4  # keyed by model too


def test_unreadable_cache_is_skipped(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_bytes(b"garbage" * 100)
    vectors, embedded = embed_examples(["ab", "c"], CountingEmbedder().embed, dim=4,
                                       cache=EmbeddingCache(bad, model_key="m"))
    assert embedded == 2 and vectors.shape == (2, 4)
