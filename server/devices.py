"""Which device each engine kind runs on, and refusing to start when it is not usable.

``device: cpu | cuda`` (``--device``, ``VOICEBOT_DEVICE``) is where the ASR and the TTS
run; ``devices: {kind: device}`` overrides it per kind.  VAD, NLU and the end-of-turn
model stay on CPU: the VAD costs ~60 µs per 32 ms window in the front process (a GPU
round trip costs more), MiniLM int8 and Smart Turn are a few ms on one core, and none
of the three is measured on a GPU yet.  On CUDA, the ASR must be Whisper (CTranslate2)
and the TTS Piper (ONNX Runtime's CUDA provider); both run in the GPU worker.

:func:`check_devices` probes CUDA (:mod:`voicebot.engines.devices`) for what the
configuration puts there and raises :class:`DeviceUnavailableError` naming what is
missing: never a silent fall-back to CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicebot.engines.devices import (
    CudaProbe,
    CudaProbes,
    Device,
    DeviceUnavailableError,
    require_cuda,
)
from voicebot.errors import ConfigError

from .config import ServerConfig

__all__ = ["CUDA_ENGINES", "DeviceUnavailableError", "check_devices", "engine_devices",
           "gpu_kinds"]

_GPU_DEFAULT_KINDS = ("asr", "tts")
"""The kinds ``device`` moves; the others stay on CPU unless ``devices`` names them."""

CUDA_ENGINES: Mapping[str, Mapping[str, str]] = {
    "asr": {"whisper": "ctranslate2", "fake": "fake"},
    "tts": {"piper": "onnxruntime", "fake": "fake"},
}
"""Per kind, the engines that run on CUDA and the runtime each needs there."""


def engine_devices(config: ServerConfig) -> dict[str, Device]:
    """The device of each configured engine kind."""
    devices: dict[str, Device] = {}
    for kind in config.engines.all_names():
        chosen = config.devices.get(kind)
        if chosen is None:
            chosen = config.device if kind in _GPU_DEFAULT_KINDS else "cpu"
        devices[kind] = "cuda" if chosen == "cuda" else "cpu"
    return devices


def gpu_kinds(config: ServerConfig) -> tuple[str, ...]:
    """The engine kinds on CUDA (empty: a CPU-only server)."""
    return tuple(k for k, d in engine_devices(config).items() if d == "cuda")


def check_devices(config: ServerConfig, *, probes: CudaProbes | None = None) -> CudaProbe | None:
    """Probe CUDA for the kinds the configuration puts there; None when none is.

    First the probe (what the machine lacks), then whether each engine can run on
    CUDA at all (what the configuration asks for that cannot be).
    """
    kinds = gpu_kinds(config)
    if not kinds:
        return None
    names = config.engines.all_names()
    runtimes = {CUDA_ENGINES.get(k, {}).get(names[k]) for k in kinds}
    what = ", ".join(f"{k} ({names[k]})" for k in kinds)
    probe = require_cuda(what=f"this configuration's {what}",
                         ctranslate2="ctranslate2" in runtimes or None in runtimes,
                         onnxruntime="onnxruntime" in runtimes or None in runtimes,
                         device_index=config.gpu_device, probes=probes)
    for kind in kinds:
        if kind not in CUDA_ENGINES:
            raise ConfigError(f"the {kind} engine runs on CPU in this version (devices: "
                              f"{kind}: cuda is not supported; only asr and tts go to the GPU)")
        if names[kind] not in CUDA_ENGINES[kind]:
            raise ConfigError(f"the {kind} engine {names[kind]!r} has no CUDA backend (on cuda: "
                              f"{', '.join(n for n in CUDA_ENGINES[kind] if n != 'fake')})")
    return probe
