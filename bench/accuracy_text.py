"""Text normalisation and word error rate for ``python -m bench accuracy``.

:func:`normalize_text` puts a reference text and a recogniser's output in the same
form before they are compared, so that only what was *heard* differently counts,
not how it was written.  In order:

1. Unicode NFKC, lower case, typographic apostrophes as ``'``.
2. Annotations in brackets or parentheses (``[@]``, ``(simple tone sound plays)``,
   a recogniser's ``(music)``) and ``<s>``-style tags dropped.
3. Symbols spoken as words: ``&`` → and, ``%`` → percent, ``*`` → star, ``#`` → pound
   (the telephone keys, as the prompts say them).
4. Numerals: ordinals spelt as words (``18th`` → eighteenth, ``21st`` → twenty
   first), thousands separators dropped (``1,250`` → ``1250``), a decimal point
   spoken (``28.8`` → ``28 point 8``).
5. Dotted abbreviations closed up (``a.m.`` → ``am``); hyphens and slashes become
   spaces (``call-forward`` → ``call forward``); other punctuation is dropped.
6. Contractions expanded: ``can't``/``cannot`` → can not, ``won't`` → will not,
   ``n't`` → not, ``'re`` → are, ``'ll`` → will, ``'ve`` → have, ``'m`` → am,
   ``'d`` → would, ``'s`` → is after pronouns and wh-words (``it's``, ``what's``,
   ``let's`` → let us); any other apostrophe is dropped (``party's`` → ``partys``).
7. A few spellings unified: ``ok`` → okay, ``mr``/``mrs``/``dr`` → mister/missus/doctor;
   and six misspellings in the published Asterisk texts put right (the recordings
   say the word): represenatives, witheld, umute, exclaimation, fourtieth,
   indentified; the letter name ``zed`` written as the letter ``z``.
8. Numbers, written or spoken, become their digits, one word per digit: ``four two
   one seven``, ``forty two seventeen`` and ``4217`` all become ``4 2 1 7``; ``five
   hundred`` → ``5 0 0``; ``one thousand two hundred thirty four`` → ``1 2 3 4``.  A
   run of number words and numerals (zero … ninety, hundred, thousand, million) is
   read as one number (groups side by side are concatenated: ``twelve thirty four``
   → ``1 2 3 4``), then spelt digit by digit, so that a number is scored the same
   however it was written, and a wrong or repeated number costs one error per
   digit.  ``oh`` is not read as zero, ``a`` not as one.

Spacing (:func:`join_spacing`, applied to a pair of texts before they are aligned,
as NIST's GLM files do for compounds): a run of two to five words on one side whose
concatenation is one word of the other side is joined, so ``touch tone`` and
``touchtone``, ``re record`` and ``rerecord``, ``file name`` and ``filename``, a spelt
``m i s d n`` and ``misdn`` compare equal.  Digits are never joined (a number is one
word per digit on both sides).  It is how the words are written, not what was heard;
``score(..., strict=True)`` leaves it out and the report gives both figures.

Word error rate: :func:`word_errors` aligns two word sequences by Levenshtein
distance (substitution, deletion, insertion each cost 1) and counts each kind;
WER = (S + D + I) / reference words.  This is the textbook definition that
``jiwer`` also computes; it is written out here (40 lines) rather than adding
``jiwer``, whose ``rapidfuzz`` dependency is a compiled extension.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["WordErrors", "join_spacing", "normalize_text", "sum_errors", "word_errors"]

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine".split())}
_TEENS = {w: i + 10 for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: (i + 2) * 10 for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 1000, "million": 1_000_000}
_ORDINAL_WORDS = {
    1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh",
    8: "eighth", 9: "ninth", 10: "tenth", 11: "eleventh", 12: "twelfth", 100: "hundredth",
    1000: "thousandth", 1_000_000: "millionth",
    **{v: w + "th" for w, v in _TEENS.items() if v > 12},
    **{v: w[:-1] + "ieth" for w, v in _TENS.items()},
}
_CARDINAL_TENS = {v: w for w, v in _TENS.items()}
_NUMBER_WORDS = {*_UNITS, *_TEENS, *_TENS, "hundred", *_SCALES}

_WHOLE = {"can't": "can not", "cannot": "can not", "won't": "will not",
          "shan't": "shall not", "let's": "let us", "ain't": "is not"}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"),
             ("'m", " am"), ("'d", " would"))
_IS_AFTER = frozenset("it that what there here he she who where how when why this".split())
_SYMBOLS = {"&": "and", "%": "percent", "*": "star", "#": "pound"}
_SPELLINGS = {"ok": "okay", "mr": "mister", "mrs": "missus", "dr": "doctor",
              # misspelt in core-sounds-en.txt; the recordings say the word
              "represenatives": "representatives", "witheld": "withheld", "umute": "unmute",
              "exclaimation": "exclamation", "fourtieth": "fortieth",
              "indentified": "identified", "zed": "z"}
_MAX_JOIN = 5  # words joined at most by join_spacing

_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"(\d)\.(?=\d)")
_ABBREVIATION = re.compile(r"\b(?:[a-z]\.){2,}")
_SPACING = re.compile("[-/_\u2013\u2014]")  # hyphen, slash, underscore, dashes
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def _ordinal(match: re.Match[str]) -> str:
    """``18th`` → eighteenth, ``21st`` → twenty first (as the prompts spell them)."""
    n = int(match.group(1))
    if n in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[n]
    if 20 < n < 100 and n % 10:
        return f"{_CARDINAL_TENS[n - n % 10]} {_ORDINAL_WORDS[n % 10]}"
    return match.group(0)


def _expand(word: str) -> str:
    word = word.strip("'")
    if word in _WHOLE:
        return _WHOLE[word]
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)] + replacement
    if word.endswith("'s") and word[:-2] in _IS_AFTER:
        return word[:-2] + " is"
    return word.replace("'", "")


class _NumberRun:
    """Collects one run of number words and numerals into a digit string."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.group: int | None = None  # the number being built
        self.big = 0  # thousands and millions already counted in the group
        self.last = ""  # unit, teen, tens, hundred or scale

    def flush_group(self) -> None:
        if self.group is not None or self.big:
            self.parts.append(str(self.big + (self.group or 0)))
        self.group, self.big, self.last = None, 0, ""

    def start(self, value: int, kind: str) -> None:
        self.flush_group()
        self.group, self.last = value, kind

    def add(self, word: str) -> None:
        open_after = self.last in ("hundred", "scale")
        if word.isdigit():
            self.flush_group()
            self.parts.append(word)
        elif word in _UNITS:
            if self.group is not None and (
                    open_after or (self.last == "tens" and self.group % 10 == 0)):
                self.group += _UNITS[word]
                self.last = "unit"
            else:
                self.start(_UNITS[word], "unit")
        elif word in _TEENS or word in _TENS:
            value, kind = (_TEENS[word], "teen") if word in _TEENS else (_TENS[word], "tens")
            if self.group is not None and open_after:
                self.group, self.last = self.group + value, kind
            else:
                self.start(value, kind)
        elif word == "hundred":
            if self.group is not None and self.last in ("unit", "teen", "tens") \
                    and self.group < 100:
                self.group *= 100
            else:
                self.start(100, "hundred")
            self.last = "hundred"
        else:  # a scale word
            self.big += (self.group or 1) * _SCALES[word]
            self.group, self.last = 0, "scale"

    def text(self) -> str:
        self.flush_group()
        return "".join(self.parts)


