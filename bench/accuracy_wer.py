"""Word error rate of a stack's ASR on recorded speech, heard as a caller's would be.

Each recording goes through what the server does to a caller's audio, with the
server's own code at every step, only without the socket and the real-time wait:

1. the phone line: the recording resampled to 8 kHz (soxr, ``resample``), 300 ms of
   line silence before and 1 s after, G.711 μ-law encoded, cut into 20 ms frames;
2. the front (as :class:`voicebot.session.Session.receive_audio`): each frame μ-law
   decoded, resampled 8 → 16 kHz by a :class:`StreamResampler` kept for the call,
   regrouped into 32 ms windows (:class:`Framer`), Silero VAD probabilities, the
   :class:`Endpointer` with the scenario's endpointing settings;
3. the ASR: a stream opened at each utterance start with the utterance's padded
   audio, fed every later chunk, finished at the endpoint (``min_silence_ms``) or
   at ``max_utterance_s``; the utterances' transcripts joined are the hypothesis.

The ASR is opened with ``domain=None``: open dictation (pocketsphinx's general
en-us trigram model, Whisper with no prompt), since these prompts are not the
scenario's language; in calls the server biases it to the scenario (the card
and intent measures go through real calls and get that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voicebot.audio.codecs import AudioEncoding, decode, encode, frame_bytes
from voicebot.audio.framer import Framer, split_frames
from voicebot.audio.resample import StreamResampler, resample
from voicebot.engines.base import Pcm, SpeechDetector, Transcriber, TranscriptionStream
from voicebot.vad.endpointer import (
    EndpointConfig,
    Endpointer,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
)

from .accuracy_text import (
    WordErrors,
    join_spacing,
    normalize_text,
    sum_errors,
    word_errors,
)
from .speechdata import Recording, read_wav

__all__ = ["LINE", "CallerLine", "HeardUtterances", "phone_line_frames", "rescore", "run_wer",
           "score", "transcribe"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallerLine:
    """The caller's phone line: codec, rate, frame size, silence around the speech."""

    encoding: AudioEncoding = AudioEncoding.MULAW
    sample_rate_hz: int = 8000
    frame_ms: int = 20
    lead_ms: int = 300
    tail_ms: int = 1000

    @property
    def label(self) -> str:
        return f"G.711 {self.encoding.value} {self.sample_rate_hz} Hz, {self.frame_ms} ms frames"


LINE = CallerLine()


@dataclass(frozen=True, slots=True)
class HeardUtterances:
    """What the ASR heard of one recording: one text per endpointed utterance."""

    texts: tuple[str, ...]
    decode_s: float  # time spent in the ASR (feed + finish)

    @property
    def text(self) -> str:
        return " ".join(t for t in self.texts if t.strip())


