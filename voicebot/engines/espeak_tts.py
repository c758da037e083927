"""Text to speech with libespeak-ng through ctypes (no subprocess).

The library comes from the ``espeakng_loader`` wheel.  libespeak-ng keeps
process-global state (one voice, one rate, one callback) and is not
thread-safe, so this module:

* initialises the library once per process (lazily, from the first
  :class:`EspeakSynthesizer` constructor), in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode
  so ``espeak_Synth`` returns only when the whole text is rendered;
* serialises every synthesis behind a module-level lock;
* re-applies the instance's voice, rate and pitch on every call, so several
  instances with different settings can coexist.

The synthesis callback appends the int16 samples to an in-memory buffer; the
ctypes callback object is kept referenced at module level so it is never
garbage-collected while the library holds its pointer.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from voicebot.engines.base import Pcm
from voicebot.errors import EngineError, EngineUnavailableError

__all__ = ["EspeakSynthesizer"]

logger = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_POSITION_TYPE
_POS_CHARACTER = 1
# espeak_Synth flags
_ESPEAK_CHARS_UTF8 = 1
# espeak_PARAMETER
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
# espeak_ERROR
_EE_OK = 0

_BUFFER_LENGTH_MS = 200
_DEFAULT_PITCH = 50
_MIN_RATE_WPM = 80
_MAX_RATE_WPM = 450
# Digital silence longer than this is trimmed at both ends of the audio.
_KEEP_SILENCE_MS = 50
_RAND_SEED = 1

# int t_espeak_callback(short *wav, int numsamples, espeak_EVENT *events)
_CallbackType = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(slots=True)
class _Runtime:
    """The process-wide libespeak-ng handle and its synthesis sink."""

    lib: ctypes.CDLL
    sample_rate_hz: int
    has_rand_seed: bool
    callback: object = None
    chunks: list[bytes] = field(default_factory=list)


_lock = threading.Lock()
_runtime: _Runtime | None = None


def _on_samples(wav: ctypes._Pointer[ctypes.c_short], num_samples: int, _events: int | None) -> int:
    """Synthesis callback: copy ``num_samples`` samples into the active buffer."""
    runtime = _runtime
    if runtime is not None and wav and num_samples > 0:
        runtime.chunks.append(ctypes.string_at(wav, num_samples * 2))
    return 0  # 0 = continue synthesis


def _load_runtime() -> _Runtime:
    """Load and initialise libespeak-ng once per process (caller holds ``_lock``)."""
    global _runtime
    if _runtime is not None:
        return _runtime
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EngineUnavailableError("espeakng_loader is not installed") from exc
    try:
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(lib_path)
    except (OSError, RuntimeError) as exc:
        raise EngineUnavailableError(f"cannot load libespeak-ng: {exc}") from exc

    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CallbackType]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,  # text
        ctypes.c_size_t,  # size
        ctypes.c_uint,  # position
        ctypes.c_int,  # position_type
        ctypes.c_uint,  # end_position
        ctypes.c_uint,  # flags
        ctypes.POINTER(ctypes.c_uint),  # unique_identifier
        ctypes.c_void_p,  # user_data
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    has_rand_seed = hasattr(lib, "espeak_ng_SetRandSeed")
    if has_rand_seed:
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    sample_rate_hz = int(
        lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_LENGTH_MS, data_path.encode("utf-8"), 0
        )
    )
    if sample_rate_hz <= 0:
        raise EngineUnavailableError(
            f"espeak_Initialize failed ({sample_rate_hz}) with data path {data_path}"
        )
    runtime = _Runtime(lib=lib, sample_rate_hz=sample_rate_hz, has_rand_seed=has_rand_seed)
    callback = _CallbackType(_on_samples)
    runtime.callback = callback  # keep the ctypes thunk alive
    lib.espeak_SetSynthCallback(callback)
    _runtime = runtime
    logger.info("libespeak-ng initialised at %d Hz from %s", sample_rate_hz, lib_path)
    return runtime


def _trim_silence(pcm: Pcm, *, keep_samples: int) -> Pcm:
    """Strip leading/trailing exact-zero samples beyond ``keep_samples``."""
    nonzero = np.flatnonzero(pcm)
    if nonzero.size == 0:
        return pcm[:0]
    start = max(int(nonzero[0]) - keep_samples, 0)
    stop = min(int(nonzero[-1]) + 1 + keep_samples, len(pcm))
    return pcm[start:stop]


class EspeakSynthesizer:
    """eSpeak NG speech synthesis, one text in, its complete audio out.

    Implements :class:`voicebot.engines.base.Synthesizer`.  Instances are cheap;
    they share the process-wide library and its lock.
    """

    def __init__(
        self, *, voice: str = "en-us", rate_wpm: int = 165, pitch: int | None = None
    ) -> None:
        if not _MIN_RATE_WPM <= rate_wpm <= _MAX_RATE_WPM:
            raise EngineError(
                f"rate_wpm must be in [{_MIN_RATE_WPM}, {_MAX_RATE_WPM}], got {rate_wpm}"
            )
        if pitch is not None and not 0 <= pitch <= 100:
            raise EngineError(f"pitch must be in [0, 100], got {pitch}")
        self._voice = voice
        self._rate_wpm = rate_wpm
        self._pitch = pitch
        with _lock:
            runtime = _load_runtime()
            self._apply_settings(runtime)  # fail early on an unknown voice
        self._sample_rate_hz = runtime.sample_rate_hz

    @property
    def sample_rate_hz(self) -> int:
        """Output sample rate (22050 Hz for the bundled voices)."""
        return self._sample_rate_hz

    @property
    def voice(self) -> str:
        return self._voice

    @property
    def voice_id(self) -> str:
        pitch = "default" if self._pitch is None else self._pitch
        return f"espeak-ng:{self._voice}:{self.rate_wpm}wpm:pitch-{pitch}"

    @property
    def rate_wpm(self) -> int:
        return self._rate_wpm

    def _apply_settings(self, runtime: _Runtime) -> None:
        """Set voice, rate and pitch on the global library (caller holds ``_lock``)."""
        lib = runtime.lib
        result = lib.espeak_SetVoiceByName(self._voice.encode("utf-8"))
        if result != _EE_OK:
            raise EngineError(f"espeak-ng voice {self._voice!r} not found (error {result})")
        if lib.espeak_SetParameter(_ESPEAK_RATE, self._rate_wpm, 0) != _EE_OK:
            raise EngineError(f"espeak-ng rejected rate {self._rate_wpm} wpm")
        pitch = _DEFAULT_PITCH if self._pitch is None else self._pitch
        if lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0) != _EE_OK:
            raise EngineError(f"espeak-ng rejected pitch {pitch}")

    def synthesize(self, text: str) -> Pcm:
        """Render ``text`` to mono int16 PCM at :attr:`sample_rate_hz`."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        encoded = text.encode("utf-8") + b"\0"
        buffer = ctypes.create_string_buffer(encoded, len(encoded))
        with _lock:
            runtime = _load_runtime()
            self._apply_settings(runtime)
            if runtime.has_rand_seed:
                # The noise source is pseudo-random: reseed so equal text gives equal audio.
                runtime.lib.espeak_ng_SetRandSeed(_RAND_SEED)
            runtime.chunks = []
            try:
                result = runtime.lib.espeak_Synth(
                    ctypes.cast(buffer, ctypes.c_void_p),
                    len(encoded),
                    0,
                    _POS_CHARACTER,
                    0,
                    _ESPEAK_CHARS_UTF8,
                    None,
                    None,
                )
                chunks = runtime.chunks
            finally:
                runtime.chunks = []
        if result != _EE_OK:
            raise EngineError(f"espeak_Synth failed (error {result}) for {text[:40]!r}")
        pcm = np.frombuffer(b"".join(chunks), dtype=np.int16).copy()
        keep_samples = self._sample_rate_hz * _KEEP_SILENCE_MS // 1000
        return _trim_silence(pcm, keep_samples=keep_samples)
