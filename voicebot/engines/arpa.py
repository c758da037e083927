"""Trigram ARPA language models from a scenario's phrases, in pure Python.

Used by the pocketsphinx adapter to bias recognition to a scenario: interpolated
Witten-Bell smoothing written as ARPA backoff, plus robustness phrases (single
digits, every digit pair, yes/no words) so digit strings and short answers decode.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from voicebot.errors import EngineError

__all__ = [
    "DIGIT_PAIRS",
    "DIGIT_PAIR_WEIGHT",
    "ROBUSTNESS_PHRASES",
    "Sentence",
    "build_arpa",
    "normalize_phrase",
]

_SENTENCE_START = "<s>"
_SENTENCE_END = "</s>"
_LOG10_ZERO = -99.0
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ROBUSTNESS_PHRASES: tuple[str, ...] = (
    *_DIGIT_WORDS,
    "oh",
    "double",
    "yes",
    "yeah",
    "yep",
    "sure",
    "no",
    "nope",
    "correct",
)
"""Short phrases added to every domain so digits and short answers always decode."""

# Every digit pair, each counted as 0.3 of a sentence: digit strings of any
# length decode (a digit likely follows a digit) without swamping the phrases.
DIGIT_PAIRS = tuple((a, b) for a in _DIGIT_WORDS for b in _DIGIT_WORDS)
DIGIT_PAIR_WEIGHT = 0.3
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_NON_WORD = re.compile(r"[^a-z0-9']+")
_DIGIT_RUN = re.compile(r"[0-9]+")


def normalize_phrase(text: str) -> list[str]:
    """Dictionary-style words of ``text``: lowercase, no punctuation, digits spelled.

    Internal apostrophes stay (``what's``); digit runs are spelled digit by digit
    (``4217`` -> ``four two one seven``), as callers read card numbers.
    """
    text = text.lower().translate(_APOSTROPHES).replace("&", " and ")
    text = _DIGIT_RUN.sub(lambda m: " " + " ".join(_DIGIT_WORDS[int(d)] for d in m[0]) + " ", text)
    words = (token.strip("'") for token in _NON_WORD.sub(" ", text).split())
    return [word for word in words if word]


def _witten_bell(
    counts: dict[str, float], lower: Callable[[str], float]
) -> tuple[dict[str, float], float]:
    """Interpolated Witten-Bell probabilities of the seen followers, and the backoff weight."""
    total = sum(counts.values())
    distinct = len(counts)
    probs = {w: (c + distinct * lower(w)) / (total + distinct) for w, c in counts.items()}
    seen_lower = sum(lower(w) for w in counts)
    left = max(1.0 - sum(probs.values()), 1e-12)
    return probs, left / max(1.0 - seen_lower, 1e-12)


Sentence: TypeAlias = Sequence[str | None]


def build_arpa(
    sentences: Iterable[Sentence],
    *,
    weighted: Iterable[tuple[Sentence, float]] = (),
    extra_unigrams: Iterable[str] = (),
) -> str:
    """A trigram ARPA model (interpolated Witten-Bell, written as backoff) of ``sentences``.

    A ``None`` word is an unknown word: no n-gram spans it.  ``weighted``
    sentences count with their weight instead of 1.  ``extra_unigrams`` get one
    more unigram count each, so every vocabulary word stays reachable.
    """
    uni: defaultdict[str, float] = defaultdict(float)
    bi: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    tri: defaultdict[tuple[str, str], defaultdict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for sentence, weight in itertools.chain(((s, 1.0) for s in sentences), weighted):
        tokens = [_SENTENCE_START, *sentence, _SENTENCE_END]
        for i, word in enumerate(tokens):
            if word is None or word == _SENTENCE_START:
                continue
            uni[word] += weight
            prev = tokens[i - 1]
            if prev is None:
                continue
            bi[prev][word] += weight
            prev2 = tokens[i - 2] if i >= 2 else None
            if prev2 is not None:
                tri[(prev2, prev)][word] += weight
    for word in extra_unigrams:
        uni[word] += 1.0
    if not uni:
        raise EngineError("cannot build a language model from no words")

    total = sum(uni.values())
    p1 = {w: c / total for w, c in uni.items()}
    p2: dict[str, dict[str, float]] = {}
    bow1: dict[str, float] = {}
    for context, followers in bi.items():
        p2[context], bow1[context] = _witten_bell(followers, lambda w: p1[w])

    def bigram(context: str, word: str) -> float:
        seen = p2.get(context)
        if seen is not None and word in seen:
            return seen[word]
        return bow1.get(context, 1.0) * p1[word]

    p3: dict[tuple[str, str], dict[str, float]] = {}
    bow2: dict[tuple[str, str], float] = {}
    for (first, second), followers in tri.items():
        p3[(first, second)], bow2[(first, second)] = _witten_bell(
            followers, functools.partial(bigram, second)
        )

    def log10(p: float) -> str:
        return f"{math.log10(p):.6f}"

    lines = ["\\data\\", f"ngram 1={len(p1) + 1}"]
    lines += [f"ngram 2={sum(map(len, p2.values()))}", f"ngram 3={sum(map(len, p3.values()))}"]
    lines += [
        "",
        "\\1-grams:",
        f"{_LOG10_ZERO:.6f} {_SENTENCE_START} {log10(bow1.get(_SENTENCE_START, 1.0))}",
    ]
    for w in sorted(p1):
        lines.append(f"{log10(p1[w])} {w}" + (f" {log10(bow1[w])}" if w in bow1 else ""))
    lines += ["", "\\2-grams:"]
    for u in sorted(p2):
        for w in sorted(p2[u]):
            bow = f" {log10(bow2[(u, w)])}" if (u, w) in bow2 else ""
            lines.append(f"{log10(p2[u][w])} {u} {w}{bow}")
    lines += ["", "\\3-grams:"]
    for u, v in sorted(p3):
        lines.extend(f"{log10(p)} {u} {v} {w}" for w, p in sorted(p3[(u, v)].items()))
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)
