"""One Whisper model behind faster-whisper, decoding whole utterances two ways.

:class:`WhisperDecoder` loads a CTranslate2 Whisper model through
``faster_whisper.WhisperModel`` (``cpu_threads`` and ``num_workers`` from the
caller) and decodes one utterance (float32 samples at 16 kHz) per call:

* ``encoder_window="30s"``: ``WhisperModel.transcribe``, which pads every
  window to 30 s (3000 mel frames), segments listed inside the call.
* ``encoder_window="utterance"``: the log-mel features of the utterance plus
  ``utterance_pad_ms`` of zeros (an even frame count) go straight to
  ``ctranslate2.models.Whisper.encode`` / ``generate`` with faster-whisper's
  prompt (``get_prompt``).  Utterances longer than 30 s take the 30 s path.

Both decode greedily by default (``beam_size=1``), at temperature 0 only (no
fallback re-decoding: predictable latency), without timestamps and without
conditioning on earlier text.  For a real model a window whose no-speech
probability is above 0.6 while its average log probability is below -1 gives no
text (faster-whisper's defaults).  For a synthetic model
(:func:`voicebot.whisper.synthetic.is_synthetic`) end-of-text and every special
token are suppressed, no-speech skipping is off and decoding stops after
``ceil(3 tokens/s * audio seconds)`` tokens, so the decoder does the work of
real speech; the text is then random tokens.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from voicebot.errors import EngineError, EngineUnavailableError
from voicebot.whisper.synthetic import is_synthetic

__all__ = ["SYNTHETIC_TOKENS_PER_SECOND", "Decoded", "EncoderWindow", "WhisperDecoder"]

logger = logging.getLogger(__name__)

EncoderWindow = Literal["30s", "utterance"]

SYNTHETIC_TOKENS_PER_SECOND = 3.0
"""Tokens a synthetic model decodes per second of audio (about real speech's rate)."""

SAMPLE_RATE_HZ = 16000
_HOP_SAMPLES = 160
_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames
_MAX_LENGTH = 448  # text positions: prompt + new tokens
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
_MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s, faster-whisper's default


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoding: text, its token count, per-token log probability, frames encoded."""

    text: str
    tokens: int
    avg_logprob: float | None
    encoder_frames: int

    @property
    def confidence(self) -> float | None:
        """Geometric-mean token probability, ``None`` without text."""
        if not self.text or self.avg_logprob is None:
            return None
        return min(max(math.exp(self.avg_logprob), 0.0), 1.0)


def _max_length(new_tokens: int, prompt_length: int) -> int:
    """CTranslate2 ``max_length`` that lets exactly ``new_tokens`` be generated.

    CTranslate2 caps new tokens at ``min(max_length // 2, max_length - start_step)``,
    ``start_step`` being the prompt tokens before the last one.
    """
    return min(_MAX_LENGTH, max(2 * new_tokens, new_tokens + prompt_length - 1))


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
        encoder_window: EncoderWindow = "30s",
        utterance_pad_ms: int = 200,
    ) -> None:
        if encoder_window not in ("30s", "utterance"):
            raise EngineError(
                f"encoder_window must be '30s' or 'utterance', not {encoder_window!r}"
            )
        if threads < 1 or num_workers < 1 or beam_size < 1 or utterance_pad_ms < 0:
            raise EngineError("threads, num_workers and beam_size must be >= 1, padding >= 0")
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
        except ImportError as exc:
            raise EngineUnavailableError("faster-whisper is not installed") from exc
        local = isinstance(model, Path) or os.path.isdir(model) or os.sep in model
        if local and not (Path(model) / "model.bin").is_file():
            raise EngineUnavailableError(f"no CTranslate2 Whisper model in {model}")
        try:
            self._whisper: Any = WhisperModel(
                str(model),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=num_workers,
            )
        except ValueError as exc:
            raise EngineError(f"cannot load Whisper model {model}: {exc}") from exc
        except (RuntimeError, OSError) as exc:
            raise EngineUnavailableError(f"cannot load Whisper model {model}: {exc}") from exc
        multilingual = bool(self._whisper.model.is_multilingual)
        if not multilingual and language != "en":
            raise EngineError(f"the English-only model {model} cannot transcribe {language!r}")
        try:
            self._tokenizer: Any = Tokenizer(
                self._whisper.hf_tokenizer, multilingual, task="transcribe", language=language
            )
        except ValueError as exc:
            raise EngineError(f"Whisper cannot transcribe {language!r}: {exc}") from exc
        self.synthetic = local and is_synthetic(model)
        suppress = set(get_suppressed_tokens(self._tokenizer, [-1]))
        if self.synthetic:  # random weights: only text tokens, and never the end
            vocabulary_size = self._whisper.hf_tokenizer.get_vocab_size(with_added_tokens=True)
            suppress.update(range(self._tokenizer.eot, vocabulary_size))
        self._suppress = sorted(suppress)
        self._language = language
        self._beam_size = beam_size
        self.encoder_window: EncoderWindow = encoder_window
        self._pad_samples = utterance_pad_ms * SAMPLE_RATE_HZ // 1000
        logger.info(
            "loaded Whisper %s (%s, %s window, %d threads, %d workers%s)",
            model, compute_type, encoder_window, threads, num_workers,
            ", SYNTHETIC random weights" if self.synthetic else "",
        )  # fmt: skip

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in model tokens."""
        return len(self._tokenizer.encode(text))

    def decode(self, audio: npt.NDArray[np.float32], *, prompt: str | None = None) -> Decoded:
        """Transcribe one utterance (16 kHz float samples), ``prompt`` as hotwords."""
        if len(audio) == 0:
            return Decoded(text="", tokens=0, avg_logprob=None, encoder_frames=0)
        max_new_tokens = None
        if self.synthetic:
            seconds = min(len(audio) / SAMPLE_RATE_HZ, _WINDOW_FRAMES / 100)
            max_new_tokens = max(1, math.ceil(SYNTHETIC_TOKENS_PER_SECOND * seconds))
        try:
            if self.encoder_window == "utterance":
                decoded = self._decode_utterance(audio, prompt, max_new_tokens)
                if decoded is not None:
                    return decoded
            return self._decode_30s(audio, prompt, max_new_tokens)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"Whisper decoding failed: {exc}") from exc

    def _decode_30s(
        self, audio: npt.NDArray[np.float32], prompt: str | None, max_new_tokens: int | None
    ) -> Decoded:
        if max_new_tokens is not None:  # faster-whisper's max_length is prompt + this
            prompt_length = len(self._prompt_ids(prompt))
            max_new_tokens = _max_length(max_new_tokens, prompt_length) - prompt_length
        segments, _info = self._whisper.transcribe(
            audio,
            language=self._language,
            task="transcribe",
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            hotwords=prompt,
            suppress_tokens=list(self._suppress),
            max_new_tokens=max_new_tokens,
            no_speech_threshold=None if self.synthetic else _NO_SPEECH_THRESHOLD,
            log_prob_threshold=_LOG_PROB_THRESHOLD,
        )
        segments = list(segments)  # the work happens here, inside the call
        tokens = sum(len(s.tokens) for s in segments)
        # Segment.avg_logprob is the cumulative log probability / (tokens + 1).
        cumulative = sum(s.avg_logprob * (len(s.tokens) + 1) for s in segments)
        weight = sum(len(s.tokens) + 1 for s in segments)
        windows = max(1, math.ceil((len(audio) // _HOP_SAMPLES) / _WINDOW_FRAMES))
        return Decoded(
            text="".join(s.text for s in segments).strip(),
            tokens=tokens,
            avg_logprob=cumulative / weight if weight else None,
            encoder_frames=windows * _WINDOW_FRAMES,
        )

    def _prompt_ids(self, prompt: str | None) -> list[int]:
        """The decoder prompt faster-whisper builds (hotwords, start of transcript)."""
        ids: list[int] = self._whisper.get_prompt(
            self._tokenizer, [], without_timestamps=True, hotwords=prompt
        )
        return ids

    def _decode_utterance(
        self, audio: npt.NDArray[np.float32], prompt: str | None, max_new_tokens: int | None
    ) -> Decoded | None:
        """Encode only the utterance (plus padding); ``None`` when it is over 30 s."""
        padded = np.concatenate([audio, np.zeros(self._pad_samples, dtype=np.float32)])
        features = self._whisper.feature_extractor(padded)
        frames = features.shape[-1] - features.shape[-1] % 2
        if frames > _WINDOW_FRAMES:
            return None
        encoder_output = self._whisper.encode(np.ascontiguousarray(features[:, :frames]))
        prompt_ids = self._prompt_ids(prompt)
        max_length = _MAX_LENGTH
        if max_new_tokens is not None:
            max_length = _max_length(max_new_tokens, len(prompt_ids))
        result = self._whisper.model.generate(
            encoder_output,
            [prompt_ids],
            beam_size=self._beam_size,
            patience=1.0,
            length_penalty=1.0,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        avg_logprob = result.scores[0] * len(result.sequences_ids[0]) / (len(ids) + 1)
        text = self._tokenizer.decode(ids).strip()
        if (
            not self.synthetic
            and result.no_speech_prob > _NO_SPEECH_THRESHOLD
            and avg_logprob < _LOG_PROB_THRESHOLD
        ):
            text = ""
        return Decoded(text=text, tokens=len(ids), avg_logprob=avg_logprob, encoder_frames=frames)
