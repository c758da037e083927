"""What the turn-taking benchmark's callers say: the turns, before any audio exists.

Every turn comes twice, as a PAUSED turn (the caller stops mid-turn and means to go
on) and as a COMPLETE one (the same words without the pause), in each voice that can
say it.  Kinds of utterance, each with what the dialog would be waiting for:

* ``digits-2+2``, ``digits-4+4``, ``digits-3+3+4``: digit strings read in groups
  ("four two … one seven", card and phone number style); expectation ``digits`` of
  the string's length;
* ``card-intro``: "my card number is … four two one seven" (``digits``, 4);
* ``hesitation``: "I want to … check my balance" (``free``);
* ``list``: "my balance … and my last payment", some with two pauses (``free``);
* ``yes-no``: short answers, complete only (``yes_no``);
* ``prompt``: Allison's recorded Asterisk prompts (REAL), complete, and cut at their
  longest phrase break for the paused version (``free``).

Pause lengths cycle through :data:`PAUSES_MS`.  The digit strings and the recorded
digits' spacing come from ``random.Random`` seeded with the set's seed and the turn's
id, so adding a turn never changes another.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .turns_voices import ALLISON, SYNTHETIC_VOICES, PromptCut

__all__ = [
    "DIGIT_WORDS",
    "PAUSES_MS",
    "Kind",
    "TurnSpec",
    "plan_turns",
]

PAUSES_MS = (300, 500, 700, 900, 1200)
DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_DIGIT_GROUPS = {"digits-2+2": (2, 2), "digits-4+4": (4, 4), "digits-3+3+4": (3, 3, 4)}
_DIGIT_COUNTS = {"digits-2+2": 10, "digits-4+4": 10, "digits-3+3+4": 5}
_CARD_INTROS = 10
_HESITATIONS = (
    ("I want to", "check my balance"), ("I'd like to", "report a lost card"),
    ("can you", "tell me my balance"), ("I need to", "block my card"),
    ("I was wondering if", "I could change my address"), ("I think", "my card was stolen"),
    ("could you", "send me a new card"), ("I would like to", "speak to an agent"),
    ("the last payment", "was not mine"), ("I want to", "pay my bill"),
)  # fmt: skip
_LISTS = (
    ("my balance", "and my last payment"), ("checking", "savings", "and my credit card"),
    ("my name", "my address", "and my phone number"), ("the card", "and the pin"),
    ("yesterday", "and the day before"),
)  # fmt: skip
_YES_NO = ("yes", "no", "yes please", "no thanks", "yes that's right", "no that's wrong")
_COMPLETE_PROMPTS = 20  # recorded prompts without a phrase break, besides those with one


class Kind(enum.StrEnum):
    PAUSED = "paused"  # a mid-turn pause the caller means to continue after
    COMPLETE = "complete"  # no mid-turn pause: the turn ends with the speech


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnSpec:
    """One turn to build.  ``segments`` are the words between pauses (one for a
    COMPLETE turn, which says them all without pausing); ``pauses_ms`` the pauses
    between them.  ``digits`` is the digit string of a digits turn; ``prompt`` the
    recorded prompt's name and ``cut_sample`` where its pause goes."""

    id: str
    kind: Kind
    category: str
    voice: str
    segments: tuple[str, ...]
    pauses_ms: tuple[int, ...] = ()
    expect: str = "free"  # what the dialog waits for: free, yes_no, digits
    digits_length: int | None = None
    digits: str = ""
    prompt: str = ""
    cut_sample: int | None = None

    @property
    def text(self) -> str:
        return " ".join(self.segments)


def _spoken(digits: str) -> str:
    return " ".join(DIGIT_WORDS[int(d)] for d in digits)


def _pauses(index: int, count: int) -> tuple[int, ...]:
    return tuple(PAUSES_MS[(index + 2 * k) % len(PAUSES_MS)] for k in range(count))


