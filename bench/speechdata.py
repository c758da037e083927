"""Real recorded speech for ``python -m bench accuracy``: where Debian puts it, and its texts.

Two corpora of human speech, installed as Debian packages (never committed here)::

    apt-get install -y asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx-testdata

* **Asterisk core sounds** (``asterisk-core-sounds-en-wav``, CC-BY-SA-3.0): ~570 telephone
  prompts read by one professional voice (Allison Smith), 8 kHz 16-bit WAV under
  ``/usr/share/asterisk/sounds/en_US_f_Allison/`` (``digits/0.wav`` … ``digits/9.wav``
  among them).  Their texts come with ``asterisk-core-sounds-en`` in
  ``/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz``: ``;`` comments and
  lines ``name: text`` where ``name`` is the file's path without ``.wav``
  (``digits/4: four``).  Entries whose whole text is a bracketed description
  (``[this is a simple beep tone]``, ``(1 second of silence)``) are not speech and are
  left out, as are texts without a recording.
* **LibriVox clips** (``pocketsphinx-testdata``, public domain): five read sentences of
  *Sense and Sensibility*, 16 kHz WAV under ``/usr/share/pocketsphinx/test/data/librivox/``
  with CMU Sphinx transcripts in ``transcription``: ``<s> words </s> (file-id)``.

Text normalisation and WER are in :mod:`bench.accuracy_text`.
"""

from __future__ import annotations

import gzip
import logging
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.engines.base import Pcm
from voicebot.errors import VoicebotError

from .accuracy_text import normalize_text

__all__ = [
    "APT_INSTALL",
    "APT_PACKAGES",
    "ASTERISK_SOUNDS_DIR",
    "ASTERISK_TEXTS",
    "LIBRIVOX_DIR",
    "Recording",
    "SpeechDataMissingError",
    "asterisk_digit",
    "asterisk_prompts",
    "librivox_clips",
    "parse_asterisk_texts",
    "parse_sphinx_transcription",
    "read_wav",
    "trim_silence",
]

log = logging.getLogger(__name__)

APT_PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en", "pocketsphinx-testdata")
APT_INSTALL = "apt-get install -y " + " ".join(APT_PACKAGES)
ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")

_ASTERISK_LINE = re.compile(r"^(?P<name>[^\s:;][^\s:]*):\s*(?P<text>.*)$")
_SPHINX_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")
_SPHINX_TAGS = re.compile(r"</?s>|<sil>")
_DESCRIPTION = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\))\s*$")


class SpeechDataMissingError(VoicebotError):
    """A speech corpus is not installed; the message gives the apt command."""


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded utterance and what was said (the reference text, as published)."""

    id: str
    path: Path
    text: str


def _missing(what: Path, package: str) -> SpeechDataMissingError:
    return SpeechDataMissingError(
        f"{what} not found: the Debian package {package} is not installed. "
        f"Install the accuracy benchmark's speech with: {APT_INSTALL}")


def parse_asterisk_texts(text: str) -> dict[str, str]:
    """``core-sounds-en.txt`` → {file name without ``.wav``: text}; comments skipped."""
    texts: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASTERISK_LINE.match(line.strip())
        if match is not None:
            texts[match["name"]] = match["text"].strip()
    return texts


def parse_sphinx_transcription(text: str) -> dict[str, str]:
    """A CMU Sphinx ``transcription`` file → {file id: words}, without ``<s>``/``</s>``."""
    texts: dict[str, str] = {}
    for line in text.splitlines():
        match = _SPHINX_LINE.match(line.strip())
        if match is not None:
            texts[match["id"]] = " ".join(_SPHINX_TAGS.sub(" ", match["text"]).split())
    return texts


def asterisk_prompts(*, sounds_dir: Path = ASTERISK_SOUNDS_DIR,
                     texts_path: Path = ASTERISK_TEXTS) -> tuple[Recording, ...]:
    """Every Asterisk prompt that has both a recording and a spoken text, by name."""
    if not sounds_dir.is_dir():
        raise _missing(sounds_dir, "asterisk-core-sounds-en-wav")
    if not texts_path.is_file():
        raise _missing(texts_path, "asterisk-core-sounds-en")
    with gzip.open(texts_path, "rt", encoding="utf-8", errors="replace") as f:
        texts = parse_asterisk_texts(f.read())
    found: list[Recording] = []
    no_audio = 0
    for name, text in sorted(texts.items()):
        path = sounds_dir / f"{name}.wav"
        if _DESCRIPTION.match(text) or not normalize_text(text):
            continue
        if not path.is_file():
            no_audio += 1
            continue
        found.append(Recording(id=name, path=path, text=text))
    if no_audio:
        log.info("%d Asterisk texts have no recording in %s", no_audio, sounds_dir)
    return tuple(found)


def asterisk_digit(digit: str, *, sounds_dir: Path = ASTERISK_SOUNDS_DIR) -> Path:
    """The recording of one spoken digit, ``digits/<digit>.wav``."""
    if len(digit) != 1 or not digit.isdigit():
        raise ValueError(f"not a digit: {digit!r}")
    path = sounds_dir / "digits" / f"{digit}.wav"
    if not path.is_file():
        raise _missing(path, "asterisk-core-sounds-en-wav")
    return path


def librivox_clips(*, data_dir: Path = LIBRIVOX_DIR) -> tuple[Recording, ...]:
    """The LibriVox clips of ``pocketsphinx-testdata`` with their transcripts."""
    transcription = data_dir / "transcription"
    if not transcription.is_file():
        raise _missing(transcription, "pocketsphinx-testdata")
    texts = parse_sphinx_transcription(transcription.read_text(encoding="utf-8"))
    clips = [Recording(id=clip_id, path=data_dir / f"{clip_id}.wav", text=text)
             for clip_id, text in sorted(texts.items())]
    return tuple(c for c in clips if c.path.is_file())


def read_wav(path: Path) -> tuple[Pcm, int]:
    """A 16-bit PCM WAV's samples (first channel) and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return frames[:: wav.getnchannels()].astype(np.int16), wav.getframerate()


def trim_silence(pcm: Pcm, sample_rate_hz: int, *, threshold: int = 300,
                 margin_ms: int = 30) -> Pcm:
    """``pcm`` without its leading and trailing silence (samples at or under
    ``threshold``), keeping ``margin_ms`` of it on each side."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if not len(loud):
        return pcm[:0].copy()
    margin = sample_rate_hz * margin_ms // 1000
    start, end = max(0, int(loud[0]) - margin), min(len(pcm), int(loud[-1]) + 1 + margin)
    return pcm[start:end].copy()
