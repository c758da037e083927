"""Degenerate-decoding guard for Whisper: token budget, loop detection, quality checks.

Whisper's decoder can fall into a loop ("three two one one one one …", or the
whole utterance again and again), most often when its encoder window is
shorter than the 30 s it was trained on.  Pure functions here bound and judge a
decoding; :mod:`voicebot.whisper.decoding` acts on the verdict (decodes the
utterance again with the 30 s window, or trims the loop).

* :func:`token_budget`: new tokens allowed for ``audio_s`` seconds of audio,
  ``ceil(tokens_per_s * audio_s) + extra_tokens``: far above real speech (about
  3 tokens/s; digits read with commas 6), far below a loop's hundreds.
* :func:`find_loop`: the earliest run of one unit of ``period`` tokens repeated
  back to back covering at least ``min_repeated_tokens`` tokens, twice or more
  (with 8: one token 8 times, a pair 4 times, a triple 3 times, 4 tokens or more
  twice).  "5 5 5 5" is no loop; "8 6 5 2 8 6 5 2" is.
* :func:`compression_ratio`: as faster-whisper (``compression_ratio_threshold``
  2.4): repetitive text compresses well.
* ``short``: the decoder ended the text long before the audio ended, e.g. 4
  tokens ("and forevermore.") for 15 s of a prompt cut at ``max_utterance_s``
  (measured on a recorded Asterisk prompt: greedy search in either window stops
  there; a beam search reads the whole utterance).
* :meth:`DecodeGuard.assess`: the first reason a decoding looks degenerate.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DecodeGuard",
    "DegenerateReason",
    "Loop",
    "compression_ratio",
    "find_loop",
    "token_budget",
    "trim_loop",
]

DegenerateReason = Literal["budget", "loop", "compression", "short", "log_prob"]


@dataclass(frozen=True, slots=True)
class Loop:
    """``repeats`` back-to-back copies of ``tokens[start:start + period]``."""

    start: int
    period: int
    repeats: int

    @property
    def end(self) -> int:
        """Index just past the last whole copy."""
        return self.start + self.period * self.repeats


def token_budget(audio_s: float, *, tokens_per_s: float, extra_tokens: int, max_tokens: int) -> int:
    """New tokens allowed for ``audio_s`` seconds: ``ceil(rate * s) + extra``, in [1, max]."""
    if audio_s < 0 or tokens_per_s < 0 or extra_tokens < 0 or max_tokens < 1:
        raise ValueError("token_budget needs non-negative audio, rate and extra, max >= 1")
    return max(1, min(max_tokens, math.ceil(tokens_per_s * audio_s) + extra_tokens))


def find_loop(
    tokens: Sequence[int], *, min_repeated_tokens: int = 8, max_period: int = 32
) -> Loop | None:
    """The earliest loop (ties: the shortest period) of ``tokens``; ``None`` if there is none.

    A loop is a unit of ``period`` tokens (1 .. ``max_period``) repeated back to
    back at least twice, the copies covering at least ``min_repeated_tokens``.
    """
    if min_repeated_tokens < 2 or max_period < 1:
        raise ValueError("min_repeated_tokens must be >= 2 and max_period >= 1")
    n = len(tokens)
    for start in range(n):
        for period in range(1, min(max_period, (n - start) // 2) + 1):
            repeats = 1
            while _copy_at(tokens, start, period, start + repeats * period):
                repeats += 1
            if repeats >= 2 and repeats * period >= min_repeated_tokens:
                return Loop(start=start, period=period, repeats=repeats)
    return None


def _copy_at(tokens: Sequence[int], start: int, period: int, at: int) -> bool:
    if at + period > len(tokens):
        return False
    return all(tokens[start + i] == tokens[at + i] for i in range(period))


def trim_loop(tokens: Sequence[int], loop: Loop) -> list[int]:
    """``tokens`` cut after the loop's first copy (what a looping decoder said once)."""
    return list(tokens[: loop.start + loop.period])


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length (faster-whisper's repetitiveness measure)."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeGuard:
    """Bounds and checks of one decoding (see the module).

    ``min_avg_logprob`` (faster-whisper's ``log_prob_threshold``; ``None``: off)
    flags unsure decodings: worth a 30 s retry, but no loop.  ``short``: at least
    ``short_min_audio_s`` of audio and fewer than ``min_tokens_per_s`` tokens a
    second of it (speech is about 3).  A decoding judged silence (high no-speech
    probability) is never degenerate.
    """

    tokens_per_s: float = 8.0
    extra_tokens: int = 16
    min_repeated_tokens: int = 8
    max_compression_ratio: float = 2.4
    min_avg_logprob: float | None = -1.0
    short_min_audio_s: float = 4.0
    min_tokens_per_s: float = 0.6

    def __post_init__(self) -> None:
        if self.tokens_per_s <= 0 or self.extra_tokens < 0 or self.min_repeated_tokens < 2:
            raise ValueError("tokens_per_s must be > 0, extra_tokens >= 0, min_repeated >= 2")
        if self.max_compression_ratio <= 0:
            raise ValueError("max_compression_ratio must be > 0")

    def budget(self, audio_s: float, *, max_tokens: int) -> int:
        """New tokens allowed for ``audio_s`` seconds of audio."""
        return token_budget(
            audio_s,
            tokens_per_s=self.tokens_per_s,
            extra_tokens=self.extra_tokens,
            max_tokens=max_tokens,
        )

    def assess(
        self,
        tokens: Sequence[int],
        *,
        text: str,
        avg_logprob: float | None,
        budget: int,
        audio_s: float = 0.0,
        check_log_prob: bool = True,
    ) -> DegenerateReason | None:
        """Why the decoding (text ``tokens``, budget ``budget``, ``audio_s`` seconds of
        audio) looks degenerate, if it does.

        ``tokens`` are the text tokens generated (no special tokens); hitting the
        budget means the decoder never ended the text.  ``check_log_prob=False``
        skips the log-probability and short checks (judging a final result:
        unsure or short is no loop).
        """
        if len(tokens) >= budget:
            return "budget"
        if find_loop(tokens, min_repeated_tokens=self.min_repeated_tokens) is not None:
            return "loop"
        if compression_ratio(text) > self.max_compression_ratio:
            return "compression"
        if (
            check_log_prob
            and audio_s >= self.short_min_audio_s
            and len(tokens) < self.min_tokens_per_s * audio_s
        ):
            return "short"
        if (
            check_log_prob
            and self.min_avg_logprob is not None
            and avg_logprob is not None
            and tokens
            and avg_logprob < self.min_avg_logprob
        ):
            return "log_prob"
        return None
