"""One Whisper model (CTranslate2, loaded by faster-whisper) decoding whole utterances.

:class:`WhisperDecoder` turns an utterance (float32 samples at 16 kHz, up to
30 s) into log-mel features once and decodes them in one encoder window:

* ``encoder_window="30s"``: the features padded to 30 s (3000 frames) as
  faster-whisper's ``transcribe`` pads them, then CTranslate2 ``encode`` /
  ``generate`` with the same prompt and settings.  The encoder costs the same
  for "yes" as for a 29 s sentence.
* ``encoder_window="utterance"``: the utterance plus ``utterance_pad_ms`` of
  silence, extended with silence to at least ``utterance_min_window_ms`` (15 s
  by default), at most 30 s.  Whisper only ever saw 30 s windows: on real
  weights a window of the bare utterance (+200 ms) makes it loop (it repeats
  the digits it heard: 12 of 16 recorded card numbers on tiny.en), as if it
  never saw the speech end; seconds of silence after the speech stop that
  (10 s still added a digit to one of 16 recorded strings, 15 s none).  The
  silence is the log-mel floor zero samples give.

Every real-weight decoding is bounded and checked (:class:`DecodeGuard`): at
most ``ceil(8 tokens/s * audio seconds) + 16`` new tokens; a decoding that hits
that budget, holds a loop (a token run repeated back to back), compresses like
a loop, or averages a log probability under -1 is *degenerate*.  With
``fallback`` on, a degenerate utterance-window decoding is done again in the
30 s window (same features; counted in :attr:`WhisperDecoder.stats` and
logged).  A *short* decoding (the text ended long before the audio: under 0.6
tokens a second of 4 s or more) is done again in the same window with a beam
search of :data:`SHORT_RETRY_BEAM`, in either window: greedy search ended a
15 s piece of a recorded prompt after "and forevermore.", beam search of 5
read it all.  A returned result that still hits the budget, loops or compresses
like a loop is cut after the loop's first copy and flagged in
:attr:`Decoded.degenerate` (a low log probability alone is only unsure).

``lead_silence_ms`` of silence go before every utterance (default 0; the real-model
stacks use 200): Whisper drops a first word that starts at the very edge of its
window -- tiny.en heard the recorded card "zero six eight nine" as "6 8 9" in 3 of 8
alignments of the VAD's windows on the speech, and lost a first digit in 4 of 128
card-number turns (16 cards x 8 alignments, whole Sessions with speculative ASR) with
the front's 300 ms pre-roll alone, none with 200 ms more.  More is not better: with
300 or 500 ms the speculative decode of a half-said card repeated it ("4 8" heard as
"4 8 4 8", which ends a 4-digit turn early) in 5 and 17 of the 128.

Decoding is greedy by default (``beam_size=1``), at temperature 0 only (no
sampling: results are reproducible and the 30 s window is the fallback),
without timestamps and without conditioning on earlier text.  A window whose
no-speech probability is above 0.6 while its average log probability is below
-1 is silence: no text, never degenerate (faster-whisper's defaults).  Audio
over 30 s goes to faster-whisper's ``transcribe`` unchecked.

Synthetic models (:func:`voicebot.whisper.synthetic.is_synthetic`): end-of-text
and every special token are suppressed, no-speech skipping and the guard are
off and decoding stops after ``ceil(3 tokens/s * audio seconds)`` tokens, so the
decoder does the work of real speech; the text is then random tokens.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineError
from voicebot.whisper.guard import DecodeGuard, DegenerateReason, find_loop, trim_loop
from voicebot.whisper.limits import (
    FRAMES_PER_S,
    LOG_PROB_THRESHOLD,
    MAX_INITIAL_TIMESTAMP_INDEX,
    MAX_NEW_TOKENS,
    NO_SPEECH_THRESHOLD,
    SAMPLE_RATE_HZ,
    SYNTHETIC_TOKENS_PER_SECOND,
    WINDOW_FRAMES,
    average_logprob,
    heard_silence,
    max_length_for,
    synthetic_token_limit,
)
from voicebot.whisper.model import LoadedWhisper, load_whisper

__all__ = [
    "SHORT_RETRY_BEAM",
    "DecodeStats",
    "Decoded",
    "EncoderWindow",
    "WhisperDecoder",
]

logger = logging.getLogger(__name__)

EncoderWindow = Literal["30s", "utterance"]

SHORT_RETRY_BEAM = 5
"""Beam of the second decoding of a text that ended long before its audio."""
_SILENCE_LOG10 = -10.0  # log10 of the mel power floor (1e-10), what zero samples give


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoding: text, token count, per-token log probability, frames encoded.

    ``encoder_frames`` counts every window encoded (a fallback adds 3000);
    ``window`` is the window of the text returned; ``fallback`` why the
    utterance window's decoding was replaced; ``degenerate`` why the returned
    text still looks degenerate (it was cut after the loop's first copy).
    """

    text: str
    tokens: int
    avg_logprob: float | None
    encoder_frames: int
    window: EncoderWindow = "30s"
    fallback: DegenerateReason | None = None
    degenerate: DegenerateReason | None = None

    @property
    def confidence(self) -> float | None:
        """Geometric-mean token probability, ``None`` without text."""
        if not self.text or self.avg_logprob is None:
            return None
        return min(max(math.exp(self.avg_logprob), 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class DecodeStats:
    """Counts since the decoder was built (metrics, benchmarks)."""

    decodes: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)  # by reason
    degenerate: int = 0  # results still degenerate when returned


@dataclass(frozen=True, slots=True)
class _Generated:
    ids: list[int]  # text tokens only
    avg_logprob: float | None
    silence: bool
    budget: int
    audio_s: float



def silence_level(features: npt.NDArray[np.float32]) -> float:
    """The normalised log-mel value zero samples get next to ``features``.

    faster-whisper clamps log10 power at ``max - 8`` and maps ``x`` to
    ``(x + 4) / 4``, so silence is ``max(features.max() - 2, -1.5)``.
    """
    return max(float(features.max()) - 2.0, (_SILENCE_LOG10 + 4.0) / 4.0)


class WhisperDecoder:
    """A loaded Whisper model and the decoding settings; safe to share between threads."""

    def __init__(
        self,
        *,
        model: str | Path,
        threads: int = 1,
        num_workers: int = 1,
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str = "en",
        encoder_window: EncoderWindow = "utterance",
        utterance_pad_ms: int = 200,
        utterance_min_window_ms: int = 15_000,
        guard: DecodeGuard | None = None,
        fallback: bool = True,
        lead_silence_ms: int = 0,
    ) -> None:
        if encoder_window not in ("30s", "utterance"):
            raise EngineError(
                f"encoder_window must be '30s' or 'utterance', not {encoder_window!r}"
            )
        if (beam_size < 1 or utterance_pad_ms < 0 or utterance_min_window_ms < 0
                or lead_silence_ms < 0):
            raise EngineError("beam_size must be >= 1, padding, lead silence and minimum "
                              "window >= 0")
        self._model: LoadedWhisper = load_whisper(
            model, threads=threads, num_workers=num_workers,
            compute_type=compute_type, language=language,
        )  # fmt: skip
        self.synthetic = self._model.synthetic
        self._beam_size = beam_size
        self.encoder_window: EncoderWindow = encoder_window
        self._pad_frames = utterance_pad_ms * FRAMES_PER_S // 1000
        self._min_frames = min(WINDOW_FRAMES, utterance_min_window_ms * FRAMES_PER_S // 1000)
        # Random weights never end their text: no guard unless one is asked for (tests).
        self._guard = guard if guard is not None or self.synthetic else DecodeGuard()
        self._fallback = fallback
        self._lead = np.zeros(lead_silence_ms * SAMPLE_RATE_HZ // 1000, dtype=np.float32)
        self._stats_lock = threading.Lock()
        self._decodes = 0
        self._fallbacks: Counter[str] = Counter()
        self._degenerate = 0
        logger.info(
            "Whisper %s: %s window (lead %d ms, pad %d ms, min %d ms), beam %d, fallback %s",
            model, encoder_window, lead_silence_ms, utterance_pad_ms, utterance_min_window_ms,
            beam_size, "on" if fallback and encoder_window == "utterance" else "off",
        )  # fmt: skip

    @property
    def stats(self) -> DecodeStats:
        """Decodings, fallbacks by reason and degenerate results so far."""
        with self._stats_lock:
            return DecodeStats(self._decodes, dict(self._fallbacks), self._degenerate)

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in model tokens."""
        return len(self._model.tokenizer.encode(text))

    def decode(self, audio: npt.NDArray[np.float32], *, prompt: str | None = None) -> Decoded:
        """Transcribe one utterance (16 kHz float samples); ``prompt`` goes before it."""
        if len(audio) == 0:
            return Decoded(text="", tokens=0, avg_logprob=None, encoder_frames=0,
                           window=self.encoder_window)  # fmt: skip
        if len(self._lead):
            audio = np.concatenate((self._lead, audio))
        try:
            decoded = self._decode(audio, prompt)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"Whisper decoding failed: {exc}") from exc
        with self._stats_lock:
            self._decodes += 1
            if decoded.fallback is not None:
                self._fallbacks[decoded.fallback] += 1
            self._degenerate += decoded.degenerate is not None
        return decoded

    def _decode(self, audio: npt.NDArray[np.float32], prompt: str | None) -> Decoded:
        model = self._model
        features = model.whisper.feature_extractor(audio)
        content = max(1, features.shape[-1] - 1)  # the last frame is faster-whisper's padding
        if content > WINDOW_FRAMES:
            return self._decode_long(audio, prompt)
        features = features[:, :content]
        prompt_ids = model.prompt_ids(prompt)
        audio_s = len(audio) / SAMPLE_RATE_HZ
        if self.encoder_window == "30s":
            result = self._generate(features, WINDOW_FRAMES, 0.0, prompt_ids, audio_s)
            if self._fallback and self._assess(result) == "short":
                return self._beam_again(features, WINDOW_FRAMES, 0.0, prompt_ids, audio_s, "30s")
            return self._finish(result, "30s", WINDOW_FRAMES, self._assess(result, final=True))
        frames = min(WINDOW_FRAMES, max(content + self._pad_frames, self._min_frames))
        frames += frames % 2
        level = silence_level(features)
        first = self._generate(features, frames, level, prompt_ids, audio_s)
        reason = self._assess(first)
        if reason == "short" and self._fallback:
            return self._beam_again(features, frames, level, prompt_ids, audio_s, "utterance")
        if reason is None or not self._fallback or frames == WINDOW_FRAMES:
            return self._finish(first, "utterance", frames, self._assess(first, final=True))
        logger.info(
            "Whisper utterance window degenerate (%s, %d tokens, %d ms): 30 s window again",
            reason, len(first.ids), round(audio_s * 1000),
        )  # fmt: skip
        second = self._generate(features, WINDOW_FRAMES, 0.0, prompt_ids, audio_s)
        degenerate = self._assess(second, final=True)
        return self._finish(second, "30s", frames + WINDOW_FRAMES, degenerate, fallback=reason)

    def _beam_again(
        self,
        features: npt.NDArray[np.float32],
        frames: int,
        pad_value: float,
        prompt_ids: list[int],
        audio_s: float,
        window: EncoderWindow,
    ) -> Decoded:
        """A short decoding done again in the same window with a wider beam."""
        logger.info("Whisper text ended early (%d ms of audio): beam %d again",
                    round(audio_s * 1000), SHORT_RETRY_BEAM)  # fmt: skip
        beam = max(self._beam_size, SHORT_RETRY_BEAM)
        again = self._generate(features, frames, pad_value, prompt_ids, audio_s, beam_size=beam)
        degenerate = self._assess(again, final=True)
        return self._finish(again, window, 2 * frames, degenerate, fallback="short")

    def _generate(
        self,
        features: npt.NDArray[np.float32],
        frames: int,
        pad_value: float,
        prompt_ids: list[int],
        audio_s: float,
        *,
        beam_size: int | None = None,
    ) -> _Generated:
        """Encode ``features`` padded to ``frames`` with ``pad_value``, then decode."""
        model = self._model
        window = np.full((features.shape[0], frames), pad_value, dtype=np.float32)
        window[:, : features.shape[1]] = features
        budget = (self._guard or DecodeGuard()).budget(audio_s, max_tokens=MAX_NEW_TOKENS)
        limit = budget
        if self.synthetic:  # the tokens real speech would take (the guard judges by budget)
            limit = synthetic_token_limit(audio_s)
        result = model.whisper.model.generate(
            model.whisper.encode(window),
            [prompt_ids],
            beam_size=beam_size or self._beam_size,
            patience=1.0,
            length_penalty=1.0,
            max_length=max_length_for(limit, len(prompt_ids)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=model.suppress,
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < model.eot]
        avg_logprob = average_logprob(result.scores[0], len(result.sequences_ids[0]), len(ids))
        silence = heard_silence(no_speech_prob=result.no_speech_prob, avg_logprob=avg_logprob,
                                synthetic=self.synthetic)
        return _Generated(ids=ids, avg_logprob=avg_logprob, silence=silence, budget=budget,
                          audio_s=audio_s)

    def _assess(self, result: _Generated, *, final: bool = False) -> DegenerateReason | None:
        """Why ``result`` looks degenerate; a ``final`` one is not judged on log probability."""
        if self._guard is None or result.silence:
            return None
        return self._guard.assess(
            result.ids,
            text=self._model.tokenizer.decode(result.ids),
            avg_logprob=result.avg_logprob,
            budget=result.budget,
            audio_s=result.audio_s,
            check_log_prob=not final,
        )

    def _finish(
        self,
        result: _Generated,
        window: EncoderWindow,
        frames: int,
        degenerate: DegenerateReason | None,
        *,
        fallback: DegenerateReason | None = None,
    ) -> Decoded:
        """The text of ``result``; a degenerate one is cut after its loop's first copy."""
        ids = result.ids
        if degenerate is not None:
            assert self._guard is not None
            loop = find_loop(ids, min_repeated_tokens=self._guard.min_repeated_tokens)
            if loop is not None:
                ids = trim_loop(ids, loop)
            logger.info("Whisper result degenerate (%s, %d tokens, cut to %d)",
                        degenerate, len(result.ids), len(ids))  # fmt: skip
        text = "" if result.silence else self._model.tokenizer.decode(ids).strip()
        return Decoded(
            text=text,
            tokens=len(ids),
            avg_logprob=result.avg_logprob,
            encoder_frames=frames,
            window=window,
            fallback=fallback,
            degenerate=degenerate,
        )

    def _decode_long(self, audio: npt.NDArray[np.float32], prompt: str | None) -> Decoded:
        """Over 30 s: faster-whisper's ``transcribe`` (consecutive 30 s windows)."""
        max_new_tokens = None
        if self.synthetic:  # faster-whisper's max_length is prompt + this
            prompt_length = len(self._model.prompt_ids(prompt))
            new = math.ceil(SYNTHETIC_TOKENS_PER_SECOND * WINDOW_FRAMES / FRAMES_PER_S)
            max_new_tokens = max_length_for(new, prompt_length) - prompt_length
        text, tokens, avg_logprob = self._model.transcribe_long(
            audio, prompt=prompt, beam_size=self._beam_size, max_new_tokens=max_new_tokens,
            no_speech_threshold=None if self.synthetic else NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
        )  # fmt: skip
        windows = math.ceil(len(audio) / (SAMPLE_RATE_HZ * WINDOW_FRAMES / FRAMES_PER_S))
        return Decoded(text=text, tokens=tokens, avg_logprob=avg_logprob,
                       encoder_frames=windows * WINDOW_FRAMES, window="30s")  # fmt: skip
