"""Text to speech with Piper (VITS) voices on our own onnxruntime session.

From the ``piper-tts`` wheel only the text front end is reused: its espeak-ng
phonemizer (:class:`piper.phonemize_espeak.EspeakPhonemizer`, backed by the
``piper.espeakbridge`` extension), its voice config parser
(:class:`piper.config.PiperConfig`) and its phoneme-id mapping
(:func:`piper.phoneme_ids.phonemes_to_ids`).  The model runs on an
onnxruntime session built here, with the caller's thread budget: ``threads``
intra-op threads, one inter-op thread, sequential execution and spinning off
(piper's own session spins, which costs about 1.5x on a shared core).  The
model stays fp32: dynamic int8 quantization makes VITS slower on CPU.

Coexistence with :mod:`voicebot.engines.espeak_tts`: ``piper.espeakbridge`` links
its own static copy of libespeak-ng, and the ``espeakng_loader`` library is
opened with ``ctypes.CDLL`` (``RTLD_LOCAL``), so the two copies keep separate
global state and data directories and work in one process in either import
order.  Do not load either with ``RTLD_GLOBAL`` (``sys.setdlopenflags``): both
export the ``espeak_*`` symbols and would then share one copy's state.

Thread safety: the espeak-ng bridge keeps process-global state (voice, text
decoder), so phonemization is serialised behind a module-level lock; the
onnxruntime session is thread-safe and runs unlocked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.engines.base import Pcm
from voicebot.engines.devices import Device, ort_providers
from voicebot.errors import ConfigError, EngineError, EngineUnavailableError
from voicebot.ort_session import open_session

__all__ = ["PiperSynthesizer"]

logger = logging.getLogger(__name__)

_MAX_WAV_VALUE = 32767.0
_VOICE_HASH_CHARS = 10

_phonemizer_lock = threading.Lock()
_phonemizer: Any = None  # piper.phonemize_espeak.EspeakPhonemizer, created once per process


def _espeak_phonemize(
    voice: str, text: str, vowel_clusters: set[tuple[str, ...]] | None
) -> list[list[str]]:
    """Phonemes of ``text`` grouped by sentence, through piper's espeak-ng bridge."""
    global _phonemizer
    with _phonemizer_lock:
        if _phonemizer is None:
            try:
                from piper.phonemize_espeak import EspeakPhonemizer
            except ImportError as exc:
                raise EngineUnavailableError("piper-tts is not installed") from exc
            try:
                _phonemizer = EspeakPhonemizer()
            except Exception as exc:  # the bridge raises RuntimeError on a bad data dir
                raise EngineUnavailableError(f"cannot initialise piper's espeak-ng: {exc}") from exc
            logger.info("piper espeak-ng phonemizer initialised")
        try:
            result: list[list[str]] = _phonemizer.phonemize(
                voice, text, vowel_clusters=vowel_clusters
            )
        except Exception as exc:
            raise EngineError(f"espeak-ng phonemization failed for {text[:40]!r}: {exc}") from exc
    return result


def _load_config(path: Path) -> tuple[Any, dict[str, Any], bytes]:
    """Parse a Piper voice config: ``(PiperConfig, raw dict, file bytes)``."""
    try:
        from piper.config import PhonemeType, PiperConfig
    except ImportError as exc:
        raise EngineUnavailableError("piper-tts is not installed") from exc
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError as exc:
        raise EngineUnavailableError(f"Piper voice config not found: {path}") from exc
    except OSError as exc:
        raise EngineError(f"cannot read Piper voice config {path}: {exc}") from exc
    try:
        raw = json.loads(raw_bytes)
        if not isinstance(raw, dict):
            raise TypeError("top level is not an object")
        config = PiperConfig.from_dict(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"invalid Piper voice config {path}: {exc!r}") from exc
    if config.phoneme_type not in (PhonemeType.ESPEAK, PhonemeType.TEXT):
        raise EngineError(
            f"Piper voice {path}: phoneme_type {config.phoneme_type.value!r} is not supported"
            " (espeak or text)"
        )
    if config.sample_rate <= 0:
        raise EngineError(f"invalid Piper voice config {path}: sample_rate {config.sample_rate}")
    return config, raw, raw_bytes


def _session(voice_path: Path, *, threads: int, device: Device = "cpu",
             device_index: int = 0) -> Any:
    """An fp32 onnxruntime session: ``threads`` intra-op, sequential, no spinning; on
    ``device`` (``cuda``: ONNX Runtime's CUDA provider, from ``voicebot[gpu]``)."""
    return open_session(voice_path, threads=threads, what="Piper voice",
                        providers=ort_providers(device, device_index=device_index))


