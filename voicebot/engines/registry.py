"""Lazy name registry of engines (uvicorn-style): importing voicebot loads no model
runtime; a name is resolved, and its module imported, only when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.engines.engine_set import EngineSet
from voicebot.errors import ConfigError, EngineUnavailableError

__all__ = ["ENGINE_NAMES", "EngineOptions", "build_engine", "build_engine_set", "model_path"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """What every factory gets: the thread budget, the models cache, its own options.

    ``manifest`` is the model manifest used to resolve model names to installed paths.
    """

    threads: int = 1
    models_dir: Path = Path("models/cache")
    options: Mapping[str, Any] = field(default_factory=dict)
    manifest: Path | None = None


_SYNTHETIC = "synthetic:"


def model_path(value: str | Path, o: EngineOptions) -> Path:
    """A model named in config: a path, a manifest name installed in ``models_dir``,
    or ``synthetic:whisper-base`` (built into ``models_dir/synthetic`` on first use)."""
    text = str(value)
    if text.startswith(_SYNTHETIC):
        from voicebot.whisper.synthetic import build_synthetic_whisper

        name = text[len(_SYNTHETIC):]
        return build_synthetic_whisper(name, o.models_dir / "synthetic" / name)
    from voicebot.modelhub.manifest import load_manifest
    from voicebot.modelhub.store import resolve_model

    manifest = load_manifest(o.manifest) if o.manifest is not None else None
    return resolve_model(text, o.models_dir, manifest)


def _silero(o: EngineOptions) -> Any:
    """``model``: a manifest name (``silero-vad``) or a path; none is faster-whisper's copy."""
    from voicebot.vad.silero import SileroSpeechDetector

    options = dict(o.options)
    model = options.pop("model", None)
    if model is not None:
        options["model_path"] = model_path(model, o)
    return SileroSpeechDetector(threads=o.threads, **options)


def _pocketsphinx(o: EngineOptions) -> Any:
    from voicebot.engines.pocketsphinx_asr import PocketsphinxTranscriber

    return PocketsphinxTranscriber(**o.options)


def _whisper(o: EngineOptions) -> Any:
    """Options are WhisperTranscriber's; ``guard`` may be a mapping of DecodeGuard fields.

    Defaults (voicebot.engines.whisper_asr): ``encoder_window: utterance`` (15 s
    minimum window, 30 s fallback on a degenerate decoding), greedy, int8.
    """
    from voicebot.engines.whisper_asr import WhisperTranscriber
    from voicebot.whisper.guard import DecodeGuard

    options = dict(o.options)
    model = model_path(options.pop("model", "whisper-base.en"), o)
    guard = options.get("guard")
    if isinstance(guard, Mapping):
        try:
            options["guard"] = DecodeGuard(**guard)
        except ValueError as exc:
            raise ConfigError(f"bad whisper guard options {dict(guard)}: {exc}") from exc
    return WhisperTranscriber(model=model, threads=o.threads, **options)


def _piper(o: EngineOptions) -> Any:
    from voicebot.engines.piper_tts import PiperSynthesizer

    options = dict(o.options)
    voice = model_path(options.pop("voice", "en_US-lessac-medium"), o)
    if voice.is_dir():  # a pulled voice: <dir>/<name>.onnx
        onnx = sorted(voice.glob("*.onnx"))
        if not onnx:
            raise EngineUnavailableError(f"no .onnx voice in {voice}")
        voice = onnx[0]
    return PiperSynthesizer(voice_path=voice, threads=o.threads, **options)


def _minilm(o: EngineOptions) -> Any:
    from voicebot.nlu.classifier import EmbeddingIntentClassifier
    from voicebot.nlu.embedder import MiniLmEmbedder
    from voicebot.nlu.embedding_cache import EmbeddingCache

    quantized = bool(o.options.get("quantized", True))
    embedder = MiniLmEmbedder.from_cache(o.models_dir, quantized=quantized, threads=o.threads)
    cache = EmbeddingCache(o.models_dir / "nlu-embeddings.sqlite3", model_key=embedder.cache_key)
    return EmbeddingIntentClassifier(embedder=embedder, cache=cache)


def _espeak(o: EngineOptions) -> Any:
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    return EspeakSynthesizer(**o.options)


def _smart_turn(o: EngineOptions) -> Any:
    """``model``: a manifest name (default ``smart-turn-v3.2``) or a path; ``threshold``."""
    from voicebot.engines.smart_turn import MODEL_NAME, SmartTurnDetector

    options = dict(o.options)
    model = model_path(options.pop("model", MODEL_NAME), o)
    return SmartTurnDetector(model_path=model, threads=o.threads, **options)


def _fake(kind: str) -> Callable[[EngineOptions], Any]:
    def build(o: EngineOptions) -> Any:
        from voicebot.engines import fakes

        cls = {
            "vad": fakes.FakeSpeechDetector,
            "asr": fakes.FakeTranscriber,
            "nlu": fakes.FakeIntentClassifier,
            "tts": fakes.FakeSynthesizer,
            "turn": fakes.FakeTurnDetector,
        }[kind]
        return cls(**o.options)

    return build


_FACTORIES: dict[str, dict[str, Callable[[EngineOptions], Any]]] = {
    "vad": {"silero": _silero, "fake": _fake("vad")},
    "asr": {"pocketsphinx": _pocketsphinx, "whisper": _whisper, "fake": _fake("asr")},
    "nlu": {"minilm": _minilm, "fake": _fake("nlu")},
    "tts": {"espeak": _espeak, "piper": _piper, "fake": _fake("tts")},
    "turn": {"smart-turn": _smart_turn, "fake": _fake("turn")},
}
_SET_KINDS = ("vad", "asr", "nlu", "tts")
"""The kinds every :class:`EngineSet` holds; ``turn`` (the end-of-turn model) only when named."""

ENGINE_NAMES: Mapping[str, tuple[str, ...]] = {k: tuple(v) for k, v in _FACTORIES.items()}
"""Engine names per kind, for configuration validation and ``--help``."""


def build_engine(kind: str, name: str, options: EngineOptions) -> Any:
    """Build engine ``name`` of ``kind`` (``vad``, ``asr``, ``nlu``, ``tts``, ``turn``)."""
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


def build_engine_set(
    names: Mapping[str, str],
    options: Mapping[str, EngineOptions],
    *,
    prompt_cache_dir: Path | None = None,
    prompt_cache_bytes: int = 64 * 1024 * 1024,
) -> EngineSet:
    """Build the four engines named in ``names`` (kind → engine name), and the
    end-of-turn model where ``names`` has a ``turn``; vad ``none`` builds no detector
    (a cell's set: the front process runs the VAD).

    The synthesizer is wrapped in a prompt cache (memory, plus disk under
    ``prompt_cache_dir`` when given): a scenario's static prompts are
    synthesized once per voice at scenario load and reused.
    """
    from voicebot.engines.prompt_cache import CachingSynthesizer

    built: dict[str, Any] = {
        kind: None if kind == "vad" and names[kind] == "none"
        else build_engine(kind, names[kind], options[kind])
        for kind in _SET_KINDS
    }
    synthesizer = CachingSynthesizer(
        built["tts"], cache_dir=prompt_cache_dir, max_memory_bytes=prompt_cache_bytes
    )
    turn = names.get("turn")
    return EngineSet(
        detector=built["vad"],
        transcriber=built["asr"],
        classifier=built["nlu"],
        synthesizer=synthesizer,
        turn=build_engine("turn", turn, options["turn"]) if turn else None,
    )
