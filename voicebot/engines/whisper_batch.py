"""Whisper over a batch of utterances from many calls (CTranslate2, CUDA or CPU).

:class:`WhisperBatchTranscriber` implements
:class:`voicebot.engines.gpu_batch.BatchTranscriber` for the GPU worker: faster-whisper's
feature extractor gives each utterance's log-mel features, the batch is padded to
one encoder window (the utterance window of :mod:`voicebot.whisper.decoding`: the
longest utterance + ``utterance_pad_ms``, at least ``utterance_min_window_ms``;
``"30s"``: 30 s), encoded in one call, and decoded greedily in one
``Whisper.generate`` call, each utterance with its own domain prompt.  Greedy: a
beam multiplies the decoder's batch, and on a GPU the batch is where the time
goes.  The CPU adapter's 30 s fallback for a degenerate decoding is not run here
(its output is cut at the guard's token budget instead).

``device="cuda"`` with ``compute_type="int8_float16"`` (default) or ``"float16"``;
``device="cpu"`` (``int8``) runs the same code on the CPU (tests, the GPU check's
baseline).  Domains and prompts are the CPU adapter's
(:func:`voicebot.engines.whisper_asr.domain_prompt`, :data:`SLOT_PROMPTS`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.engines.base import Transcript
from voicebot.engines.devices import Device
from voicebot.engines.gpu_batch import DecodeRequest
from voicebot.errors import EngineError, EngineUnavailableError
from voicebot.whisper.guard import DecodeGuard
from voicebot.whisper.limits import (
    FRAMES_PER_S,
    MAX_INITIAL_TIMESTAMP_INDEX,
    MAX_NEW_TOKENS,
    SAMPLE_RATE_HZ,
    WINDOW_FRAMES,
    average_logprob,
    heard_silence,
    max_length_for,
    synthetic_token_limit,
)
from voicebot.whisper.prompts import SLOT_PROMPTS, prompt_for_domain
from voicebot.whisper.synthetic import is_synthetic

__all__ = ["WhisperBatchTranscriber"]

logger = logging.getLogger(__name__)



class WhisperBatchTranscriber:
    """Whisper on ``device``, whole utterances in batches; see the module docstring."""

    def __init__(self, *, model: str | Path, device: Device = "cuda", device_index: int = 0,
                 compute_type: str = "int8_float16", threads: int = 1, language: str = "en",
                 encoder_window: str = "utterance", utterance_pad_ms: int = 200,
                 utterance_min_window_ms: int = 15_000, lead_silence_ms: int = 200,
                 domain_prompt_tokens: int = 30,
                 slot_prompts: Mapping[str, str] | None = None) -> None:
        if encoder_window not in ("30s", "utterance"):
            raise EngineError(f"encoder_window must be '30s' or 'utterance', not "
                              f"{encoder_window!r}")
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
        except ImportError as exc:
            raise EngineUnavailableError("faster-whisper is not installed") from exc
        text = str(model)
        local = isinstance(model, Path) or os.path.isdir(text)
        if local and not (Path(model) / "model.bin").is_file():
            raise EngineUnavailableError(f"no CTranslate2 Whisper model in {model}")
        try:
            self._whisper: Any = WhisperModel(text, device=device, device_index=device_index,
                                              compute_type=compute_type, cpu_threads=threads,
                                              num_workers=1)
        except ValueError as exc:
            raise EngineError(f"cannot load Whisper {model} on {device}: {exc}") from exc
        except (RuntimeError, OSError) as exc:
            raise EngineUnavailableError(f"cannot load Whisper {model} on {device}: {exc}") \
                from exc
        multilingual = bool(self._whisper.model.is_multilingual)
        self._tokenizer: Any = Tokenizer(self._whisper.hf_tokenizer, multilingual,
                                         task="transcribe", language=language)
        self.synthetic = local and is_synthetic(model)
        suppress = set(get_suppressed_tokens(self._tokenizer, [-1]))
        if self.synthetic:  # random weights: text tokens only, never the end
            vocabulary = self._whisper.hf_tokenizer.get_vocab_size(with_added_tokens=True)
            suppress.update(range(self._tokenizer.eot, vocabulary))
        self._suppress = sorted(suppress)
        self._window = encoder_window
        self._pad_frames = utterance_pad_ms * FRAMES_PER_S // 1000
        self._min_frames = min(WINDOW_FRAMES, utterance_min_window_ms * FRAMES_PER_S // 1000)
        self._lead = np.zeros(lead_silence_ms * SAMPLE_RATE_HZ // 1000, dtype=np.float32)
        self._guard = DecodeGuard()
        self._prompt_tokens = domain_prompt_tokens
        self._slot_prompts = dict(SLOT_PROMPTS if slot_prompts is None else slot_prompts)
        self._lock = threading.Lock()
        self._prompts: dict[str, list[int]] = {}
        self.device = device
        logger.info("loaded Whisper %s on %s:%d (%s, %s window, batched greedy%s)", model,
                    device, device_index, compute_type, encoder_window,
                    ", SYNTHETIC" if self.synthetic else "")

    @property
    def sample_rate_hz(self) -> int:
        return SAMPLE_RATE_HZ

    def _prompt_ids(self, prompt: str | None) -> list[int]:
        ids: list[int] = self._whisper.get_prompt(self._tokenizer, [], without_timestamps=True,
                                                  hotwords=prompt)
        return ids

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        prompt = prompt_for_domain(name, phrases, slot_prompts=self._slot_prompts,
                                   max_tokens=self._prompt_tokens,
                                   count_tokens=lambda t: len(self._tokenizer.encode(t)))
        with self._lock:
            self._prompts[name] = self._prompt_ids(prompt)

    def _ids_for(self, domain: str | None) -> list[int]:
        with self._lock:
            ids = self._prompts.get(domain) if domain is not None else None
        return ids if ids is not None else self._prompt_ids(None)

    def _features(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        audio = np.concatenate((self._lead, pcm.astype(np.float32) / 32768.0))
        features: npt.NDArray[np.float32] = self._whisper.feature_extractor(audio)
        content = max(1, features.shape[-1] - 1)  # the last frame is faster-whisper's padding
        return features[:, -WINDOW_FRAMES:] if content > WINDOW_FRAMES else \
            features[:, :content]

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcript]:
        if not requests:
            return []
        features = [self._features(r.pcm) for r in requests]
        if self._window == "30s":
            frames = WINDOW_FRAMES
        else:
            longest = max(f.shape[1] for f in features)
            frames = min(WINDOW_FRAMES, max(longest + self._pad_frames, self._min_frames))
            frames += frames % 2
        batch = np.empty((len(features), features[0].shape[0], frames), dtype=np.float32)
        for i, f in enumerate(features):
            batch[i] = max(float(f.max()) - 2.0, -1.5)  # the level silence gets next to f
            batch[i, :, : f.shape[1]] = f
        audio_s = [len(r.pcm) / SAMPLE_RATE_HZ for r in requests]
        budget = max(self._budget(s) for s in audio_s)
        prompts = [self._ids_for(r.domain) for r in requests]
        try:
            encoded = self._whisper.encode(batch)
            results = self._whisper.model.generate(
                encoded, prompts, beam_size=1,
                max_length=max_length_for(budget, max(map(len, prompts))),
                return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=self._suppress,
                max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"Whisper batch of {len(requests)} failed on {self.device}: "
                              f"{exc}") from exc
        return [self._transcript(result, s) for result, s in zip(results, audio_s, strict=True)]

    def _budget(self, audio_s: float) -> int:
        if self.synthetic:
            return synthetic_token_limit(audio_s)
        return self._guard.budget(audio_s, max_tokens=MAX_NEW_TOKENS)

    def _transcript(self, result: Any, audio_s: float) -> Transcript:
        sequence = result.sequences_ids[0]
        ids = [t for t in sequence if t < self._tokenizer.eot][: self._budget(audio_s)]
        avg_logprob = average_logprob(result.scores[0], len(sequence), len(ids))
        silent = heard_silence(no_speech_prob=result.no_speech_prob, avg_logprob=avg_logprob,
                               synthetic=self.synthetic)
        text = "" if silent else self._tokenizer.decode(ids).strip()
        confidence = min(max(math.exp(avg_logprob), 0.0), 1.0) if text else None
        return Transcript(text=text, confidence=confidence, audio_ms=round(audio_s * 1000))
