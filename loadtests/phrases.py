"""The callers' phrasebook (caller audio with what each phrase means) and call scripts.

A scenario's caller audio is generated once by ``python -m bench caller-audio``
(:mod:`bench.caller_audio`) from the phrases :func:`loadtests.slot_values.phrase_plan`
lists: each phrase in 16 kHz PCM16 WAV and 8 kHz μ-law, with the intent or slot value
it means and where its speech starts and ends, in ``manifest.json``.  The demo
scenario's is committed in ``loadtests/audio``; any other scenario's goes to
``out/caller-audio/<name>`` (:func:`audio_dir`).  A :class:`Script` is one call, a
sequence of :class:`Step`; :mod:`loadtests.scripts` makes them by walking the
scenario's dialog.
"""

from __future__ import annotations

import json
import random
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.codecs import AudioEncoding, decode, encode
from voicebot.audio.resample import resample

__all__ = ["AUDIO_DIR", "CALLER_AUDIO_DIR", "DEFAULT_SCENARIO", "SCENARIOS_DIR", "Phrase",
           "PhraseBook", "Script", "Step", "audio_dir", "make_script", "scenario_file"]

_REPO = Path(__file__).resolve().parent.parent
AUDIO_DIR = _REPO / "loadtests" / "audio"
"""The demo scenario's caller audio (committed)."""
CALLER_AUDIO_DIR = _REPO / "out" / "caller-audio"
"""Every other scenario's, one folder each (generated, git-ignored)."""
SCENARIOS_DIR = _REPO / "scenarios"
DEFAULT_SCENARIO = "bank_card"
FRAME_MS = 20


def scenario_file(name_or_path: str | Path) -> Path:
    """A scenario file given as a path, or by name from ``scenarios/``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = SCENARIOS_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    raise FileNotFoundError(f"no scenario {str(name_or_path)!r}: give a scenario file or the "
                            f"name of one in {SCENARIOS_DIR}")


def audio_dir(scenario_name: str) -> Path:
    """Where a scenario's caller audio is: ``loadtests/audio`` for the demo,
    ``out/caller-audio/<name>`` for the others."""
    return AUDIO_DIR if scenario_name == DEFAULT_SCENARIO else CALLER_AUDIO_DIR / scenario_name


@dataclass(frozen=True, slots=True)
class Phrase:
    id: str
    text: str
    intent: str | None
    slot_type: str | None
    value: str | int | bool | None  # a slot answer: digits, a number, yes/no, text
    speech_start_ms: int
    speech_end_ms: int
    wav: Path
    ulaw: Path

    def frames(self, encoding: AudioEncoding, rate_hz: int) -> list[bytes]:
        """The phrase as 20 ms frames in ``encoding`` at ``rate_hz`` (last one padded)."""
        return _frames(self, encoding, rate_hz)


@cache
def _frames(phrase: Phrase, encoding: AudioEncoding, rate_hz: int) -> list[bytes]:
    if rate_hz == 8000:
        pcm = decode(phrase.ulaw.read_bytes(), AudioEncoding.MULAW)
    else:
        with wave.open(str(phrase.wav), "rb") as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
            pcm = pcm if wav.getframerate() == rate_hz else resample(
                pcm, in_rate_hz=wav.getframerate(), out_rate_hz=rate_hz)
    samples = rate_hz * FRAME_MS // 1000
    padded = np.zeros(-(-len(pcm) // samples) * samples, dtype=np.int16)
    padded[: len(pcm)] = pcm
    data = encode(padded, encoding)
    size = len(data) // (len(padded) // samples)
    return [data[i : i + size] for i in range(0, len(data), size)]


class PhraseBook:
    """Phrases by what they mean, read from a ``manifest.json`` folder; ``scenario``: the
    scenario they were made for (None: not said)."""

    def __init__(self, phrases: list[Phrase], *, scenario: str | None = None) -> None:
        if not phrases:
            raise ValueError("the phrasebook is empty")
        self.phrases, self.scenario = phrases, scenario

    @classmethod
    def load(cls, folder: Path = AUDIO_DIR) -> PhraseBook:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
        return cls([
            Phrase(id=p["id"], text=p["text"], intent=p.get("intent"),
                   slot_type=p.get("slot_type"), value=p.get("value"),
                   speech_start_ms=p["speech_start_ms"], speech_end_ms=p["speech_end_ms"],
                   wav=folder / p["files"]["pcm16-16000"], ulaw=folder / p["files"]["mulaw-8000"])
            for p in manifest["phrases"]
        ], scenario=manifest.get("scenario"))

    def saying(self, intent: str) -> list[Phrase]:
        return [p for p in self.phrases if p.intent == intent]

    def answering(self, slot_type: str,
                  value: str | int | bool | None = None) -> list[Phrase]:
        return [p for p in self.phrases if p.slot_type == slot_type
                and (value is None or p.value == value)]


@dataclass(frozen=True, slots=True)
class Step:
    """One caller turn: a phrase, or keys on the keypad (``dtmf``)."""

    phrase: Phrase | None = None
    dtmf: str | None = None
    barge_in: bool = False  # say it over the bot's reply instead of after it

    @property
    def label(self) -> str:
        return f"dtmf:{self.dtmf}" if self.phrase is None else self.phrase.id

    @property
    def expected_intent(self) -> str | None:
        return self.phrase.intent if self.phrase is not None else None


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    steps: tuple[Step, ...]


def make_script(book: PhraseBook, rng: random.Random, *, barge_in: bool,
                keypad_digits: bool, scenario: Path | None = None) -> Script:
    """A random call of ``scenario`` (default: the demo) spoken from ``book``: see
    :class:`loadtests.scripts.CallPlanner`, which a caller placing many calls keeps."""
    from loadtests.scripts import CallPlanner  # it imports this module
    from voicebot.dialog.loader import load_scenario

    planner = CallPlanner(load_scenario(scenario or scenario_file(DEFAULT_SCENARIO)), book)
    return planner.script(rng, barge_in=barge_in, keypad_digits=keypad_digits)