def _numbers(words: Iterable[str]) -> list[str]:
    out: list[str] = []
    run: _NumberRun | None = None
    for word in words:
        if word in _NUMBER_WORDS or word.isdigit():
            run = run or _NumberRun()
            run.add(word)
            continue
        if run is not None:
            out += run.text()
            run = None
        out.append(word)
    if run is not None:
        out += run.text()
    return out


def normalize_text(text: str) -> str:
    """The comparable form of ``text`` (see the module docstring); words joined by spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")  # typographic apostrophes
    text = _BRACKETS.sub(" ", text)
    text = _ORDINAL.sub(_ordinal, text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, f" {word} ")
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub(r"\1 point ", text)
    text = _ABBREVIATION.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _NOT_WORD.sub(" ", _SPACING.sub(" ", text))
    words = " ".join(_expand(w) for w in text.split()).split()
    return " ".join(_numbers(_SPELLINGS.get(w, w) for w in words))


def _join_into(words: Sequence[str], targets: frozenset[str]) -> list[str]:
    """``words`` with each run of 2..5 non-digit words whose concatenation is in
    ``targets`` joined into one (longest run first, left to right)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_JOIN, len(words) - i), 1, -1):
            run = words[i:i + n]
            if not any(w.isdigit() for w in run) and "".join(run) in targets:
                out.append("".join(run))
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return out


def join_spacing(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[
        list[str], list[str]]:
    """Both word lists with spacing differences joined (module docstring, Spacing)."""
    ref = _join_into(reference, frozenset(w for w in hypothesis if not w.isdigit()))
    hyp = _join_into(hypothesis, frozenset(w for w in ref if not w.isdigit()))
    return ref, hyp


@dataclass(frozen=True, slots=True)
class WordErrors:
    """Errors of a hypothesis against a reference, in words."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """(S + D + I) / N; 0 for an empty reference heard as nothing, inf if words were added."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_words


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> WordErrors:
    """Minimum-edit alignment of two word sequences (Levenshtein, unit costs).

    Among alignments of equal cost, the one with the most substitutions is kept
    (then fewer deletions), a fixed rule so that the counts are deterministic.
    """
    # Each cell: (cost, -substitutions, deletions, insertions).
    previous = [(j, 0, 0, j) for j in range(len(hypothesis) + 1)]
    for i, ref_word in enumerate(reference, start=1):
        current = [(i, 0, i, 0)]
        for j, hyp_word in enumerate(hypothesis, start=1):
            c, s, d, n = previous[j - 1]
            diagonal = (c, s, d, n) if ref_word == hyp_word else (c + 1, s - 1, d, n)
            c, s, d, n = previous[j]
            deletion = (c + 1, s, d + 1, n)
            c, s, d, n = current[j - 1]
            insertion = (c + 1, s, d, n + 1)
            current.append(min(diagonal, deletion, insertion))
        previous = current
    _, neg_subs, deletions, insertions = previous[-1]
    return WordErrors(substitutions=-neg_subs, deletions=deletions, insertions=insertions,
                      reference_words=len(reference))


def sum_errors(items: Iterable[WordErrors]) -> WordErrors:
    """Corpus totals: WER over a set is total errors over total reference words."""
    s = d = n = words = 0
    for e in items:
        s, d, n, words = (s + e.substitutions, d + e.deletions, n + e.insertions,
                          words + e.reference_words)
    return WordErrors(substitutions=s, deletions=d, insertions=n, reference_words=words)
