"""The turn-taking benchmark's speech: two synthetic voices and Debian's recorded one.

* ``espeak-ng`` (SYNTHETIC): libespeak-ng at 165 wpm, as the load tests' callers;
* ``piper-joe`` (SYNTHETIC): Piper ``en_US-joe-medium`` (``voicebot models pull
  en_US-joe-medium``, pulled by ``make models``), its own noise settings;
* ``asterisk-allison`` (REAL): Allison Smith's recordings in Debian's
  ``asterisk-core-sounds-en-wav`` (8 kHz, resampled to 16 kHz with
  :func:`voicebot.audio.resample.resample`): one file per digit, and whole prompts.

Synthesis is deterministic only in a fresh process with a fixed order: espeak-ng's
output depends on what it said before in the same process, and Piper's VITS draws
noise from onnxruntime's generator (seeded here with :func:`onnxruntime.set_seed`
before the voice's session is made).  :func:`synthesize` therefore speaks each voice's
texts, sorted, in a fresh process of its own (``python -m bench.turns_voices``).

Pauses are found by energy: a sample counts as speech above :data:`LOUD` (as
:mod:`bench.caller_audio` does); :func:`quiet_runs` lists the stretches under it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm
from voicebot.errors import VoicebotError

from .speechdata import ASTERISK_SOUNDS_DIR, Recording, asterisk_digit, read_wav, trim_silence

__all__ = [
    "ALLISON",
    "ESPEAK",
    "ESPEAK_WPM",
    "LOUD",
    "PIPER",
    "PIPER_VOICE",
    "RATE_HZ",
    "SYNTHETIC_VOICES",
    "PromptCut",
    "asterisk_digit_pcm",
    "loud_bounds",
    "prompt_cuts",
    "quiet_runs",
    "recording_pcm",
    "synthesize",
    "voice_identities",
]

log = logging.getLogger(__name__)

RATE_HZ = 16_000
LOUD = 300  # |sample| above this is speech (caller_audio's rule)
ESPEAK = "espeak-ng"
PIPER = "piper-joe"
ALLISON = "asterisk-allison"
SYNTHETIC_VOICES = (ESPEAK, PIPER)
ESPEAK_WPM = 165
PIPER_VOICE = "en_US-joe-medium"
_ORT_SEED = 4217
_REPO_ROOT = Path(__file__).resolve().parent.parent
_MIN_SPEECH_SIDE_MS = 500  # a prompt is cut only with this much speech on each side
_MIN_CUT_GAP_MS = 120  # ... at a quiet run at least this long (a phrase break, not a stop)
_PROMPT_TEXT = re.compile(r"^[A-Z][^.?!;:()\[\]\"]*[a-z][.?!]$")  # one plain sentence


def quiet_runs(pcm: Pcm, *, min_samples: int) -> list[tuple[int, int]]:
    """The stretches ``[start, end)`` of at least ``min_samples`` with no loud sample,
    strictly between the first and the last loud sample."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD)
    if len(loud) < 2:
        return []
    gaps = np.flatnonzero(np.diff(loud) - 1 >= min_samples)
    return [(int(loud[i]) + 1, int(loud[i + 1])) for i in gaps]


