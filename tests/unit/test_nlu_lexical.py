"""voicebot.nlu.lexical: word features and the sparse products the regression needs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.nlu.lexical import LexicalFeatures, SparseRows, terms

__all__: list[str] = []

WORDS = ["card", "lost", "my", "pin", "balance", "block", "the", "new", "what's", "is"]


def _dense(rows: SparseRows) -> np.ndarray:
    return rows.dense()


def test_terms_are_words_and_word_pairs() -> None:
    assert terms("My PIN, my card!") == {"my", "pin", "card", "my pin", "pin my", "my card"}
    assert terms("   ") == set()


def test_rows_are_unit_tf_idf_with_a_bias_column() -> None:
    features = LexicalFeatures(["lost my card", "my balance", "block the card"])
    rows = features.transform(["lost card", "completely unknown words"])
    dense = _dense(rows)
    assert rows.shape == (2, features.width)
    assert np.allclose(dense[:, -1], 1.0)
    assert np.linalg.norm(dense[0, :-1]) == pytest.approx(1.0)
    assert not dense[1, :-1].any()  # nothing known: the bias alone
    # the rarer word weighs more: "lost" (1 example) over "card" (2)
    assert dense[0, features.vocabulary["lost"]] > dense[0, features.vocabulary["card"]]


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join),
                      min_size=1, max_size=12),
       k=st.integers(1, 4), seed=st.integers(0, 1000))
def test_sparse_products_match_dense(texts: list[str], k: int, seed: int) -> None:
    features = LexicalFeatures(texts)
    rows = features.transform(texts)
    dense = _dense(rows)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features.width, k)).astype(np.float32)
    r = rng.normal(size=(len(texts), k)).astype(np.float32)
    assert np.allclose(rows @ w, dense @ w, atol=1e-4)
    assert np.allclose(rows.transpose_matmul(r), dense.T @ r, atol=1e-4)
    picked = np.array([len(texts) - 1, 0], dtype=np.int64)
    assert np.allclose(_dense(rows.take(picked)), dense[picked])


def test_malformed_rows_are_refused() -> None:
    with pytest.raises(ValueError):
        SparseRows(np.array([0, 0], np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   width=3)
    with pytest.raises(ValueError):
        SparseRows(np.array([0, 2], np.int64), np.zeros(1, np.int64), np.zeros(1, np.float32),
                   width=3)
