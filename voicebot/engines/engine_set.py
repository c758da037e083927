"""The models one worker uses, shared by all its calls: :class:`EngineSet`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from voicebot.audio.resample import resample
from voicebot.dialog.engine import DEFAULT_REPROMPT
from voicebot.dialog.scenario import Scenario
from voicebot.engines.base import IntentClassifier, SpeechDetector, Synthesizer, Transcriber
from voicebot.engines.prompt_cache import CachingSynthesizer, static_prompt_sentences
from voicebot.turn.detector import TurnDetector

__all__ = ["EngineSet"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSet:
    """The models one worker uses, shared by all its calls."""

    detector: SpeechDetector | None
    """None where the VAD runs elsewhere (a cell: the front process runs it)."""
    transcriber: Transcriber
    classifier: IntentClassifier
    synthesizer: Synthesizer
    turn: TurnDetector | None = None
    """The end-of-turn model (None: none configured; ``turn_policy: model`` needs one)."""

    def prepare(self, scenario: Scenario) -> None:
        """Scenario load: bias the ASR (one domain per listening context), train the NLU,
        and pre-synthesize the scenario's static prompts when the TTS has a prompt cache."""
        for name, phrases in scenario.asr_domains().items():
            self.transcriber.prepare_domain(name=name, phrases=phrases)
        self.classifier.train(domain=scenario.name, examples=scenario.intents,
                              out_of_scope=scenario.out_of_scope)
        if isinstance(self.synthesizer, CachingSynthesizer):
            texts = [*static_prompt_sentences(scenario), DEFAULT_REPROMPT]
            made = self.synthesizer.warm(texts)
            log.info("prompt cache for %s: %d sentences, %d synthesized now",
                     scenario.name, len(texts), made)

    def warm_up(self, *, domain: str, phrase: str = "Hello, I would like to help.") -> None:
        """Run every engine once so the first call does not pay lazy initialisation.

        The ASR hears real speech (``phrase``, synthesized): recognizers that
        adapt their feature normalisation must not start from digital silence.
        """
        speech = self.synthesizer.synthesize(phrase)
        rate = self.transcriber.sample_rate_hz
        if self.synthesizer.sample_rate_hz != rate and len(speech):
            speech = resample(speech, in_rate_hz=self.synthesizer.sample_rate_hz,
                              out_rate_hz=rate)
        if self.detector is not None:
            stream = self.detector.open_stream()
            stream.probabilities(np.zeros(self.detector.window_samples, dtype=np.int16))
        asr = self.transcriber.open_stream(domain=domain)
        asr.feed(speech)
        asr.finish()
        self.classifier.classify(phrase, domain=domain)
        if self.turn is not None and len(speech):
            if self.turn.sample_rate_hz != rate:
                speech = resample(speech, in_rate_hz=rate, out_rate_hz=self.turn.sample_rate_hz)
            self.turn.predict(speech)
