"""The IntentClassifier contract, on the word-overlap fake and on MiniLM.

What the rest of voicebot relies on (``EngineSet.prepare``, ``CallJobs.understand``,
the dialog's confidence threshold): ``train`` per domain, replacing an earlier
training of that domain and leaving other domains alone; ``classify`` returns a
complete :class:`IntentResult`: an intent of the domain, a confidence in
[0, 1], and ``scores`` covering every intent of the domain once, best first,
the first being ``(intent, confidence)``; an example phrase is its own intent
with confidence of at least 0.5 (the scenarios' usual threshold); empty text
has confidence 0; the same text gives the same result.  Classifying in a
domain never trained is an ``EngineError``; training no intents, or an intent
without a non-blank example, is a ``ValueError`` (the real adapter's; the
Protocol is silent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tests.contract.support import build_real
from voicebot.engines.base import IntentClassifier, IntentResult
from voicebot.errors import EngineError
from voicebot.testing import FakeIntentClassifier

__all__: list[str] = []

DOMAIN = "bank_card"
TEXTS = ("I think I lost my card", "how much money do I have", "get me a human", "bye",
         "the weather in Paris", "four two one seven")


@pytest.fixture(scope="module", params=["fake", "minilm"])
def classifier(
    request: pytest.FixtureRequest, intents: Mapping[str, Sequence[str]]
) -> IntentClassifier:
    engine: IntentClassifier
    engine = FakeIntentClassifier() if request.param == "fake" else build_real("nlu", "minilm")
    engine.train(domain=DOMAIN, examples=intents)
    return engine


def _check_complete(result: IntentResult, intents: Sequence[str]) -> None:
    assert isinstance(result, IntentResult)
    assert result.intent in intents
    assert isinstance(result.confidence, float) and 0.0 <= result.confidence <= 1.0
    assert sorted(name for name, _ in result.scores) == sorted(intents)
    values = [score for _, score in result.scores]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)
    assert result.scores[0] == (result.intent, result.confidence)


@pytest.mark.parametrize("text", TEXTS)
def test_results_are_complete(
    classifier: IntentClassifier, intents: Mapping[str, Sequence[str]], text: str
) -> None:
    _check_complete(classifier.classify(text, domain=DOMAIN), list(intents))


def test_examples_are_their_own_intent(
    classifier: IntentClassifier, intents: Mapping[str, Sequence[str]]
) -> None:
    for intent, examples in intents.items():
        for example in examples[:3]:
            result = classifier.classify(example, domain=DOMAIN)
            assert (result.intent, result.confidence >= 0.5) == (intent, True), (example, result)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_has_zero_confidence(
    classifier: IntentClassifier, intents: Mapping[str, Sequence[str]], text: str
) -> None:
    result = classifier.classify(text, domain=DOMAIN)
    _check_complete(result, list(intents))
    assert result.confidence == 0.0


def test_same_text_same_result(classifier: IntentClassifier) -> None:
    for text in TEXTS:
        assert classifier.classify(text, domain=DOMAIN) == classifier.classify(text, domain=DOMAIN)


def test_unknown_domain_is_an_engine_error(classifier: IntentClassifier) -> None:
    with pytest.raises(EngineError):
        classifier.classify("I lost my card", domain="no such domain")


def test_domains_are_separate_and_retraining_replaces(classifier: IntentClassifier) -> None:
    before = classifier.classify("I lost my card", domain=DOMAIN)
    classifier.train(domain="pizza", examples={"order": ["a large pizza please"],
                                               "cancel": ["cancel my order"]})
    _check_complete(classifier.classify("a pizza", domain="pizza"), ["order", "cancel"])
    classifier.train(domain="pizza", examples={"deliver": ["bring it to my house"]})
    _check_complete(classifier.classify("a pizza", domain="pizza"), ["deliver"])
    assert classifier.classify("I lost my card", domain=DOMAIN) == before


@pytest.mark.parametrize(
    "examples", [{}, {"order": ["  ", ""]}, {"order": ["pizza"], "cancel": []}],
    ids=["no-intents", "blank-examples", "no-examples"],
)
def test_training_without_examples_is_a_value_error(
    classifier: IntentClassifier, examples: dict[str, list[str]]
) -> None:
    with pytest.raises(ValueError):
        classifier.train(domain="broken", examples=examples)
    with pytest.raises(EngineError):  # and the domain was not trained
        classifier.classify("pizza", domain="broken")
