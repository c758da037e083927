"""Speech recognition with Whisper (faster-whisper / CTranslate2), whole utterances on CPU.

:class:`WhisperTranscriber` implements :class:`voicebot.engines.base.Transcriber`
at 16 kHz.  Whisper is not incremental: a stream buffers what it is fed and the
model runs on ``finish`` (or on :meth:`WhisperStream.transcribe_so_far`, which
lets the caller decode speculatively when silence starts; if nothing was fed
since, ``finish`` returns that result without decoding again).  The model is
loaded once per transcriber and shared by its streams; CTranslate2 runs
``num_workers`` calls at once and queues the rest (``threads`` intra-op threads
each).  Voice activity detection is off: voicebot endpoints utterances itself.

Encoder window (``encoder_window``):

* ``"30s"`` (default): faster-whisper as released, every utterance padded to a
  30 s window (3000 mel frames).  The encoder costs the same for "yes" as for a
  29 s sentence, and it dominates the latency of short utterances on CPU.
* ``"utterance"``: only the utterance plus ``utterance_pad_ms`` of zeros is
  encoded, calling ``ctranslate2.models.Whisper`` directly.  Encoder cost
  scales with the utterance length, so short answers decode several times
  faster.  The trade-off: Whisper was trained on 30 s windows only, so real
  models may lose accuracy (more hallucinated or dropped words), most of all on
  very short utterances; measure word error rate on your audio before using it.

Domains: ``prepare_domain`` keeps a short prompt per domain (:func:`domain_prompt`):
the phrases' most frequent content words (function words, digits and one-letter
words dropped; ties in order of first use) within ``domain_prompt_tokens``
tokens (30 by default; 0 records the domain and prompts nothing), passed as
faster-whisper ``hotwords`` (after ``<|startofprev|>``).  A prompt biases spelling and
vocabulary a little and costs a few ms of decoder prefill per utterance; it
can also make Whisper "hear" prompt words in noise, hence the small cap.

Synthetic models (random weights, :mod:`voicebot.whisper.synthetic`) decode a
realistic number of random tokens (3 per second of audio) so their latency is
that of real speech; see :mod:`voicebot.whisper.decoding`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from voicebot.engines.base import Pcm, Transcript
from voicebot.errors import EngineError
from voicebot.whisper.decoding import Decoded, EncoderWindow, WhisperDecoder

__all__ = ["STOP_WORDS", "WhisperStream", "WhisperTranscriber", "content_words", "domain_prompt"]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves yes yeah ok okay please thanks thank hi hello um uh
    i'd i'll i'm i've you're it's that's don't can't won't
    """.split()
)
"""English function words and fillers that make poor prompt words."""

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def content_words(phrases: Sequence[str]) -> list[str]:
    """Content words of ``phrases``, most frequent first (ties: first use first)."""
    counts: Counter[str] = Counter()
    first_use: dict[str, int] = {}
    for phrase in phrases:
        for word in _WORD.findall(phrase.lower()):
            if len(word) < 2 or word in STOP_WORDS:
                continue
            counts[word] += 1
            first_use.setdefault(word, len(first_use))
    return sorted(counts, key=lambda w: (-counts[w], first_use[w]))


def domain_prompt(
    phrases: Sequence[str],
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 30,
) -> str | None:
    """Space-separated content words of ``phrases`` within ``max_tokens`` tokens.

    ``count_tokens`` gives the prompt's length in model tokens (it is encoded
    with a leading space, as faster-whisper sends hotwords).  Returns ``None``
    when no word fits or ``max_tokens`` is 0.
    """
    chosen: list[str] = []
    used = 0
    for word in content_words(phrases):
        if used >= max_tokens:
            break
        tokens = count_tokens(" " + " ".join([*chosen, word]))
        if tokens <= max_tokens:
            chosen.append(word)
            used = tokens
    return " ".join(chosen) or None


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
    many decodings run at once; ``beam_size=1`` is greedy decoding.
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
        encoder_window: EncoderWindow = "30s",
        utterance_pad_ms: int = 200,
        domain_prompt_tokens: int = 30,
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
        )
        self._prompt_tokens = domain_prompt_tokens
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

    def domain_prompt(self, name: str) -> str | None:
        """The prompt prepared for domain ``name`` (``None``: no prompt)."""
        with self._lock:
            if name not in self._domains:
                raise EngineError(f"ASR domain {name!r} was not prepared")
            return self._domains[name]

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        """Record domain ``name`` with a short prompt of its phrases' content words."""
        prompt = None
        if self._prompt_tokens:
            prompt = domain_prompt(
                phrases, count_tokens=self._decoder.count_tokens, max_tokens=self._prompt_tokens
            )
        with self._lock:
            self._domains[name] = prompt
        logger.info("prepared ASR domain %r: prompt %r", name, prompt)

    def open_stream(self, *, domain: str | None = None) -> WhisperStream:
        """Start an utterance; ``domain`` must have been prepared (``None``: no prompt)."""
        prompt = None if domain is None else self.domain_prompt(domain)
        return WhisperStream(self._decoder, prompt=prompt)
