"""Tests of the few-shot embedding intent classifier: real MiniLM and a fake embedder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml

from tests.unit.test_nlu_graph import models_cache
from voicebot.engines.base import IntentClassifier
from voicebot.errors import EngineError
from voicebot.nlu.classifier import EmbeddingIntentClassifier, IntentScoring
from voicebot.nlu.embedder import MiniLmEmbedder

__all__: list[str] = []

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "bank_card.yaml"
DOMAIN = "bank_card"

PARAPHRASES = {
    "check_balance": (
        "how much money is on my card",
        "tell me my balance",
        "what's my current account balance",
        "I'd like to check how much I have",
        "can I get my balance please",
        "how much do I have left to spend",
        "what is the remaining balance",
        "show me my balance",
        "could you check my balance for me",
        "I want to know how much money I have",
    ),
    "lost_card": (
        "I think I lost my bank card",
        "my card has been stolen",
        "somebody took my card",
        "I can't find my debit card anywhere",
        "I want to block my card",
        "my credit card is gone",
        "I misplaced my card",
        "freeze my card please",
        "I dropped my card somewhere",
        "someone stole my credit card",
    ),
    "operator": (
        "can I speak to a real person",
        "get me an operator",
        "I'd like to talk to an agent please",
        "put me through to a human",
        "connect me with a representative",
        "transfer me to customer support",
        "human please",
        "I need a real person",
    ),
    "goodbye": (
        "bye",
        "thanks that's everything",
        "no that's it goodbye",
        "okay thank you bye",
        "I'm all set thanks",
        "thank you goodbye",
        "bye for now",
        "that's all I needed",
    ),
}

OUT_OF_DOMAIN = (
    "what's the weather in Paris",
    "my dog likes pizza",
    "the of and a",
    "uh um er",
    "play some music",
    "what time is it",
    "how do I bake a chocolate cake",
    "who won the football game last night",
    "book me a flight to London",
    "tell me a joke",
    "the cat sat on the mat",
)


def _examples() -> dict[str, list[str]]:
    data = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    return {name: list(spec["examples"]) for name, spec in data["intents"].items()}


@pytest.fixture(scope="module", params=[True, False], ids=["int8", "fp32"])
def classifier(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EmbeddingIntentClassifier:
    embedder = MiniLmEmbedder.from_cache(models_cache(tmp_path_factory), quantized=request.param)
    clf = EmbeddingIntentClassifier(embedder=embedder)
    clf.train(domain=DOMAIN, examples=_examples())
    return clf


def test_paraphrases_are_new() -> None:
    known = {e.lower() for examples in _examples().values() for e in examples}
    phrases = [p for group in PARAPHRASES.values() for p in group]
    assert len(phrases) >= 20
    assert not known & {p.lower() for p in phrases}


@pytest.mark.parametrize(
    ("intent", "text"), [(i, t) for i, group in PARAPHRASES.items() for t in group]
)
def test_paraphrase_is_recognised(
    classifier: EmbeddingIntentClassifier, intent: str, text: str
) -> None:
    result = classifier.classify(text, domain=DOMAIN)
    assert (result.intent, result.confidence >= 0.5) == (intent, True), result


@pytest.mark.parametrize("text", OUT_OF_DOMAIN)
def test_out_of_domain_is_rejected(classifier: EmbeddingIntentClassifier, text: str) -> None:
    assert classifier.classify(text, domain=DOMAIN).confidence < 0.5


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_has_zero_confidence(classifier: EmbeddingIntentClassifier, text: str) -> None:
    result = classifier.classify(text, domain=DOMAIN)
    assert result.confidence == 0.0
    assert result.intent == "check_balance"
    assert {name for name, _ in result.scores} == set(_examples())


def test_scores_cover_every_intent_best_first(classifier: EmbeddingIntentClassifier) -> None:
    result = classifier.classify("I lost my card, please block it", domain=DOMAIN)
    assert result.scores[0][0] == result.intent == "lost_card"
    assert {name for name, _ in result.scores} == set(_examples())
    values = [score for _, score in result.scores]
    assert values == sorted(values, reverse=True)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[0] == result.confidence


# --- the scoring math, with a fake embedder -------------------------------------------


class FakeEmbedder:
    """Embeds known texts to fixed vectors; counts calls and batch sizes."""

    def __init__(self, vectors: Mapping[str, Sequence[float]]) -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(len(texts))
        return np.stack([self.vectors[t] for t in texts])


def test_scoring_validates() -> None:
    with pytest.raises(ValueError):
        IntentScoring(top_k=0)
    with pytest.raises(ValueError):
        IntentScoring(oos_prior=0.0)
    with pytest.raises(ValueError):
        IntentScoring(chunk_size=0)


def test_classifier_with_fake_embedder() -> None:
    fake = FakeEmbedder(
        {
            "yes 1": [1, 0.1, 0],
            "yes 2": [1, -0.1, 0],
            "no 1": [0, 1, 0.1],
            "no 2": [0, 1, -0.1],
            "yes!": [2, 0, 0],  # not normalized: the classifier normalizes
            "sky": [0, 0, 1],
        }
    )
    clf: IntentClassifier = EmbeddingIntentClassifier(embedder=fake)
    clf.train(domain="d", examples={"yes": ["yes 1", "yes 2", "  "], "no": ["no 1", "no 2"]})
    assert fake.batches == [4]  # one length-sorted chunk
    result = clf.classify("yes!", domain="d")
    assert result.intent == "yes" and result.confidence > 0.5
    assert clf.classify("sky", domain="d").confidence < result.confidence
    assert fake.batches == [4, 1, 1]
    with pytest.raises(EngineError):
        clf.classify("yes!", domain="other")


def test_training_validates() -> None:
    clf = EmbeddingIntentClassifier(embedder=FakeEmbedder({"a": [1, 0]}))
    with pytest.raises(ValueError):
        clf.train(domain="d", examples={})
    with pytest.raises(ValueError):
        clf.train(domain="d", examples={"x": ["  "]})
    assert clf.domains == ()


def test_bad_embedder_output_is_an_engine_error() -> None:
    class Broken:
        def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            return np.zeros((len(texts) + 1, 3), dtype=np.float32)

    clf = EmbeddingIntentClassifier(embedder=Broken())
    with pytest.raises(EngineError):
        clf.train(domain="d", examples={"x": ["a"]})
