"""Lazy name registry of engines (uvicorn-style): importing voicebot loads no model
runtime; a name is resolved, and its module imported, only when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.errors import ConfigError, EngineUnavailableError
from voicebot.jobs import EngineSet

__all__ = ["ENGINE_NAMES", "EngineOptions", "build_engine", "build_engine_set"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What every factory gets: the thread budget, the models cache, its own options."""

    threads: int = 1
    models_dir: Path = Path("models/cache")
    options: Mapping[str, Any] = field(default_factory=dict)


def _silero(o: EngineOptions) -> Any:
    from voicebot.vad.silero import SileroSpeechDetector

    return SileroSpeechDetector(threads=o.threads, **o.options)


def _pocketsphinx(o: EngineOptions) -> Any:
    from voicebot.engines.pocketsphinx_asr import PocketsphinxTranscriber

    return PocketsphinxTranscriber(**o.options)


def _minilm(o: EngineOptions) -> Any:
    from voicebot.nlu.classifier import EmbeddingIntentClassifier
    from voicebot.nlu.embedder import MiniLmEmbedder

    quantized = bool(o.options.get("quantized", True))
    embedder = MiniLmEmbedder.from_cache(o.models_dir, quantized=quantized, threads=o.threads)
    return EmbeddingIntentClassifier(embedder=embedder)


def _espeak(o: EngineOptions) -> Any:
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    return EspeakSynthesizer(**o.options)


def _fake(kind: str) -> Callable[[EngineOptions], Any]:
    def build(o: EngineOptions) -> Any:
        from voicebot import testing

        cls = {
            "vad": testing.FakeSpeechDetector,
            "asr": testing.FakeTranscriber,
            "nlu": testing.FakeIntentClassifier,
            "tts": testing.FakeSynthesizer,
        }[kind]
        return cls(**o.options)

    return build


_FACTORIES: dict[str, dict[str, Callable[[EngineOptions], Any]]] = {
    "vad": {"silero": _silero, "fake": _fake("vad")},
    "asr": {"pocketsphinx": _pocketsphinx, "fake": _fake("asr")},
    "nlu": {"minilm": _minilm, "fake": _fake("nlu")},
    "tts": {"espeak": _espeak, "fake": _fake("tts")},
}

ENGINE_NAMES: Mapping[str, tuple[str, ...]] = {k: tuple(v) for k, v in _FACTORIES.items()}
"""Engine names per kind, for configuration validation and ``--help``."""


def build_engine(kind: str, name: str, options: EngineOptions) -> Any:
    """Build engine ``name`` of ``kind`` (``vad``, ``asr``, ``nlu``, ``tts``)."""
    factories = _FACTORIES.get(kind)
    if factories is None:
        raise ConfigError(f"unknown engine kind {kind!r}")
    factory = factories.get(name)
    if factory is None:
        raise ConfigError(f"unknown {kind} engine {name!r}; known: {', '.join(factories)}")
    try:
        return factory(options)
    except ImportError as exc:
        raise EngineUnavailableError(f"{kind} engine {name!r} needs {exc.name}") from exc
    except TypeError as exc:
        raise ConfigError(f"bad options for {kind} engine {name!r}: {exc}") from exc


def build_engine_set(names: Mapping[str, str], options: Mapping[str, EngineOptions]) -> EngineSet:
    """Build the four engines named in ``names`` (kind → engine name)."""
    built = {kind: build_engine(kind, names[kind], options[kind]) for kind in _FACTORIES}
    return EngineSet(
        detector=built["vad"],
        transcriber=built["asr"],
        classifier=built["nlu"],
        synthesizer=built["tts"],
    )