class PiperSynthesizer:
    """A Piper voice: text in, its complete int16 audio out.

    Implements :class:`voicebot.engines.base.Synthesizer`.  ``synthesize`` runs
    the model once per sentence (as espeak-ng splits them, like piper does)
    and concatenates the audio.  ``length_scale``, ``noise_scale`` and
    ``noise_w`` default to the voice config's ``inference`` values.  The float
    output is scaled to int16 and clipped; ``normalize=True`` first scales each
    sentence to full peak, as ``piper`` does by default (useful to make the
    near-silent noise of synthetic voices audible to an energy VAD).
    ``device: cuda`` runs the model on ONNX Runtime's CUDA provider (the GPU worker;
    Piper's VITS takes one utterance per run, so a batch is run back to back).
    """

    def __init__(
        self,
        *,
        voice_path: Path,
        config_path: Path | None = None,
        threads: int = 1,
        speaker_id: int | None = None,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        normalize: bool = False,
        device: Device = "cpu",
        device_index: int = 0,
    ) -> None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        voice_path = Path(voice_path)
        config_path = Path(config_path) if config_path is not None else Path(f"{voice_path}.json")
        if not voice_path.is_file():
            raise EngineUnavailableError(f"Piper voice not found: {voice_path}")
        config, raw, raw_bytes = _load_config(config_path)
        self._config = config
        self._synthetic = "synthetic" in raw
        self._length_scale = float(config.length_scale if length_scale is None else length_scale)
        self._noise_scale = float(config.noise_scale if noise_scale is None else noise_scale)
        self._noise_w = float(config.noise_w_scale if noise_w is None else noise_w)
        if self._length_scale <= 0:
            raise ConfigError(f"length_scale must be > 0, got {self._length_scale}")
        if config.num_speakers > 1:
            speaker_id = config.default_speaker_id if speaker_id is None else speaker_id
            if not 0 <= speaker_id < config.num_speakers:
                raise ConfigError(
                    f"speaker_id must be in [0, {config.num_speakers}), got {speaker_id}"
                )
        elif speaker_id not in (None, 0):
            raise ConfigError(f"Piper voice {voice_path.name} has one speaker; got {speaker_id}")
        else:
            speaker_id = None
        self._speaker_id = speaker_id
        self._normalize = normalize
        self._threads = threads
        self._voice_path = voice_path

        self._session = _session(voice_path, threads=threads, device=device,
                                 device_index=device_index)
        self._device = device
        inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input", "input_lengths", "scales"} - inputs
        if missing:
            raise EngineError(f"Piper voice {voice_path} lacks inputs {sorted(missing)}")
        self._takes_sid = "sid" in inputs
        if speaker_id is not None and not self._takes_sid:
            raise EngineError(f"Piper voice {voice_path} is multi-speaker but has no 'sid' input")
        self._scales = np.array(
            [self._noise_scale, self._length_scale, self._noise_w], dtype=np.float32
        )

        settings = json.dumps(
            [self._length_scale, self._noise_scale, self._noise_w, self._speaker_id, normalize]
        ).encode()
        digest = hashlib.sha256(raw_bytes + b"\0" + settings)
        digest.update(str(voice_path.stat().st_size).encode())
        flag = "+synthetic" if self._synthetic else ""
        self._voice_id = f"piper:{voice_path.name}{flag}:{digest.hexdigest()[:_VOICE_HASH_CHARS]}"

        if config.phoneme_type.value == "espeak":
            _espeak_phonemize(config.espeak_voice, "", None)  # initialise the bridge now
        logger.info(
            "loaded Piper voice %s (%d Hz, threads=%d%s)",
            voice_path, config.sample_rate, threads, ", SYNTHETIC" if self._synthetic else "",
        )

    @property
    def sample_rate_hz(self) -> int:
        return int(self._config.sample_rate)

    @property
    def voice_id(self) -> str:
        """``piper:<voice file name>[+synthetic]:<hash of config and settings>``."""
        return self._voice_id

    @property
    def synthetic(self) -> bool:
        """True for voices whose config is marked ``"synthetic"`` (random weights, noise)."""
        return self._synthetic

    @property
    def device(self) -> Device:
        return self._device

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def voice_path(self) -> Path:
        return self._voice_path

    def phoneme_ids(self, text: str) -> list[list[int]]:
        """The model input of each sentence of ``text`` (BOS, PAD-interleaved ids, EOS)."""
        from piper.phoneme_ids import phonemes_to_ids

        config = self._config
        if config.phoneme_type.value == "text":
            sentences = [list(unicodedata.normalize("NFD", text))]
        else:
            sentences = _espeak_phonemize(config.espeak_voice, text, config.vowel_clusters)
        return [phonemes_to_ids(s, config.phoneme_id_map) for s in sentences if s]

    def synthesize(self, text: str) -> Pcm:
        """Render ``text`` (one or more sentences) to mono int16 PCM at :attr:`sample_rate_hz`."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        chunks = [self._run(ids) for ids in self.phoneme_ids(text)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _run(self, ids: list[int]) -> Pcm:
        """One model run: phoneme ids to int16 audio."""
        feeds: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": self._scales,
        }
        if self._takes_sid:
            feeds["sid"] = np.array([self._speaker_id or 0], dtype=np.int64)
        try:
            audio = self._session.run(None, feeds)[0]
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise EngineError(f"Piper inference failed ({self._voice_path.name}): {exc}") from exc
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._normalize and samples.size:
            peak = float(np.max(np.abs(samples)))
            samples = samples / peak if peak > 1e-8 else np.zeros_like(samples)
        pcm: Pcm = np.clip(samples * _MAX_WAV_VALUE, -_MAX_WAV_VALUE, _MAX_WAV_VALUE).astype(
            np.int16
        )
        return pcm
