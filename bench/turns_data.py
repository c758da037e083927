"""The turn-taking benchmark's caller turns: 16 kHz mono clips with their labels.

What is said is planned in :mod:`bench.turns_plan`; who says it in
:mod:`bench.turns_voices`.  A clip is 500 ms of silence, the turn, and
:data:`TRAILING_SILENCE_MS` of silence (every policy has time to decide).  Labels,
in ms from the clip's start, found by energy (|sample| > 300) on the built clip:

* ``words``: the stretches of speech between the joins, with their text where known;
* ``pauses``: the mid-turn pauses of a PAUSED turn (a COMPLETE turn has none), each
  exactly as long as planned from the end of the speech before it to the start of the
  speech after it;
* ``speech_end_ms``: where the turn really ends (the last word's end).

How the pauses are made:

* synthetic voices say the PAUSED turn with commas ("four two, one seven"), which gives
  the words before the pause a continuing intonation, and the comma's silence is
  stretched to the pause; when the commas' silences cannot be told from the others
  (they must be the longest by half), the segments are spoken separately instead
  (``join: separate``).  The COMPLETE turn is said in one breath, without commas;
* Allison's digits are joined with 100-250 ms between digits and the pause between
  groups (the COMPLETE string: 100-250 ms everywhere, same spacing otherwise);
* a recorded prompt is cut in the middle of its longest phrase break and the silence
  there stretched to the pause (which words fall on each side is not known).

The set is cached under ``out/turns/<key>/`` (``manifest.json`` + ``clips/*.wav``), the
key a hash of the plan, the seed and the engines' and recordings' identities; a
cached set is used only when every file still has its SHA-256.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from server.client import save_wav
from voicebot.engines.base import Pcm

from .speechdata import ASTERISK_SOUNDS_DIR, asterisk_prompts, read_wav
from .turns_plan import DIGIT_WORDS, Kind, TurnSpec, plan_turns
from .turns_voices import (
    ALLISON,
    ESPEAK,
    PIPER,
    RATE_HZ,
    SYNTHETIC_VOICES,
    asterisk_digit_pcm,
    loud_bounds,
    prompt_cuts,
    quiet_runs,
    recording_pcm,
    synthesize,
    voice_identities,
)

__all__ = ["BUILD_VERSION", "DEFAULT_SEED", "LEAD_SILENCE_MS", "TRAILING_SILENCE_MS",
           "Source", "Span", "TurnClip", "TurnSet", "assemble", "load_turns"]

log = logging.getLogger(__name__)

BUILD_VERSION = 1  # bump when the assembly changes what a plan builds
DEFAULT_SEED = 4217
LEAD_SILENCE_MS = 500
TRAILING_SILENCE_MS = 3000
_DIGIT_GAP_MS = (100, 250)  # between digits of one group, end to start of speech
_COMMA_MIN_MS = 100  # a comma's silence is at least this long ...
_COMMA_MARGIN = 1.5  # ... and this many times the longest other silence


class Source(enum.StrEnum):
    REAL = "REAL"  # recorded human speech
    SYNTHETIC = "SYNTHETIC"  # a text-to-speech voice


@dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    """A labelled stretch of a clip, in ms from its start; ``text``: the words said
    (None: not known, or not speech)."""

    start_ms: float
    end_ms: float
    text: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class TurnClip:
    """One built turn: its spec, its audio (16 kHz) and its labels."""

    spec: TurnSpec
    source: Source
    words: tuple[Span, ...]
    pauses: tuple[Span, ...]
    join: str  # how the audio was put together: one, comma, separate, digits, cut
    pcm: Pcm = field(repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def speech_start_ms(self) -> float:
        return self.words[0].start_ms

    @property
    def speech_end_ms(self) -> float:
        return self.words[-1].end_ms

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) * 1000 / RATE_HZ

    def transcript_at(self, at_ms: float) -> str:
        """The words whose speech has ended by ``at_ms`` (where they are known)."""
        return " ".join(w.text for w in self.words if w.end_ms <= at_ms and w.text)


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnSet:
    """The built set and where it is cached."""

    clips: tuple[TurnClip, ...]
    key: str
    folder: Path
    header: Mapping[str, Any]


def _ms(samples: int) -> float:
    return samples * 1000 / RATE_HZ


def _samples(ms: float) -> int:
    return round(ms * RATE_HZ / 1000)


def _layout(pieces: Sequence[tuple[Pcm, str | None]], gaps_ms: Sequence[int],
            paused: Sequence[bool]) -> tuple[Pcm, tuple[Span, ...], tuple[Span, ...]]:
    """Join ``pieces`` so that ``gaps_ms[i]`` separates the speech of piece i from that
    of piece i + 1 (never less than the silence they already have); the labelled
    pauses are the gaps with ``paused[i]``."""
    parts = [np.zeros(_samples(LEAD_SILENCE_MS), np.int16)]
    bounds = []
    for pcm, _text in pieces:
        found = loud_bounds(pcm)
        if found is None:
            raise ValueError("a piece of a turn has no speech in it")
        bounds.append(found)
    offset = len(parts[0])
    words: list[Span] = []
    for index, ((pcm, text), (start, end)) in enumerate(zip(pieces, bounds, strict=True)):
        if index:
            have = len(pieces[index - 1][0]) - bounds[index - 1][1] + start
            filler = np.zeros(max(0, _samples(gaps_ms[index - 1]) - have), np.int16)
            parts.append(filler)
            offset += len(filler)
        words.append(Span(start_ms=_ms(offset + start), end_ms=_ms(offset + end), text=text))
        parts.append(pcm)
        offset += len(pcm)
    parts.append(np.zeros(_samples(TRAILING_SILENCE_MS), np.int16))
    pauses = tuple(Span(start_ms=a.end_ms, end_ms=b.start_ms)
                   for a, b, labelled in zip(words[:-1], words[1:], paused, strict=True)
                   if labelled)
    return np.concatenate(parts), tuple(words), pauses


def _comma_pieces(pcm: Pcm, segments: Sequence[str]) -> list[tuple[Pcm, str | None]] | None:
    """``pcm`` (the segments said with commas) cut in the middle of the commas'
    silences, or None when those are not clearly the longest silences."""
    runs = sorted(quiet_runs(pcm, min_samples=1), key=lambda r: r[0] - r[1])
    wanted = len(segments) - 1
    if len(runs) < wanted:
        return None
    commas, rest = sorted(runs[:wanted]), runs[wanted:]
    shortest = min(b - a for a, b in commas)
    longest_other = max((b - a for a, b in rest), default=0)
    if shortest < _samples(_COMMA_MIN_MS) or shortest < _COMMA_MARGIN * longest_other:
        return None
    cuts = [0, *((a + b) // 2 for a, b in commas), len(pcm)]
    spans = itertools.pairwise(cuts)
    return [(pcm[a:b], text) for (a, b), text in zip(spans, segments, strict=True)]


def _synthetic_texts(spec: TurnSpec) -> list[str]:
    if spec.kind is Kind.COMPLETE:
        return [spec.text]
    return [", ".join(spec.segments), *spec.segments]


def assemble(spec: TurnSpec, *, seed: int, speech: Mapping[str, Pcm]) -> TurnClip:
    """Build ``spec``'s clip.  ``speech``: each text's 16 kHz audio in its voice, for
    a synthetic voice (the texts :func:`load_turns` asks for)."""
    pieces: list[tuple[Pcm, str | None]]
    paused = spec.kind is Kind.PAUSED
    if spec.voice in SYNTHETIC_VOICES:
        found = _comma_pieces(speech[", ".join(spec.segments)], spec.segments) \
            if paused else None
        if not paused:
            pieces, join = [(speech[spec.text], spec.text)], "one"
        elif found is not None:
            pieces, join = found, "comma"
        else:
            pieces, join = [(speech[s], s) for s in spec.segments], "separate"
        gaps, labelled = list(spec.pauses_ms), [True] * len(spec.pauses_ms)
    elif spec.prompt:
        pcm = recording_pcm(ASTERISK_SOUNDS_DIR / f"{spec.prompt}.wav")
        cut = spec.cut_sample
        pieces = [(pcm, spec.text)] if cut is None else [(pcm[:cut], None), (pcm[cut:], None)]
        gaps, labelled, join = list(spec.pauses_ms), [True] * len(spec.pauses_ms), \
            "one" if cut is None else "cut"
    else:  # Allison's digits
        rng = random.Random(f"{seed}:{spec.id[:-2]}")  # the same spacing in both versions
        pieces, gaps, labelled, join = [], [], [], "digits"
        groups = list(itertools.accumulate(len(s) for s in spec.segments))[:-1]
        for digit_index, digit in enumerate(spec.digits):
            pieces.append((asterisk_digit_pcm(digit), DIGIT_WORDS[int(digit)]))
            if digit_index + 1 < len(spec.digits):
                gaps.append(rng.randint(*_DIGIT_GAP_MS))
                labelled.append(False)
        for pause_index, position in enumerate(groups):
            if paused:
                gaps[position - 1], labelled[position - 1] = spec.pauses_ms[pause_index], True
    pcm, words, pauses = _layout(pieces, gaps, labelled)
    source = Source.REAL if spec.voice == ALLISON else Source.SYNTHETIC
    return TurnClip(spec=spec, source=source, words=words, pauses=pauses, join=join, pcm=pcm)


# ---------------------------------------------------------------------- the cache


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _clip_entry(clip: TurnClip, file_name: str, digest: str) -> dict[str, Any]:
    return {"spec": dataclasses.asdict(clip.spec), "source": clip.source.value,
            "join": clip.join, "words": [dataclasses.asdict(w) for w in clip.words],
            "pauses": [dataclasses.asdict(p) for p in clip.pauses],
            "file": file_name, "sha256": digest}


def _clip_from(entry: Mapping[str, Any], pcm: Pcm) -> TurnClip:
    raw = dict(entry["spec"])
    spec = TurnSpec(**{**raw, "kind": Kind(raw["kind"]), "segments": tuple(raw["segments"]),
                       "pauses_ms": tuple(raw["pauses_ms"])})
    return TurnClip(spec=spec, source=Source(entry["source"]), join=entry["join"],
                    words=tuple(Span(**w) for w in entry["words"]),
                    pauses=tuple(Span(**p) for p in entry["pauses"]), pcm=pcm)


def _recordings(specs: Sequence[TurnSpec]) -> list[str]:
    return sorted({f"digits/{d}" for s in specs if s.voice == ALLISON for d in s.digits}
                  | {s.prompt for s in specs if s.prompt})


def _read_cached(folder: Path, header: Mapping[str, Any]) -> list[TurnClip] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("header") != header:
        return None
    clips = []
    for entry in manifest.get("clips", []):
        path = folder / entry["file"]
        if not path.is_file() or _sha256(path.read_bytes()) != entry["sha256"]:
            log.info("%s changed: building the set again", path)
            return None
        pcm, _rate = read_wav(path)
        clips.append(_clip_from(entry, pcm))
    return clips


def load_turns(cache_dir: Path, *, models_dir: Path, manifest: Path | None = None,
               seed: int = DEFAULT_SEED, voices: Sequence[str] = (ESPEAK, PIPER, ALLISON),
               rebuild: bool = False) -> TurnSet:
    """The set for ``seed`` and ``voices``, from ``cache_dir`` when it holds it intact,
    else built (synthesis in fresh processes, see :mod:`bench.turns_voices`)."""
    cuts = prompt_cuts(asterisk_prompts()) if ALLISON in voices else []
    specs = plan_turns(seed=seed, voices=voices, prompts=cuts)
    header = {"build_version": BUILD_VERSION, "seed": seed, "voices": list(voices),
              "rate_hz": RATE_HZ, "engines": voice_identities(
                  voices, recordings=_recordings(specs), models_dir=models_dir),
              "plan": [dataclasses.asdict(s) for s in specs]}
    header = json.loads(json.dumps(header))  # tuples as lists, as read back
    key = _sha256(json.dumps(header, sort_keys=True).encode())[:16]
    folder = cache_dir / key
    cached = None if rebuild else _read_cached(folder, header)
    if cached is not None:
        log.info("turn set %s: %d clips from %s", key, len(cached), folder)
        return TurnSet(clips=tuple(cached), key=key, folder=folder, header=header)
    speech: dict[str, dict[str, Pcm]] = {}
    for voice in (v for v in voices if v in SYNTHETIC_VOICES):
        texts = [t for s in specs if s.voice == voice for t in _synthetic_texts(s)]
        speech[voice] = synthesize(voice, texts, models_dir=models_dir, manifest=manifest)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    clips, entries = [], []
    for spec in specs:
        clip = assemble(spec, seed=seed, speech=speech.get(spec.voice, {}))
        name = f"clips/{spec.id}.wav"
        save_wav(folder / name, clip.pcm, RATE_HZ)
        entries.append(_clip_entry(clip, name, _sha256((folder / name).read_bytes())))
        clips.append(clip)
    (folder / "manifest.json").write_text(
        json.dumps({"header": header, "clips": entries}, indent=1) + "\n")
    log.info("turn set %s: built %d clips into %s", key, len(clips), folder)
    return TurnSet(clips=tuple(clips), key=key, folder=folder, header=header)
