"""Entity extraction from transcripts: spoken digits, numbers, yes/no (pure Python).

:func:`extract_entities` returns only the keys it found:

``digits`` (str)
    From a *run* of number tokens: numerals ("4217", "4 2 1 7"), digit words
    ("four two one seven"; "oh" and "zero" are 0), "double"/"triple" ("double
    four" is "44"), and number words read as digit groups ("forty two
    seventeen" is "4217").  A run that is one well-formed cardinal ("one
    thousand two hundred and five") gives that number's digits ("1205").
    Fillers ("um", "uh") and "and" between number tokens do not break a run.
    When a text has several runs, the one with the most digits wins (the later
    one on a tie, as corrections come last); a run of a lone "oh" is ignored.
``number`` (int)
    The same run's value: the cardinal when it is one ("twenty one" is 21),
    otherwise the integer of its digits ("4217").
``yes_no`` (bool)
    True or False when the text holds answers of one polarity only ("yes
    please", "no thanks", "go ahead", "do not", "that's not right"); absent
    when it holds none or both ("yes no") or only hedges ("I'm not sure").

:func:`digits_from_dtmf` turns keypad presses into digits.
"""

from __future__ import annotations

import re

from voicebot.types import EntityValue

__all__ = ["digits_from_dtmf", "extract_entities", "parse_cardinal"]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_ZEROS = {"oh", "o"}  # spoken 0 inside digit strings only
_REPEATS = {"double": 2, "triple": 3}
_FILLERS = {"um", "uh", "er", "erm", "ah", "hmm", "uhm", "mm"}
_CONNECTORS = _FILLERS | {"and"}
_MAX_DIGITS = 64  # longer runs (an ASR loop repeating "one one one …") are not answers

_POSITIVE = {
    "yes", "yeah", "yep", "yup", "ya", "sure", "correct", "right", "ok", "okay",
    "absolutely", "definitely", "certainly", "affirmative", "alright",
    "please do", "go ahead", "of course", "all right", "do it", "that's right",
    "that is right", "uh huh", "mm hmm", "no problem", "no worries", "o k",
}  # fmt: skip
_NEGATIVE = {
    "no", "nope", "nah", "negative", "don't", "dont", "wrong", "incorrect",
    "do not", "not now", "not yet", "not really", "no thanks", "no thank you",
    "please don't", "please do not", "not correct", "not right", "not ok",
    "not okay", "isn't right", "is not right", "absolutely not", "definitely not",
    "certainly not", "of course not", "don't think so", "do not think so",
}  # fmt: skip
_NEUTRAL = {
    "not sure", "don't know", "do not know", "dont know", "no idea", "no clue",
    "don't worry", "do not worry",
}  # fmt: skip
_PHRASES = (
    {tuple(p.split()): True for p in _POSITIVE}
    | {tuple(p.split()): False for p in _NEGATIVE}
    | {tuple(p.split()): None for p in _NEUTRAL}
)
_LONGEST_PHRASE = max(len(p) for p in _PHRASES)

_TOKEN_RE = re.compile(r"[0-9]+|[a-z]+(?:'[a-z]+)?")
_THOUSANDS_SEP_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    return _TOKEN_RE.findall(_THOUSANDS_SEP_RE.sub("", text))


def _is_number_token(tokens: list[str], i: int) -> bool:
    token = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if token.isdigit() or token in _UNITS or token in _TEENS or token in _TENS:
        return True
    if token in _ZEROS or token == "hundred" or token in _SCALES:
        return True
    if token in _REPEATS:
        return nxt in _UNITS or nxt in _ZEROS or (nxt.isdigit() and len(nxt) == 1)
    return token == "a" and (nxt == "hundred" or nxt in _SCALES)


def _runs(tokens: list[str]) -> list[list[str]]:
    """Maximal runs of number tokens; connectors inside a run are kept ("and") or dropped."""
    runs: list[list[str]] = []
    current: list[str] = []
    i = 0
    while i < len(tokens):
        starts_ok = bool(current) or not (tokens[i] == "hundred" or tokens[i] in _SCALES)
        if starts_ok and _is_number_token(tokens, i):
            current.append(tokens[i])
        elif current and tokens[i] in _CONNECTORS:
            j = i
            while j < len(tokens) and tokens[j] in _CONNECTORS:
                j += 1
            if j < len(tokens) and _is_number_token(tokens, j):
                current.extend(t for t in tokens[i:j] if t == "and")
                i = j
                continue
            runs.append(current)
            current = []
        elif current:
            runs.append(current)
            current = []
        i += 1
    if current:
        runs.append(current)
    return runs


