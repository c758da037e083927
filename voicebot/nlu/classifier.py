"""Few-shot intent classification by sentence-embedding similarity, calibrated.

:meth:`EmbeddingIntentClassifier.train` embeds a domain's example phrases (in
length-sorted chunks, through the on-disk :class:`EmbeddingCache` when one is
given: :mod:`voicebot.nlu.embedding_cache`) and fits the calibration on them
(:mod:`voicebot.nlu.calibration`); :meth:`~EmbeddingIntentClassifier.classify`
embeds the text and scores every intent with two matrix products.  Any object
with ``embed(texts) -> ndarray`` works as the embedder (:class:`TextEmbedder`),
so tests can use a fake; rows are re-normalised here, so cosines are dot products.

The confidence is a probability across the domain's intents and "none of them"
(out of scope), with a temperature and a background score fitted at load from the
scenario's own examples by leave-one-out -- no constant tuned on one scenario.  So
``nlu_threshold`` trades coverage for accuracy (docs/scenarios.md has the curve),
a text about nothing the scenario handles gets a low confidence, and so does a
text that sits between two intents (their probabilities split).
``IntentResult.scores`` holds every intent's probability, best first; they sum to
``1 - p(out of scope)``.  Empty or whitespace-only text gets confidence 0.

Which intent, given in scope, is a product of three experts fitted on the same
examples: the calibrated similarity ``s_i / T``, a softmax regression on the
embeddings and one on the examples' words (:mod:`voicebot.nlu.lexical`: the
embedding blurs which word was said, "PIN" or "card")::

    z_i = s_i / T + (1 - p_oos) * (a * logit_i + b * word_logit_i)
    p(i | in scope) ~ exp(z_i / t),   p_i = (1 - p_oos) * p(i | in scope)

``p_oos`` comes from the similarity calibration (distance-aware: a linear
regression extrapolates confidently far from its examples, so the regressions
fade out where the similarity says the text is about none of the intents; without
that, a 4-intent scenario was sure that "book me a flight" meant one of them).  ``a`` and ``b`` are
fixed (:class:`IntentScoring`: hyperparameters like a regression's strength, chosen
on public many-intent data, docs/benchmarks/nlu.md); the temperature ``t`` is
fitted at load, per scenario, by the log-loss of held-out ``z`` (leave-one-out
similarities, 3-fold cross-validated regressions), so the top probability is a
probability and ``nlu_threshold`` means the same in every scenario.
On BANKING77 and CLINC150 (10 examples per intent, three samplings) the product
beats, on average, a logistic regression on the same embeddings at every strength
we tried (C = 1 to 100; docs/benchmarks/nlu.md).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineError
from voicebot.nlu.calibration import (
    Calibration,
    IntentIndex,
    fit_calibration,
    probabilities,
)
from voicebot.nlu.embedding_cache import EmbeddingCache, embed_examples
from voicebot.nlu.lexical import LexicalFeatures
from voicebot.nlu.softmax_regression import (
    SoftmaxRegression,
    cross_validated_logits,
    fit_softmax_regression,
    fit_temperature,
)
from voicebot.types import IntentResult

__all__ = [
    "EmbeddingIntentClassifier",
    "IntentScoring",
    "TextEmbedder",
    "TrainedDomain",
    "WordRegression",
]

_log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    """Anything that embeds texts into L2-normalised float rows."""

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentScoring:
    """How intents are scored and calibrated (see :mod:`voicebot.nlu.calibration`)."""

    top_k: int = 2
    top_k_weight: float = 0.5
    oos_prior: float = 0.1
    """Share of turns expected to be out of scope: weighs the out-of-scope terms of the fit."""
    chunk_size: int = 32
    """Examples embedded at once at training (bounds the runtime's working memory)."""
    regression: bool = True
    """Also fit softmax regressions on the examples and multiply them in (module docstring)."""
    regression_weight: float = 4.0
    """``a``: the embedding regression's weight against the similarity (module docstring)."""
    lexical_weight: float = 1.0
    """``b``: the word regression's weight (0 leaves the word features out)."""
    l2_per_example: float = 1.0 / 30.0
    """The regressions' L2 strength times the number of examples (sklearn's C = 30)."""
    regression_iterations: int = 200
    """At most this many L-BFGS iterations per regression (about 40 are used)."""
    folds: int = 3
    """Cross-validation folds for the held-out predictions that fit the temperature."""
    max_fit_examples: int = 3000
    """At most this many examples (a seeded subsample) fit the temperature: bounds the load."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if not 0.0 <= self.top_k_weight <= 1.0:
            raise ValueError("top_k_weight must be in [0, 1]")
        if not 0.0 < self.oos_prior < 1.0:
            raise ValueError("oos_prior must be in (0, 1)")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.l2_per_example <= 0.0 or self.regression_iterations < 1:
            raise ValueError("l2_per_example must be > 0 and regression_iterations >= 1")
        if self.regression_weight < 0.0 or self.lexical_weight < 0.0:
            raise ValueError("regression_weight and lexical_weight must be >= 0")
        if self.folds < 2 or self.max_fit_examples < 2:
            raise ValueError("folds and max_fit_examples must be >= 2")


@dataclass(frozen=True, slots=True, kw_only=True)
class WordRegression:
    """A scenario's word features and the softmax regression fitted on them."""

    features: LexicalFeatures
    model: SoftmaxRegression

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.model.logits(self.features.transform(texts))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainedDomain:
    """One domain's examples, fitted calibration and (optional) regressions."""

    index: IntentIndex
    calibration: Calibration
    regression: SoftmaxRegression | None = None
    regression_weight: float = 0.0
    words: WordRegression | None = None
    words_weight: float = 0.0
    temperature: float = 1.0
    """``t`` of the product (module docstring)."""

    def probabilities(self, queries: npt.NDArray[np.float32], texts: Sequence[str] = ()
                      ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Per-intent probabilities [m, K] and out-of-scope probability [m] of unit rows
        ``queries`` (embeddings of ``texts``: the word expert needs the texts)."""
        scores = self.index.score(queries)
        intents, outside = probabilities(scores, self.calibration)
        if self.regression is None:
            return intents, outside
        linear = self.regression_weight * self.regression.logits(queries).astype(np.float64)
        if self.words is not None:
            if len(texts) != len(queries):
                raise ValueError("the word expert needs the texts of the queries")
            linear += self.words_weight * self.words.logits(texts).astype(np.float64)
        # the regressions extrapolate linearly: far from every example, the similarity speaks
        z = scores.astype(np.float64) / self.calibration.temperature
        z += (1.0 - outside)[:, None] * linear
        z /= self.temperature
        z -= z.max(axis=1, keepdims=True)
        inside = np.exp(z)
        inside /= inside.sum(axis=1, keepdims=True)
        return inside * (1.0 - outside)[:, None], outside


class EmbeddingIntentClassifier:
    """:class:`~voicebot.engines.base.IntentClassifier` over sentence embeddings."""

    def __init__(self, *, embedder: TextEmbedder, scoring: IntentScoring | None = None,
                 cache: EmbeddingCache | None = None) -> None:
        self._embedder = embedder
        self._scoring = scoring or IntentScoring()
        self._cache = cache
        self._domains: dict[str, TrainedDomain] = {}
        self._lock = threading.Lock()

    @property
    def scoring(self) -> IntentScoring:
        return self._scoring

    @property
    def domains(self) -> tuple[str, ...]:
        """The domains trained so far."""
        with self._lock:
            return tuple(self._domains)

    def trained(self, domain: str) -> TrainedDomain:
        """``domain``'s index and calibration (EngineError if it was not trained)."""
        with self._lock:
            found = self._domains.get(domain)
        if found is None:
            raise EngineError(f"intent domain {domain!r} was not trained")
        return found

    def train(self, *, domain: str, examples: Mapping[str, Sequence[str]],
              out_of_scope: Sequence[str] = ()) -> None:
        """Embed ``domain``'s examples and fit its calibration; replaces an earlier training.

        ``out_of_scope``: phrases the scenario does not handle (optional; sharpen the
        out-of-scope rejection)."""
        started = time.perf_counter()
        if not examples:
            raise ValueError(f"domain {domain!r}: no intents to train")
        names = tuple(examples)
        labels: list[int] = []
        phrases: list[str] = []
        for number, name in enumerate(names):
            cleaned = [text.strip() for text in examples[name] if text.strip()]
            if not cleaned:
                raise ValueError(f"domain {domain!r}: intent {name!r} has no examples")
            labels.extend([number] * len(cleaned))
            phrases.extend(cleaned)
        outside = [text.strip() for text in out_of_scope if text.strip()]
        vectors, embedded = self._embed_many([*phrases, *outside])
        cfg = self._scoring
        index = IntentIndex(names, vectors[: len(phrases)], np.asarray(labels, dtype=np.int64),
                            top_k=cfg.top_k, top_k_weight=cfg.top_k_weight)
        calibration = fit_calibration(index, out_of_scope=vectors[len(phrases):],
                                      oos_prior=cfg.oos_prior)
        trained = TrainedDomain(index=index, calibration=calibration)
        if cfg.regression and len(names) > 1:
            trained = self._with_regression(trained, phrases)
        with self._lock:
            self._domains[domain] = trained
        _log.info("trained domain %r: %d intents, %d examples (%d embedded, the rest cached), "
                  "%d out-of-scope; temperature %.4f, background %.3f, product temperature "
                  "%.2f; %.2f s", domain, len(names), len(phrases), embedded, len(outside),
                  calibration.temperature, calibration.background, trained.temperature,
                  time.perf_counter() - started)

    def _with_regression(self, trained: TrainedDomain, phrases: Sequence[str]) -> TrainedDomain:
        """``trained`` plus its regressions and the product's fitted temperature."""
        cfg, index = self._scoring, trained.index
        classes = len(index.names)
        # the index sorts its rows by intent: the phrases in the same order
        texts = [phrases[i] for i in index.order]
        fit = functools.partial(fit_softmax_regression, l2_per_example=cfg.l2_per_example,
                                max_iterations=cfg.regression_iterations)
        held = functools.partial(cross_validated_logits, folds=cfg.folds,
                                 l2_per_example=cfg.l2_per_example,
                                 max_iterations=cfg.regression_iterations)
        regression = fit(index.rows, index.labels, classes)
        words = None
        if cfg.lexical_weight > 0.0:
            features = LexicalFeatures(texts)
            words = WordRegression(features=features, model=fit(
                features.transform(texts), index.labels, classes))
        chosen = np.arange(index.size, dtype=np.int64)
        if index.size > cfg.max_fit_examples:
            rng = np.random.default_rng(0)
            chosen = np.sort(rng.choice(index.size, cfg.max_fit_examples, replace=False))
        labels = index.labels[chosen]
        outside = cfg.oos_prior / (1.0 - cfg.oos_prior)
        held_out = (index.leave_one_out(chosen).astype(np.float64)
                    / trained.calibration.temperature)
        held_out += cfg.regression_weight * held(index.rows[chosen], labels, classes)
        if words is not None:
            rows = words.features.transform([texts[i] for i in chosen])
            held_out += cfg.lexical_weight * held(rows, labels, classes)
        return TrainedDomain(index=index, calibration=trained.calibration, regression=regression,
                             regression_weight=cfg.regression_weight, words=words,
                             words_weight=cfg.lexical_weight if words else 0.0,
                             temperature=fit_temperature(held_out, labels,
                                                         outside_weight=outside))

    def classify(self, text: str, *, domain: str) -> IntentResult:
        """The best intent of ``text`` in ``domain`` with a probability in [0, 1]."""
        trained = self.trained(domain)
        names = trained.index.names
        if not text.strip():
            return IntentResult(intent=names[0], confidence=0.0,
                                scores=tuple((name, 0.0) for name in names))
        query = self._embed([text.strip()])
        probs, _ = trained.probabilities(query, [text.strip()])
        row = probs[0]
        order = np.argsort(-row, kind="stable")
        scores = tuple((names[i], float(row[i])) for i in order)
        return IntentResult(intent=scores[0][0], confidence=scores[0][1], scores=scores)

    def _embed_many(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], int]:
        dim = getattr(self._embedder, "dimension", None)
        return embed_examples(texts, self._embed, dim=dim if isinstance(dim, int) else None,
                              chunk_size=self._scoring.chunk_size, cache=self._cache)

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self._embedder.embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EngineError(f"embedder returned shape {vectors.shape} for {len(texts)} texts")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
        return unit