def phone_line_frames(pcm: Pcm, sample_rate_hz: int, *, line: CallerLine = LINE) -> list[bytes]:
    """``pcm`` as the caller's line carries it: at the line's rate, silence around it,
    encoded, in frames."""
    narrow = resample(pcm, in_rate_hz=sample_rate_hz, out_rate_hz=line.sample_rate_hz)
    lead = np.zeros(line.sample_rate_hz * line.lead_ms // 1000, dtype=np.int16)
    tail = np.zeros(line.sample_rate_hz * line.tail_ms // 1000, dtype=np.int16)
    data = encode(np.concatenate((lead, narrow, tail)), line.encoding)
    return split_frames(data, frame_bytes(line.encoding, line.sample_rate_hz, line.frame_ms))


def transcribe(frames: Sequence[bytes], *, detector: SpeechDetector,
               transcriber: Transcriber | None, endpoint: EndpointConfig,
               line: CallerLine = LINE, domain: str | None = None) -> HeardUtterances:
    """Run the server's audio front and ASR over one call's frames (module docstring);
    ``transcriber=None`` runs the front only (one empty text per utterance)."""
    rate = detector.sample_rate_hz
    resampler = StreamResampler(in_rate_hz=line.sample_rate_hz, out_rate_hz=rate)
    framer = Framer(detector.window_samples)
    vad = detector.open_stream()
    endpointer = Endpointer(endpoint, sample_rate_hz=rate, window_samples=detector.window_samples)
    stream: TranscriptionStream | None = None
    texts: list[str] = []
    asr_s = 0.0

    def asr(step: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal asr_s
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            asr_s += time.perf_counter() - started

    for frame in frames:
        windows = framer.push(resampler.process(decode(frame, line.encoding)))
        if not len(windows):
            continue
        for event in endpointer.process(windows, list(vad.probabilities(windows))):
            if isinstance(event, SpeechStarted) and transcriber is None:
                texts.append("")
            elif isinstance(event, SpeechStarted) and transcriber is not None:
                stream = asr(transcriber.open_stream, domain=domain)
                asr(stream.feed, event.audio)
            elif isinstance(event, SpeechAudio) and stream is not None:
                asr(stream.feed, event.audio)
            elif isinstance(event, SpeechEnded) and stream is not None:
                texts.append(asr(stream.finish).text)
                stream = None
    if stream is not None:  # the line ended mid-utterance (tail too short): finish it
        texts.append(asr(stream.finish).text)
    return HeardUtterances(texts=tuple(texts), decode_s=asr_s)


def _degenerate(hypothesis: list[str], reference: list[str]) -> bool:
    """A decoding loop: one word three times in a row that the reference does not
    repeat, or more than twice as many words as the reference (plus three), in
    normalised words (a number: one word per digit)."""
    def tripled(words: list[str]) -> set[str]:
        return {a for a, b, c in zip(words, words[1:], words[2:], strict=False) if a == b == c}

    return bool(tripled(hypothesis) - tripled(reference)) or \
        len(hypothesis) > 2 * len(reference) + 3


def score(reference: str, heard: str, *, strict: bool = False) -> tuple[WordErrors, bool]:
    """Errors of ``heard`` against ``reference`` (both normalised, spacing joined unless
    ``strict``), and whether the hypothesis degenerated into a loop.  The reference's
    word count is taken before joining: a spelt ``m i s d n`` heard as ``misdn`` is five
    words right."""
    ref, hyp = normalize_text(reference).split(), normalize_text(heard).split()
    joined_ref, joined_hyp = (ref, hyp) if strict else join_spacing(ref, hyp)
    errors = replace(word_errors(joined_ref, joined_hyp), reference_words=len(ref))
    return errors, _degenerate(hyp, ref)


def _totals(rows: Sequence[dict[str, Any]], totals: WordErrors) -> dict[str, Any]:
    strict = sum_errors(score(r["reference"], r["heard"], strict=True)[0] for r in rows)
    return {
        "wer_strict": strict.wer,
        "recordings": len(rows), "reference_words": totals.reference_words,
        "substitutions": totals.substitutions, "deletions": totals.deletions,
        "insertions": totals.insertions, "wer": totals.wer,
        "sentences_wrong": sum(1 for r in rows if r["errors"]),
        "degenerate": sum(1 for r in rows if r["degenerate"]),
        "empty": sum(1 for r in rows if not r["heard"].strip()),
    }


def rescore(result: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`run_wer` result scored again from its texts with today's normaliser."""
    rows: list[dict[str, Any]] = []
    parts: list[WordErrors] = []
    for row in result["rows"]:
        errors, degenerate = score(row["reference"], row["heard"])
        parts.append(errors)
        rows.append({**row, "words": errors.reference_words, "errors": errors.errors,
                     "degenerate": degenerate})
    return {**result, **_totals(rows, sum_errors(parts)), "rows": rows}


def run_wer(recordings: Sequence[Recording], *, detector: SpeechDetector,
            transcriber: Transcriber, endpoint: EndpointConfig,
            line: CallerLine = LINE) -> dict[str, Any]:
    """WER over ``recordings`` (corpus WER: total errors / total reference words)."""
    rows: list[dict[str, Any]] = []
    parts: list[WordErrors] = []
    audio_s = decode_s = 0.0
    started = time.perf_counter()
    for number, rec in enumerate(recordings, start=1):
        pcm, rate = read_wav(rec.path)
        audio_s += len(pcm) / rate
        heard = transcribe(phone_line_frames(pcm, rate, line=line), detector=detector,
                           transcriber=transcriber, endpoint=endpoint, line=line)
        decode_s += heard.decode_s
        errors, degenerate = score(rec.text, heard.text)
        parts.append(errors)
        rows.append({"id": rec.id, "reference": rec.text, "heard": heard.text,
                     "utterances": len(heard.texts), "words": errors.reference_words,
                     "errors": errors.errors, "degenerate": degenerate})
        if number % 50 == 0:
            log.info("WER: %d/%d recordings, running WER %.1f%%", number, len(recordings),
                     100 * sum_errors(parts).wer)
    return {
        **_totals(rows, sum_errors(parts)),
        "audio_s": round(audio_s, 1), "asr_s": round(decode_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "asr_rtf": round(decode_s / audio_s, 3) if audio_s else None,
        "line": line.label, "rows": rows,
    }