def _below_thousand(words: list[str], pos: int) -> tuple[int, int] | None:
    """Parse ``[X hundred [and]] [tens [unit] | teen | unit]`` at ``pos``."""

    def two_digit(p: int) -> tuple[int, int] | None:
        if p >= len(words):
            return None
        w = words[p]
        nxt = words[p + 1] if p + 1 < len(words) else ""
        if w in _TENS:
            if nxt in _UNITS and _UNITS[nxt] > 0:
                return _TENS[w] + _UNITS[nxt], p + 2
            return _TENS[w], p + 1
        if w in _TEENS:
            return _TEENS[w], p + 1
        if w in _UNITS and _UNITS[w] > 0:
            return _UNITS[w], p + 1
        if w == "a" and (nxt == "hundred" or nxt in _SCALES):
            return 1, p + 1
        return None

    first = two_digit(pos)
    if first is None:
        return None
    value, pos = first
    if pos < len(words) and words[pos] == "hundred":
        value, pos = value * 100, pos + 1
        after_and = pos + 1 if pos < len(words) and words[pos] == "and" else pos
        rest = two_digit(after_and)
        if rest is not None and rest[0] < 100 and words[after_and] != "a":
            value, pos = value + rest[0], rest[1]
    return value, pos


def parse_cardinal(words: list[str]) -> int | None:
    """The value of ``words`` when they are exactly one English cardinal, else None.

    Accepts "zero", "twenty one", "one thousand two hundred and five", "a
    hundred", "twelve hundred", a lone numeral "4217"; rejects digit strings
    ("four two") and concatenations ("forty two seventeen").
    """
    words = [w for w in words if w not in _FILLERS]
    if len(words) == 1 and (words[0].isdigit() or words[0] == "zero"):
        if len(words[0]) > _MAX_DIGITS:
            return None
        return int(words[0]) if words[0].isdigit() else 0
    total, pos, last_scale = 0, 0, None
    while pos < len(words):
        part = _below_thousand(words, pos)
        if part is None:
            return None
        value, pos = part
        if pos < len(words) and words[pos] in _SCALES:
            scale = _SCALES[words[pos]]
            if last_scale is not None and scale >= last_scale:
                return None
            total, last_scale, pos = total + value * scale, scale, pos + 1
            if pos < len(words) - 1 and words[pos] == "and":
                pos += 1
            continue
        total += value
        return total if pos == len(words) else None
    return total if pos else None


def _digit_groups(run: list[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(run):
        word = run[i]
        nxt = run[i + 1] if i + 1 < len(run) else ""
        if word.isdigit():
            out.append(word)
        elif word in _REPEATS:
            digit = str(_UNITS[nxt]) if nxt in _UNITS else "0" if nxt in _ZEROS else nxt
            out.append(digit * _REPEATS[word])
            i += 1
        elif word in _TENS and nxt in _UNITS and _UNITS[nxt] > 0:
            out.append(str(_TENS[word] + _UNITS[nxt]))
            i += 1
        elif word in _TENS or word in _TEENS:
            out.append(str(_TENS.get(word) or _TEENS[word]))
        elif word in _UNITS:
            out.append(str(_UNITS[word]))
        elif word in _ZEROS:
            out.append("0")
        elif word == "hundred":
            out.append("00")
        elif word in _SCALES:
            out.append("0" * (len(str(_SCALES[word])) - 1))
        elif word == "a":
            out.append("1")
        i += 1
    return "".join(out)


def _yes_no(tokens: list[str]) -> bool | None:
    found: set[bool] = set()
    i = 0
    while i < len(tokens):
        for length in range(min(_LONGEST_PHRASE, len(tokens) - i), 0, -1):
            phrase = tuple(tokens[i : i + length])
            if phrase in _PHRASES:
                polarity = _PHRASES[phrase]
                if polarity is not None:
                    found.add(polarity)
                i += length
                break
        else:
            i += 1
    return found.pop() if len(found) == 1 else None


def extract_entities(text: str) -> dict[str, EntityValue]:
    """``digits``, ``number`` and ``yes_no`` found in ``text`` (see the module docstring)."""
    tokens = _tokens(text)
    entities: dict[str, EntityValue] = {}
    best: tuple[int, str, int] | None = None  # (length, digits, number)
    for run in _runs(tokens):
        if len(run) == 1 and run[0] in _ZEROS:  # a lone "oh" is an interjection
            continue
        cardinal = parse_cardinal(run)
        digits = str(cardinal) if cardinal is not None else _digit_groups(run)
        if not digits:
            continue
        if len(digits) > _MAX_DIGITS:  # no card, PIN or amount is this long: not an answer
            continue
        number = cardinal if cardinal is not None else int(digits)
        if best is None or len(digits) >= best[0]:
            best = (len(digits), digits, number)
    if best is not None:
        entities["digits"] = best[1]
        entities["number"] = best[2]
    answer = _yes_no(tokens)
    if answer is not None:
        entities["yes_no"] = answer
    return entities


def digits_from_dtmf(keys: str) -> str:
    """The digits 0-9 of keypad presses up to the first '#'; '*' and others are ignored."""
    out: list[str] = []
    for key in keys:
        if key == "#":
            break
        if "0" <= key <= "9":
            out.append(key)
    return "".join(out)
