"""Tests of voicebot.nlu.entities: spoken digits, numbers, yes/no and DTMF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.engines.base import EntityValue
from voicebot.nlu.entities import digits_from_dtmf, extract_entities, parse_cardinal

__all__: list[str] = []

ONES = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int, *, use_and: bool = True, hyphen: bool = False) -> str:
    """English words of ``0 <= n < 10**6``: "one thousand two hundred and five"."""

    def below_hundred(k: int) -> str:
        if k < 10:
            return ONES[k]
        if k < 20:
            return TEENS[k - 10]
        tens, unit = divmod(k, 10)
        if not unit:
            return TENS[tens]
        return f"{TENS[tens]}{'-' if hyphen else ' '}{ONES[unit]}"

    def below_thousand(k: int) -> str:
        hundreds, rest = divmod(k, 100)
        if not hundreds:
            return below_hundred(rest)
        head = f"{ONES[hundreds]} hundred"
        if not rest:
            return head
        return f"{head} {'and ' if use_and else ''}{below_hundred(rest)}"

    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    parts = []
    if thousands:
        parts.append(f"{below_thousand(thousands)} thousand")
    if rest:
        joiner = "and " if use_and and thousands and rest < 100 else ""
        parts.append(joiner + below_thousand(rest))
    return " ".join(parts)


def test_number_to_words_helper() -> None:
    assert number_to_words(1205) == "one thousand two hundred and five"
    assert number_to_words(42, hyphen=True) == "forty-two"
    assert number_to_words(100000) == "one hundred thousand"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("four two one seven", {"digits": "4217", "number": 4217}),
        ("4 2 1 7", {"digits": "4217", "number": 4217}),
        ("4217", {"digits": "4217", "number": 4217}),
        ("Four, two, one, seven.", {"digits": "4217", "number": 4217}),
        ("oh four two", {"digits": "042", "number": 42}),
        ("zero zero seven", {"digits": "007", "number": 7}),
        ("double four one seven", {"digits": "4417", "number": 4417}),
        ("triple seven", {"digits": "777", "number": 777}),
        ("double oh seven", {"digits": "007", "number": 7}),
        ("forty two seventeen", {"digits": "4217", "number": 4217}),
        ("forty-two seventeen", {"digits": "4217", "number": 4217}),
        ("nineteen ninety nine", {"digits": "1999", "number": 1999}),
        ("one thousand two hundred and five", {"digits": "1205", "number": 1205}),
        ("twenty one", {"digits": "21", "number": 21}),
        ("a hundred", {"digits": "100", "number": 100}),
        ("twelve hundred", {"digits": "1200", "number": 1200}),
        ("it's 1,250 dollars", {"digits": "1250", "number": 1250}),
        ("1,250,000", {"digits": "1250000", "number": 1250000}),
        ("um four two uh one seven", {"digits": "4217", "number": 4217}),
        ("the one ending in four two one seven", {"digits": "4217", "number": 4217}),
        ("oh, it's nine oh three one", {"digits": "9031", "number": 9031}),
        ("a few hundred", {}),
        ("oh", {}),
        ("", {}),
        ("I lost my card", {}),
        ("\u0663\u0664 \u00b2", {}),
    ],
)
def test_numbers(text: str, expected: dict[str, EntityValue]) -> None:
    got = extract_entities(text)
    got.pop("yes_no", None)
    assert got == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("Yeah.", True),
        ("yep", True),
        ("sure", True),
        ("correct", True),
        ("that's right", True),
        ("please do", True),
        ("go ahead", True),
        ("ok", True),
        ("O.K.", True),
        ("okay", True),
        ("absolutely", True),
        ("yes please", True),
        ("no problem", True),
        ("no", False),
        ("nope", False),
        ("don't", False),
        ("do not block it", False),
        ("please don't", False),
        ("please do not", False),
        ("not now", False),
        ("negative", False),
        ("no thanks", False),
        ("no thank you", False),
        ("that's not right", False),
        ("absolutely not", False),
        ("No, I don\u2019t think so", False),
    ],
)
def test_yes_no(text: str, expected: bool) -> None:
    assert extract_entities(text).get("yes_no") is expected


@pytest.mark.parametrize(
    "text", ["yes no", "no yes", "I'm not sure", "I don't know", "maybe", "hello", ""]
)
def test_yes_no_absent_when_ambiguous_or_missing(text: str) -> None:
    assert "yes_no" not in extract_entities(text)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [("4217#", "4217"), ("42*17", "4217"), ("#123", ""), ("12#34", "12"), ("", ""), ("A1B2", "12")],
)
def test_digits_from_dtmf(keys: str, expected: str) -> None:
    assert digits_from_dtmf(keys) == expected


def test_parse_cardinal_rejects_non_cardinals() -> None:
    assert parse_cardinal(["four", "two"]) is None
    assert parse_cardinal(["forty", "two", "seventeen"]) is None
    assert parse_cardinal(["thousand"]) is None
    assert parse_cardinal(["two", "thousand", "three", "thousand"]) is None
    assert parse_cardinal(["two", "million", "five"]) == 2_000_005


@given(
    n=st.integers(min_value=0, max_value=999_999),
    use_and=st.booleans(),
    hyphen=st.booleans(),
)
def test_number_words_parse_back(n: int, use_and: bool, hyphen: bool) -> None:
    words = number_to_words(n, use_and=use_and, hyphen=hyphen)
    got = extract_entities(words)
    assert got["number"] == n, words
    assert got["digits"] == str(n), words


@given(
    digits=st.text(alphabet="0123456789", min_size=1, max_size=20),
    oh=st.booleans(),
    separator=st.sampled_from([" ", ", ", " um "]),
)
def test_spoken_digit_strings_parse_back(digits: str, oh: bool, separator: str) -> None:
    zero = "oh" if oh and len(digits) > 1 else "zero"
    words = separator.join(zero if d == "0" else ONES[int(d)] for d in digits)
    assert extract_entities(words)["digits"] == digits, words


@given(st.text(max_size=60))
def test_never_crashes(text: str) -> None:
    entities = extract_entities(text)
    assert set(entities) <= {"digits", "number", "yes_no"}
    if "digits" in entities:
        assert set(str(entities["digits"])) <= set("0123456789")
        assert entities["number"] == int(str(entities["digits"]))


def test_runaway_digit_runs_are_not_answers() -> None:
    """A degenerate ASR loop ("three two one one one …", thousands of digits) gives no
    digits and never raises (int() refuses more than 4,300 digits)."""
    assert "digits" not in extract_entities("three two " + "one " * 5000)
    assert "digits" not in extract_entities("7" * 5000)
    assert extract_entities("card " + "one " * 64)["digits"] == "1" * 64
