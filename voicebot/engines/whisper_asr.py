"""Speech recognition with Whisper (faster-whisper / CTranslate2), whole utterances on CPU.

:class:`WhisperTranscriber` implements :class:`voicebot.engines.base.Transcriber`
at 16 kHz.  Whisper is not incremental: a stream buffers what it is fed and the
model runs on ``finish`` (or on :meth:`WhisperStream.transcribe_so_far`, which
lets the caller decode speculatively when silence starts; if nothing was fed
since, ``finish`` returns that result without decoding again).  The model is
loaded once per transcriber and shared by its streams; CTranslate2 runs
``num_workers`` calls at once and queues the rest (``threads`` intra-op threads
each).  Voice activity detection is off: voicebot endpoints utterances itself.

Encoder window (``encoder_window``, see :mod:`voicebot.whisper.decoding`):

* ``"utterance"`` (default): the utterance plus ``utterance_pad_ms`` of silence,
  extended with silence to ``utterance_min_window_ms`` (15 s) at least.  Whisper
  only ever saw 30 s windows; a window of the bare utterance made real weights
  loop on card numbers, a 15 s one did not (measured on recorded speech,
  docs/benchmarks/whisper-digits.md), at about half the 30 s encoder cost.
  A degenerate decoding (token budget hit, a loop, text that compresses like
  a loop, average log probability under -1) is decoded again in the 30 s
  window (``fallback``; counted in :attr:`WhisperTranscriber.stats`).
* ``"30s"``: every utterance padded to 30 s as faster-whisper does.  The
  encoder costs the same for "yes" as for a 29 s sentence.

Domains: ``prepare_domain`` keeps a short prompt per domain, sent before the
utterance (after ``<|startofprev|>``, like faster-whisper ``hotwords``).  A slot
domain (``"<scenario>/digits"``, from ``Scenario.asr_domain``) whose slot type
has an entry in ``slot_prompts`` (default :data:`SLOT_PROMPTS`, e.g. "Card
number: 4 2 1 7.") gets that style prompt, so spoken digits come back as
numerals the entity extractor reads.  Other domains get :func:`domain_prompt`:
the phrases' most frequent content words within ``domain_prompt_tokens``
tokens (30; 0 prompts nothing).  A prompt costs a few ms of decoder prefill
per utterance and can make Whisper "hear" prompt words in noise, hence the cap.

Synthetic models (random weights, :mod:`voicebot.whisper.synthetic`) decode a
realistic number of random tokens (3 per second of audio) so their latency is
that of real speech; they have no guard (random text never ends on its own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from voicebot.engines.base import Pcm, Transcript
from voicebot.errors import EngineError
from voicebot.whisper.decoding import Decoded, DecodeStats, EncoderWindow, WhisperDecoder
from voicebot.whisper.guard import DecodeGuard
from voicebot.whisper.prompts import (
    SLOT_PROMPTS,
    STOP_WORDS,
    content_words,
    domain_prompt,
    prompt_for_domain,
)

__all__ = [
    "DEFAULT_WINDOW",
    "SLOT_PROMPTS",
    "STOP_WORDS",
    "WhisperStream",
    "WhisperTranscriber",
    "content_words",
    "domain_prompt",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
DEFAULT_WINDOW: EncoderWindow = "utterance"
"""Chosen by measured accuracy on recorded speech: docs/benchmarks/whisper-digits.md."""


class WhisperStream:
    """One utterance: buffers the audio fed, decodes it on demand (see the module)."""

    def __init__(self, decoder: WhisperDecoder, *, prompt: str | None) -> None:
        self._decoder: WhisperDecoder | None = decoder
        self._prompt = prompt
        self._chunks: list[Pcm] = []
        self._samples = 0
        self._last: tuple[int, Decoded] | None = None  # (samples decoded, result)

    @property
    def audio_ms(self) -> int:
        """Duration of the audio fed so far."""
        return self._samples * 1000 // SAMPLE_RATE_HZ

    @property
    def last_decoded(self) -> Decoded | None:
        """The latest decoding (token count, frames encoded), for tests and metrics."""
        return self._last[1] if self._last is not None else None

    def _open_decoder(self) -> WhisperDecoder:
        if self._decoder is None:
            raise EngineError("transcription stream already finished or cancelled")
        return self._decoder

    def feed(self, pcm: Pcm) -> None:
        """Append ``pcm`` (16 kHz int16) to the utterance."""
        self._open_decoder()
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise EngineError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        if len(pcm):
            self._chunks.append(pcm.copy())
            self._samples += len(pcm)

    def transcribe_so_far(self) -> Transcript:
        """Transcribe the audio fed so far; the stream stays open for more."""
        return self._transcript(self._decode(self._open_decoder()))

    def finish(self) -> Transcript:
        """End the utterance and return its transcript."""
        decoded = self._decode(self._open_decoder())
        self._release()
        return self._transcript(decoded)

    def cancel(self) -> None:
        """Abandon the utterance.  Idempotent."""
        self._release()

    def _decode(self, decoder: WhisperDecoder) -> Decoded:
        if self._last is not None and self._last[0] == self._samples:
            return self._last[1]  # nothing fed since the last decoding
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        pcm = self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)
        audio = pcm.astype(np.float32) / 32768.0
        decoded = decoder.decode(audio, prompt=self._prompt)
        self._last = (self._samples, decoded)
        return decoded

    def _transcript(self, decoded: Decoded) -> Transcript:
        return Transcript(text=decoded.text, confidence=decoded.confidence, audio_ms=self.audio_ms)

    def _release(self) -> None:
        self._decoder = None
        self._chunks = []


class WhisperTranscriber:
    """Whisper ASR (16 kHz) on one loaded CTranslate2 model; see the module docstring.

    ``model`` is a local CTranslate2 Whisper directory (a faster-whisper size
    name such as ``"base.en"`` is passed to faster-whisper unchanged, which may
    download it).  ``threads`` becomes ``cpu_threads``; ``num_workers`` is how
    many decodings run at once; ``beam_size=1`` is greedy decoding.  The window
    options, ``guard``, ``fallback`` and ``lead_silence_ms`` are :class:`WhisperDecoder`'s;
    ``slot_prompts`` replaces :data:`SLOT_PROMPTS` (``{}``: none).
    """

    def __init__(
        self,
        *,
        model: str | Path,
        threads: int = 1,
        num_workers: int = 1,
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str = "en",
        encoder_window: EncoderWindow = DEFAULT_WINDOW,
        utterance_pad_ms: int = 200,
        utterance_min_window_ms: int = 15_000,
        domain_prompt_tokens: int = 30,
        slot_prompts: Mapping[str, str] | None = None,
        guard: DecodeGuard | None = None,
        fallback: bool = True,
        lead_silence_ms: int = 0,
    ) -> None:
        if domain_prompt_tokens < 0:
            raise EngineError("domain_prompt_tokens must be >= 0")
        self._decoder = WhisperDecoder(
            model=model,
            threads=threads,
            num_workers=num_workers,
            compute_type=compute_type,
            beam_size=beam_size,
            language=language,
            encoder_window=encoder_window,
            utterance_pad_ms=utterance_pad_ms,
            utterance_min_window_ms=utterance_min_window_ms,
            guard=guard,
            fallback=fallback,
            lead_silence_ms=lead_silence_ms,
        )
        self._prompt_tokens = domain_prompt_tokens
        self._slot_prompts = dict(SLOT_PROMPTS if slot_prompts is None else slot_prompts)
        self._lock = threading.Lock()
        self._domains: dict[str, str | None] = {}

    @property
    def sample_rate_hz(self) -> int:
        return SAMPLE_RATE_HZ

    @property
    def synthetic(self) -> bool:
        """Whether the model has random weights (its figures must be labelled synthetic)."""
        return self._decoder.synthetic

    @property
    def encoder_window(self) -> EncoderWindow:
        return self._decoder.encoder_window

    @property
    def stats(self) -> DecodeStats:
        """Decodings, 30 s fallbacks (by reason) and degenerate results so far."""
        return self._decoder.stats

    def domain_prompt(self, name: str) -> str | None:
        """The prompt prepared for domain ``name`` (``None``: no prompt)."""
        with self._lock:
            if name not in self._domains:
                raise EngineError(f"ASR domain {name!r} was not prepared")
            return self._domains[name]

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        """Record domain ``name``: its slot type's prompt, else its phrases' content words."""
        prompt = prompt_for_domain(name, phrases, slot_prompts=self._slot_prompts,
                                   max_tokens=self._prompt_tokens,
                                   count_tokens=self._decoder.count_tokens)
        with self._lock:
            self._domains[name] = prompt
        logger.info("prepared ASR domain %r: prompt %r", name, prompt)

    def open_stream(self, *, domain: str | None = None) -> WhisperStream:
        """Start an utterance; ``domain`` must have been prepared (``None``: no prompt)."""
        prompt = None if domain is None else self.domain_prompt(domain)
        return WhisperStream(self._decoder, prompt=prompt)
