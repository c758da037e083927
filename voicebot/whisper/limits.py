"""Whisper's fixed sizes and the decode rules both transcribers apply (pure).

The CPU decoder (:mod:`voicebot.whisper.decoding`) and the GPU batch transcriber
(:mod:`voicebot.engines.whisper_batch`) decode the same way: the same window,
the same token budget for synthetic models, the same ``max_length`` arithmetic
for CTranslate2, the same average log-probability and the same "that was silence"
rule (faster-whisper's defaults).  Each is written once, here.
"""

from __future__ import annotations

import math

__all__ = [
    "FRAMES_PER_S",
    "LOG_PROB_THRESHOLD",
    "MAX_INITIAL_TIMESTAMP_INDEX",
    "MAX_LENGTH",
    "MAX_NEW_TOKENS",
    "NO_SPEECH_THRESHOLD",
    "SAMPLE_RATE_HZ",
    "SYNTHETIC_TOKENS_PER_SECOND",
    "WINDOW_FRAMES",
    "average_logprob",
    "heard_silence",
    "max_length_for",
    "synthetic_token_limit",
]

SAMPLE_RATE_HZ = 16000
FRAMES_PER_S = 100  # 10 ms log-mel frames
WINDOW_FRAMES = 3000  # 30 s
MAX_LENGTH = 448  # text positions: prompt + new tokens
MAX_NEW_TOKENS = MAX_LENGTH // 2
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s, faster-whisper's default
SYNTHETIC_TOKENS_PER_SECOND = 3.0
"""Tokens a synthetic model decodes per second of audio (about real speech's rate)."""


def max_length_for(new_tokens: int, prompt_length: int) -> int:
    """CTranslate2 ``max_length`` that lets exactly ``new_tokens`` be generated.

    CTranslate2 caps new tokens at ``min(max_length // 2, max_length - start_step)``,
    ``start_step`` being the prompt tokens before the last one.
    """
    return min(MAX_LENGTH, max(2 * new_tokens, new_tokens + prompt_length - 1))


def synthetic_token_limit(audio_s: float) -> int:
    """The tokens real speech of ``audio_s`` would take (what a synthetic model may emit)."""
    return max(1, math.ceil(SYNTHETIC_TOKENS_PER_SECOND * min(audio_s, 30.0)))


def average_logprob(score: float, generated: int, kept: int) -> float:
    """faster-whisper's average log-probability: the sequence's summed score over the
    ``kept`` text tokens plus one (``score`` is CTranslate2's length-normalised score of
    ``generated`` tokens)."""
    return score * generated / (kept + 1)


def heard_silence(*, no_speech_prob: float, avg_logprob: float, synthetic: bool) -> bool:
    """Whether a decode is silence, not text (a synthetic model's no-speech is noise)."""
    return (not synthetic and no_speech_prob > NO_SPEECH_THRESHOLD
            and avg_logprob < LOG_PROB_THRESHOLD)
