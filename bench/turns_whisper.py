"""Speculative transcripts from the REAL Whisper for the turn-taking benchmark.

:class:`WhisperTranscripts` is a :class:`bench.turns_policies.PartialSource`: at each
short pause of a yes/no or digits turn it decodes the turn's audio up to the pause
with the default stack's recogniser (Whisper tiny.en int8, utterance window, beam 5,
200 ms lead silence: ``server.stacks.MEASURED_WHISPER``) in the bank_card scenario's
ASR domain for that slot (``bank_card/digits``: the "Card number: 4 2 1 7." prompt), as
the server would, and the transcript comes back its MEASURED decode time later.  The
expectations then read what Whisper heard, not the labels: a digit dropped or
merged, a pause heard as a word, all count.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from voicebot.engines.base import Pcm, Transcriber
from voicebot.vad.turn_records import TurnPolicyConfig

from .turns import PolicySpec, TurnContext
from .turns_policies import TurnModelAnswers, eot_policy
from .turns_voices import RATE_HZ

__all__ = ["WHISPER_MODEL", "WhisperTranscripts", "load_whisper", "whisper_policies"]

log = logging.getLogger(__name__)

WHISPER_MODEL = "whisper-tiny.en"
_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "bank_card.yaml"
_SLOTS = {"digits": "digits", "yes_no": "yes_no"}  # TurnContext.expect -> slot type


class WhisperTranscripts:
    """Whisper's transcript of a turn so far and its measured decode time (ms).

    ``domains`` maps a :class:`TurnContext` ``expect`` to the ASR domain to decode in
    (prepared on ``transcriber``).  Transcripts are remembered by audio and domain
    (policies that speculate at the same pause pay the first measurement); ``calls``
    and ``total_ms`` count the real decodes."""

    def __init__(self, transcriber: Transcriber, *, domains: Mapping[str, str]) -> None:
        self._asr = transcriber
        self._domains = dict(domains)
        self._done: dict[tuple[str, int, bytes], tuple[str, float]] = {}
        self.calls = 0
        self.total_ms = 0.0

    def transcribe(self, context: TurnContext, pcm: Pcm, labels: str) -> tuple[str, float]:
        domain = self._domains.get(context.expect, self._domains.get("free", ""))
        key = (domain, len(pcm), hashlib.blake2b(pcm.tobytes(), digest_size=16).digest())
        found = self._done.get(key)
        if found is None:
            started = time.perf_counter()
            stream = self._asr.open_stream(domain=domain or None)
            stream.feed(pcm)
            text = stream.finish().text
            spent_ms = (time.perf_counter() - started) * 1000
            found = self._done[key] = (text, spent_ms)
            self.calls += 1
            self.total_ms += spent_ms
            log.debug("%s: whisper heard %d chars in %.0f ms", context.clip_id, len(text),
                      spent_ms)
        return found

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else float("nan")


def load_whisper(models_dir: Path, manifest: Path | None) -> WhisperTranscripts:
    """The default stack's Whisper with the bank_card scenario's domains, warmed up."""
    from server.stacks import MEASURED_WHISPER
    from voicebot.dialog.loader import load_scenario
    from voicebot.engines.registry import EngineOptions, build_engine

    asr: Transcriber = build_engine("asr", "whisper", EngineOptions(
        models_dir=models_dir, manifest=manifest,
        options={**MEASURED_WHISPER, "model": WHISPER_MODEL}))
    scenario = load_scenario(_SCENARIO)
    for name, phrases in scenario.asr_domains().items():
        asr.prepare_domain(name=name, phrases=phrases)
    domains = {expect: scenario.asr_domain(slot) for expect, slot in _SLOTS.items()}
    domains["free"] = scenario.asr_domain()
    warm = asr.open_stream(domain=domains["digits"])
    warm.feed(np.zeros(RATE_HZ, np.int16))
    warm.finish()
    return WhisperTranscripts(asr, domains=domains)


def whisper_policies(model: TurnModelAnswers, transcripts: WhisperTranscripts) -> list[PolicySpec]:
    """Smart Turn + expectations on Whisper's transcripts (``smart-turn+expect-whisper``,
    otherwise ``smart-turn+expect``)."""
    return [eot_policy("smart-turn+expect-whisper", "smart turn + expect, Whisper partials",
                       TurnPolicyConfig(), model=model, transcripts=transcripts)]
