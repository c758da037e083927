"""Loading a CTranslate2 Whisper model through faster-whisper (errors translated here).

:func:`load_whisper` builds ``faster_whisper.WhisperModel`` on the CPU with the
caller's ``cpu_threads`` / ``num_workers`` (engines never create pools), the
tokenizer for ``language`` and the token ids to suppress (faster-whisper's
``[-1]`` set; for a synthetic model every id from end-of-text on as well, so it
decodes text tokens only).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.errors import EngineError, EngineUnavailableError
from voicebot.whisper.synthetic import is_synthetic

__all__ = ["LoadedWhisper", "load_whisper"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedWhisper:
    """faster-whisper's model and tokenizer, and what decoding needs of them."""

    whisper: Any  # faster_whisper.WhisperModel
    tokenizer: Any  # faster_whisper.tokenizer.Tokenizer
    suppress: list[int]
    language: str
    synthetic: bool

    @property
    def eot(self) -> int:
        """The end-of-text id (text tokens are below it)."""
        eot: int = self.tokenizer.eot
        return eot

    def prompt_ids(self, prompt: str | None) -> list[int]:
        """The decoder prompt faster-whisper builds: ``prompt`` as hotwords, no timestamps."""
        ids: list[int] = self.whisper.get_prompt(
            self.tokenizer, [], without_timestamps=True, hotwords=prompt
        )
        return ids

    def transcribe_long(
        self,
        audio: Any,
        *,
        prompt: str | None,
        beam_size: int,
        max_new_tokens: int | None,
        no_speech_threshold: float | None,
        log_prob_threshold: float,
    ) -> tuple[str, int, float | None]:
        """faster-whisper's ``transcribe`` (30 s windows one after another), temperature 0.

        Returns the text, its token count and the average log probability.
        """
        segments, _info = self.whisper.transcribe(
            audio, language=self.language, task="transcribe", beam_size=beam_size,
            temperature=0.0, condition_on_previous_text=False, without_timestamps=True,
            vad_filter=False, hotwords=prompt, suppress_tokens=list(self.suppress),
            max_new_tokens=max_new_tokens, no_speech_threshold=no_speech_threshold,
            log_prob_threshold=log_prob_threshold,
        )  # fmt: skip
        segments = list(segments)  # the work happens here, inside the call
        # Segment.avg_logprob is the cumulative log probability / (tokens + 1).
        cumulative = sum(s.avg_logprob * (len(s.tokens) + 1) for s in segments)
        weight = sum(len(s.tokens) + 1 for s in segments)
        text = "".join(s.text for s in segments).strip()
        tokens = sum(len(s.tokens) for s in segments)
        return text, tokens, cumulative / weight if weight else None


def load_whisper(
    model: str | Path,
    *,
    threads: int,
    num_workers: int,
    compute_type: str,
    language: str,
) -> LoadedWhisper:
    """Load ``model`` (a local CTranslate2 directory, or a faster-whisper size name)."""
    if threads < 1 or num_workers < 1:
        raise EngineError("threads and num_workers must be >= 1")
    try:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
    except ImportError as exc:
        raise EngineUnavailableError("faster-whisper is not installed") from exc
    text = str(model)
    local = isinstance(model, Path) or os.path.isdir(text) or os.sep in text
    if local and not (Path(model) / "model.bin").is_file():
        raise EngineUnavailableError(f"no CTranslate2 Whisper model in {model}")
    try:
        whisper = WhisperModel(
            text, device="cpu", compute_type=compute_type,
            cpu_threads=threads, num_workers=num_workers,
        )  # fmt: skip
    except ValueError as exc:
        raise EngineError(f"cannot load Whisper model {model}: {exc}") from exc
    except (RuntimeError, OSError) as exc:
        raise EngineUnavailableError(f"cannot load Whisper model {model}: {exc}") from exc
    multilingual = bool(whisper.model.is_multilingual)
    if not multilingual and language != "en":
        raise EngineError(f"the English-only model {model} cannot transcribe {language!r}")
    try:
        tokenizer = Tokenizer(
            whisper.hf_tokenizer, multilingual, task="transcribe", language=language
        )
    except ValueError as exc:
        raise EngineError(f"Whisper cannot transcribe {language!r}: {exc}") from exc
    synthetic = local and is_synthetic(model)
    suppress = set(get_suppressed_tokens(tokenizer, [-1]))
    if synthetic:  # random weights: only text tokens, and never the end
        vocabulary_size = whisper.hf_tokenizer.get_vocab_size(with_added_tokens=True)
        suppress.update(range(tokenizer.eot, vocabulary_size))
    logger.info(
        "loaded Whisper %s (%s, %d threads, %d workers%s)",
        model, compute_type, threads, num_workers,
        ", SYNTHETIC random weights" if synthetic else "",
    )  # fmt: skip
    return LoadedWhisper(
        whisper=whisper,
        tokenizer=tokenizer,
        suppress=sorted(suppress),
        language=language,
        synthetic=synthetic,
    )
