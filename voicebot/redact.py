"""Masking of a call's sensitive values (PII such as card digits), pure.

A scenario marks a slot ``sensitive: true``.  Within a call, :class:`Redactor`
knows the sensitive values given so far and masks them wherever the call's text
leaves the dialog: turn logs, call records, metrics, end-of-call webhooks.  The
dialog itself (its lookups, the scenario's own webhook actions) keeps the values.

Two masks:

* :meth:`Redactor.text` -- every known sensitive value, written as digits with or
  without separators (``5314``, ``5 3 1 4``, ``5-3-1-4``) or as spoken digit words
  (``five three one four``, ``oh`` for zero), becomes :data:`MASK`; other numbers
  (a balance) stay;
* :func:`mask_numbers` -- every run of digits or digit words becomes :data:`MASK`:
  for what a caller said or keyed while a sensitive slot was asked for, before its
  value is known (a misheard card number is still a card number).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "Redactor", "mask_numbers"]

MASK = "****"

_DIGIT_WORDS = {
    "0": ("zero", "oh", "o"), "1": ("one",), "2": ("two", "to", "too"), "3": ("three",),
    "4": ("four", "for"), "5": ("five",), "6": ("six",), "7": ("seven",), "8": ("eight",),
    "9": ("nine",),
}
_NUMBER_WORDS = sorted(
    {w for words in _DIGIT_WORDS.values() for w in words if len(w) > 2}
    | {"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
       "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
       "eighty", "ninety", "hundred", "thousand", "double", "triple"},
    key=len, reverse=True)
_SEP = r"[\s,.\-/]*"
_ANY_NUMBER = re.compile(
    r"(?:\d|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b)"
    r"(?:" + _SEP + r"(?:\d|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b))*",
    re.IGNORECASE)


def mask_numbers(text: str) -> str:
    """``text`` with every run of digits or number words masked."""
    return _ANY_NUMBER.sub(MASK, text)


def _value_pattern(digits: str) -> str:
    """A pattern for ``digits`` written with any separators, or as digit words."""
    parts = []
    for digit in digits:
        words = "|".join(_DIGIT_WORDS[digit])
        parts.append(f"(?:{digit}|\\b(?:{words})\\b)")
    return r"(?<![0-9])" + _SEP.join(parts) + r"(?![0-9])"


class Redactor:
    """The sensitive values of one call, and masking with them."""

    __slots__ = ("_pattern", "_values")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: object) -> None:
        """Remember a sensitive value (a slot's).  Its digits are what is masked; a
        value without digits is masked as written."""
        text = str(value).strip()
        if not text or text in self._values:
            return
        self._values.add(text)
        patterns = []
        for known in sorted(self._values, key=len, reverse=True):
            digits = re.sub(r"\D", "", known)
            patterns.append(_value_pattern(digits) if digits else re.escape(known))
        self._pattern = re.compile("|".join(patterns), re.IGNORECASE)

    def add_slots(self, slots: Mapping[str, object], sensitive: Iterable[str]) -> None:
        """Remember the values of the ``sensitive`` slots present in ``slots``."""
        for name in sensitive:
            if name in slots:
                self.add(slots[name])

    @property
    def active(self) -> bool:
        """Whether any value is known (cheap check before masking)."""
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every known sensitive value masked."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def slots(self, slots: Mapping[str, object], sensitive: Iterable[str]) -> dict[str, str]:
        """The slots as text, the sensitive ones masked, the others through :meth:`text`."""
        hidden = set(sensitive)
        return {name: MASK if name in hidden else self.text(str(value))
                for name, value in slots.items()}