def loud_bounds(pcm: Pcm) -> tuple[int, int] | None:
    """``[first loud sample, last loud sample + 1)``, None when nothing is loud."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else None


def recording_pcm(path: Path) -> Pcm:
    """A recording at 16 kHz (the project's resampler), silence trimmed to 30 ms."""
    pcm, rate_hz = read_wav(path)
    wide = resample(pcm, in_rate_hz=rate_hz, out_rate_hz=RATE_HZ) if rate_hz != RATE_HZ else pcm
    return trim_silence(wide, RATE_HZ, threshold=LOUD)


def asterisk_digit_pcm(digit: str, *, sounds_dir: Path = ASTERISK_SOUNDS_DIR) -> Pcm:
    """Allison saying one digit, 16 kHz, trimmed."""
    return recording_pcm(asterisk_digit(digit, sounds_dir=sounds_dir))


@dataclass(frozen=True, kw_only=True, slots=True)
class PromptCut:
    """A recorded prompt that is one plain sentence, and where it may be cut in two:
    the middle of its longest phrase break (None: it has none to cut at)."""

    recording: Recording
    cut_sample: int | None
    natural_gap_ms: int


def prompt_cuts(recordings: Sequence[Recording], *, min_words: int = 4,
                max_words: int = 14) -> list[PromptCut]:
    """The prompts usable as complete turns (one sentence of ``min_words``-``max_words``
    words, no bracketed notes), each with its cut point if it has a phrase break: a quiet
    run of at least 120 ms with 500 ms of speech on either side (shorter quiet runs are
    as often the closure of a stop consonant as a word boundary)."""
    found: list[PromptCut] = []
    side = RATE_HZ * _MIN_SPEECH_SIDE_MS // 1000
    for recording in recordings:
        text = " ".join(recording.text.split())
        if not _PROMPT_TEXT.match(text) or not min_words <= len(text.split()) <= max_words:
            continue
        pcm = recording_pcm(recording.path)
        bounds = loud_bounds(pcm)
        if bounds is None:
            continue
        runs = [(a, b) for a, b in quiet_runs(pcm, min_samples=RATE_HZ * _MIN_CUT_GAP_MS // 1000)
                if a - bounds[0] >= side and bounds[1] - b >= side]
        if not runs:
            found.append(PromptCut(recording=recording, cut_sample=None, natural_gap_ms=0))
            continue
        start, end = max(runs, key=lambda run: (run[1] - run[0], -run[0]))
        found.append(PromptCut(recording=recording, cut_sample=(start + end) // 2,
                               natural_gap_ms=(end - start) * 1000 // RATE_HZ))
    return found


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def voice_identities(voices: Sequence[str], *, recordings: Sequence[str],
                     models_dir: Path) -> dict[str, Any]:
    """What the voices' audio depends on besides the texts: the engines' versions, the
    Piper voice's config and size, the SHA-256 of the ``recordings`` used (names of
    Asterisk sounds without ``.wav``)."""
    ids: dict[str, Any] = {}
    if ESPEAK in voices:
        ids[ESPEAK] = _version("espeakng-loader")
    if PIPER in voices:
        model = models_dir / PIPER_VOICE / f"{PIPER_VOICE}.onnx"
        ids[PIPER] = {"piper-tts": _version("piper-tts"), "onnxruntime": _version("onnxruntime"),
                      "config": _sha256(Path(f"{model}.json")),
                      "bytes": model.stat().st_size if model.is_file() else 0}
    if ALLISON in voices:
        ids[ALLISON] = {name: _sha256(ASTERISK_SOUNDS_DIR / f"{name}.wav") for name in recordings}
    return ids


def _speak_all(voice: str, texts: Sequence[str], models_dir: Path,
               manifest: Path | None) -> list[Pcm]:
    """In the worker process: every text, in order, at 16 kHz."""
    from voicebot.engines.registry import EngineOptions, build_engine

    if voice == ESPEAK:
        synth = build_engine("tts", "espeak", EngineOptions(options={"rate_wpm": ESPEAK_WPM}))
    elif voice == PIPER:
        import onnxruntime

        onnxruntime.set_seed(_ORT_SEED)  # before the session: its noise nodes seed from it
        synth = build_engine("tts", "piper", EngineOptions(
            models_dir=models_dir, manifest=manifest, options={"voice": PIPER_VOICE}))
    else:
        raise ValueError(f"not a synthetic voice: {voice}")
    rate_hz = int(synth.sample_rate_hz)
    return [resample(synth.synthesize(text), in_rate_hz=rate_hz, out_rate_hz=RATE_HZ)
            for text in texts]


def synthesize(voice: str, texts: Sequence[str], *, models_dir: Path,
               manifest: Path | None = None) -> dict[str, Pcm]:
    """Each of ``texts`` spoken by ``voice`` (16 kHz), sorted and spoken in a fresh
    process (``python -m bench.turns_voices``): the same texts always give the same
    audio."""
    ordered = sorted(set(texts))
    with tempfile.TemporaryDirectory(prefix="turns-voice-") as tmp:
        request, result = Path(tmp) / "texts.json", Path(tmp) / "audio.npz"
        request.write_text(json.dumps(ordered))
        command = [sys.executable, "-m", "bench.turns_voices", voice, str(request), str(result),
                   str(models_dir), str(manifest or "")]
        path = os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": path},
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise VoicebotError(f"{voice} could not speak the turns: {done.stderr[-2000:]}")
        with np.load(result) as data:
            audio = [np.asarray(data[f"arr_{i}"], dtype=np.int16) for i in range(len(ordered))]
    log.info("%s spoke %d texts", voice, len(ordered))
    return dict(zip(ordered, audio, strict=True))


def _main(argv: Sequence[str]) -> int:
    """``python -m bench.turns_voices VOICE TEXTS.json OUT.npz MODELS_DIR [MANIFEST]``."""
    voice, request, result, models_dir, manifest = argv
    texts = json.loads(Path(request).read_text())
    audio = _speak_all(voice, texts, Path(models_dir), Path(manifest) if manifest else None)
    np.savez(result, *audio)  # arr_0, arr_1, ... in the texts' order
    return 0


if __name__ == "__main__":  # pragma: no cover - the synthesis worker
    raise SystemExit(_main(sys.argv[1:]))