def _pair(turn_id: str, category: str, voice: str, segments: Sequence[str], index: int, *,
          expect: str = "free", digits: str = "") -> list[TurnSpec]:
    """The PAUSED and COMPLETE versions of one utterance."""
    paused = TurnSpec(id=f"{turn_id}-p", kind=Kind.PAUSED, category=category, voice=voice,
                      segments=tuple(segments), pauses_ms=_pauses(index, len(segments) - 1),
                      expect=expect, digits=digits,
                      digits_length=len(digits) if digits else None)
    return [paused, replace(paused, id=f"{turn_id}-c", kind=Kind.COMPLETE,
                            segments=(" ".join(segments),), pauses_ms=())]


def _digit_turns(seed: int, voices: Sequence[str]) -> list[TurnSpec]:
    specs: list[TurnSpec] = []
    for category, groups in _DIGIT_GROUPS.items():
        for index in range(_DIGIT_COUNTS[category]):
            rng = random.Random(f"{seed}:{category}:{index}")
            digits = "".join(str(rng.randrange(10)) for _ in range(sum(groups)))
            cuts = [sum(groups[:k]) for k in range(len(groups) + 1)]
            parts = [digits[a:b] for a, b in itertools.pairwise(cuts)]
            for voice in voices:
                segments = parts if voice == ALLISON else [_spoken(p) for p in parts]
                specs += _pair(f"{voice}-{category}-{index:02d}", category, voice, segments,
                               index, expect="digits", digits=digits)
    return specs


def _phrase_turns(seed: int, voices: Sequence[str]) -> list[TurnSpec]:
    specs: list[TurnSpec] = []
    for voice in (v for v in voices if v in SYNTHETIC_VOICES):
        for index in range(_CARD_INTROS):
            rng = random.Random(f"{seed}:card-intro:{index}")
            digits = "".join(str(rng.randrange(10)) for _ in range(4))
            specs += _pair(f"{voice}-card-intro-{index:02d}", "card-intro", voice,
                           ["my card number is", _spoken(digits)], index,
                           expect="digits", digits=digits)
        for category, phrases in (("hesitation", _HESITATIONS), ("list", _LISTS)):
            for index, segments in enumerate(phrases):
                specs += _pair(f"{voice}-{category}-{index:02d}", category, voice, segments,
                               index)
        specs += [TurnSpec(id=f"{voice}-yes-no-{index:02d}-c", kind=Kind.COMPLETE,
                           category="yes-no", voice=voice, segments=(text,), expect="yes_no")
                  for index, text in enumerate(_YES_NO)]
    return specs


def _prompt_turns(cuts: Sequence[PromptCut]) -> list[TurnSpec]:
    with_break = [c for c in cuts if c.cut_sample is not None]
    without = [c for c in cuts if c.cut_sample is None]
    step = max(1, len(without) // _COMPLETE_PROMPTS)
    chosen = sorted([*with_break, *without[::step][:_COMPLETE_PROMPTS]],
                    key=lambda c: c.recording.id)
    specs: list[TurnSpec] = []
    for index, cut in enumerate(chosen):
        name = cut.recording.id
        turn_id = f"{ALLISON}-prompt-{name.replace('/', '-')}"
        text = " ".join(cut.recording.text.split())
        specs.append(TurnSpec(id=f"{turn_id}-c", kind=Kind.COMPLETE, category="prompt",
                              voice=ALLISON, segments=(text,), prompt=name))
        if cut.cut_sample is not None:
            specs.append(TurnSpec(id=f"{turn_id}-p", kind=Kind.PAUSED, category="prompt",
                                  voice=ALLISON, segments=(text,), pauses_ms=_pauses(index, 1),
                                  prompt=name, cut_sample=cut.cut_sample))
    return specs


def plan_turns(*, seed: int, voices: Sequence[str],
               prompts: Sequence[PromptCut] = ()) -> tuple[TurnSpec, ...]:
    """Every turn of the set, sorted by id.  ``prompts``: the recorded prompts
    (:func:`bench.turns_voices.prompt_cuts`), used when ``voices`` has Allison."""
    specs = _digit_turns(seed, voices) + _phrase_turns(seed, voices)
    if ALLISON in voices:
        specs += _prompt_turns(prompts)
    return tuple(sorted(specs, key=lambda s: s.id))
