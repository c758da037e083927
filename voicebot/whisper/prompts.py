"""Decoder prompts for Whisper: a scenario's vocabulary, or a slot's answer style.

Whisper reads a prompt (tokens after ``<|startofprev|>``, what faster-whisper
sends as ``hotwords``) as the text that came before: it biases spelling,
vocabulary and style, and every prompt token costs decoder prefill.

* :func:`domain_prompt`: a scenario's most frequent content words (function
  words, numbers and one-letter words dropped; ties in order of first use)
  written as a sentence ("Card, balance, block.") within a token cap.  Good
  for names and jargon; bad for digit answers (a bag of "four two seven" words
  makes Whisper spell digits out and, measured, loop on them), so slot domains
  use a style prompt instead.
* :data:`SLOT_PROMPTS`: a short example answer per slot type, written the way
  :func:`voicebot.nlu.entities.extract_entities` reads best ("4 2 1 7").
  :func:`slot_type` finds the slot type in an ASR domain name; scenarios name
  slot domains ``"<scenario>/<slot type>"`` (``Scenario.asr_domain``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

__all__ = [
    "NUMBER_WORDS",
    "SLOT_PROMPTS",
    "STOP_WORDS",
    "content_words",
    "domain_prompt",
    "prompt_for_domain",
    "slot_type",
]

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves yes yeah ok okay please thanks thank hi hello um uh
    i'd i'll i'm i've you're it's that's don't can't won't
    """.split()
)
"""English function words and fillers that make poor prompt words."""

NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve twenty thirty "
    "forty fifty sixty seventy eighty ninety hundred thousand double triple".split()
)
"""Spoken numbers: left to the slot prompts, which ask for numerals."""

SLOT_PROMPTS: Mapping[str, str] = MappingProxyType(
    {
        "digits": "Card number: 4 2 1 7.",
        "number": "Amount: 21, 100, 3500.",
    }
)
"""Default prompt per slot type (no entry: the slot domain gets its vocabulary prompt)."""

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def slot_type(domain: str) -> str | None:
    """The slot type of ASR domain ``"<scenario>/<slot type>"``; ``None`` for a plain name."""
    scenario, sep, kind = domain.rpartition("/")
    return kind if sep and scenario and kind else None


def content_words(phrases: Sequence[str]) -> list[str]:
    """Content words of ``phrases``, most frequent first (ties: first use first)."""
    counts: Counter[str] = Counter()
    first_use: dict[str, int] = {}
    for phrase in phrases:
        for word in _WORD.findall(phrase.lower()):
            if len(word) < 2 or word in STOP_WORDS or word in NUMBER_WORDS:
                continue
            counts[word] += 1
            first_use.setdefault(word, len(first_use))
    return sorted(counts, key=lambda w: (-counts[w], first_use[w]))


def domain_prompt(
    phrases: Sequence[str],
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 30,
) -> str | None:
    """Content words of ``phrases`` as a sentence ("Card, balance, agent.") of at most
    ``max_tokens`` tokens.

    Written like a sentence, not a bag of words: Whisper copies a prompt's style,
    and a bare lower-case list made it drop punctuation and case, and repeat
    itself ("thank you thank you"), measured on recorded prompts.
    ``count_tokens`` gives the prompt's length in model tokens (it is encoded
    with a leading space, as faster-whisper sends hotwords).  Returns ``None``
    when no word fits or ``max_tokens`` is 0.
    """
    chosen: list[str] = []
    used = 0
    for word in content_words(phrases):
        if used >= max_tokens:
            break
        tokens = count_tokens(" " + _sentence([*chosen, word]))
        if tokens <= max_tokens:
            chosen.append(word)
            used = tokens
    return _sentence(chosen) if chosen else None


def _sentence(words: Sequence[str]) -> str:
    text = ", ".join(words)
    return text[:1].upper() + text[1:] + "."


def prompt_for_domain(
    name: str,
    phrases: Sequence[str],
    *,
    slot_prompts: Mapping[str, str],
    max_tokens: int,
    count_tokens: Callable[[str], int],
) -> str | None:
    """The prompt of ASR domain ``name``: its slot type's prompt (``slot_prompts``), else
    its phrases' content words (:func:`domain_prompt`, none when ``max_tokens`` is 0)."""
    kind = slot_type(name)
    if kind is not None and kind in slot_prompts:
        return slot_prompts[kind].strip() or None
    if not max_tokens:
        return None
    return domain_prompt(phrases, count_tokens=count_tokens, max_tokens=max_tokens)
