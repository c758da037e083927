"""Probing a CUDA device for the engines (the composition root chooses, this module probes).

Two runtimes can put voicebot's engines on an NVIDIA GPU: CTranslate2 (Whisper,
``ctranslate2.get_cuda_device_count()``) and ONNX Runtime (Piper and the other ONNX
models, ``"CUDAExecutionProvider" in onnxruntime.get_available_providers()``; only
the ``onnxruntime-gpu`` build has it, installed by ``pip install voicebot[gpu]``).
:func:`probe_cuda` asks each runtime that a configuration needs and returns a
:class:`CudaProbe` that names exactly what is missing; :func:`require_cuda` turns
a failed probe into :class:`DeviceUnavailableError`.  The probes are plain
callables (:class:`CudaProbes`) so tests can fake "a GPU is present".

Nothing here imports a runtime at import time: the probes import theirs when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from voicebot.errors import EngineUnavailableError

__all__ = [
    "CUDA_PROVIDER",
    "DEVICES",
    "CudaProbe",
    "CudaProbes",
    "Device",
    "DeviceUnavailableError",
    "ctranslate2_cuda_devices",
    "onnxruntime_providers",
    "ort_providers",
    "probe_cuda",
    "require_cuda",
]

Device: TypeAlias = Literal["cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"
_GPU_EXTRA = "install voicebot[gpu] (onnxruntime-gpu)"


class DeviceUnavailableError(EngineUnavailableError):
    """A device the configuration asks for is not usable here (the message says why)."""


def ctranslate2_cuda_devices() -> int:
    """CUDA devices CTranslate2 sees (0 without a GPU, a driver or its CUDA build)."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise DeviceUnavailableError("ctranslate2 is not installed (faster-whisper needs it)") \
            from exc
    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError as exc:  # a broken driver or CUDA runtime
        raise DeviceUnavailableError(f"ctranslate2 cannot query CUDA: {exc}") from exc


def onnxruntime_providers() -> tuple[str, ...]:
    """The execution providers of the installed ONNX Runtime build."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DeviceUnavailableError(f"onnxruntime is not installed: {_GPU_EXTRA}") from exc
    return tuple(onnxruntime.get_available_providers())


@dataclass(frozen=True, kw_only=True, slots=True)
class CudaProbes:
    """How to ask each runtime (injectable: tests fake a GPU with lambdas)."""

    ctranslate2_devices: Callable[[], int] = ctranslate2_cuda_devices
    onnxruntime_providers: Callable[[], Sequence[str]] = onnxruntime_providers


@dataclass(frozen=True, kw_only=True, slots=True)
class CudaProbe:
    """What the probe found: devices CTranslate2 sees, whether ONNX Runtime has CUDA,
    and one sentence per missing piece (empty: the GPU is usable)."""

    ctranslate2_devices: int | None = None
    """None: not asked (no engine on CTranslate2 needs CUDA)."""
    onnxruntime_cuda: bool | None = None
    """None: not asked (no ONNX engine needs CUDA)."""
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        if self.ok:
            parts = []
            if self.ctranslate2_devices is not None:
                parts.append(f"ctranslate2 sees {self.ctranslate2_devices} CUDA device(s)")
            if self.onnxruntime_cuda:
                parts.append(f"onnxruntime has {CUDA_PROVIDER}")
            return "; ".join(parts) or "nothing asked of CUDA"
        return "; ".join(self.missing)


def probe_cuda(*, ctranslate2: bool, onnxruntime: bool, device_index: int = 0,
               probes: CudaProbes | None = None) -> CudaProbe:
    """Ask the runtimes the configuration needs (``ctranslate2``: Whisper on CUDA;
    ``onnxruntime``: an ONNX model on CUDA) whether device ``device_index`` is usable."""
    probes = probes or CudaProbes()
    missing: list[str] = []
    devices: int | None = None
    ort_cuda: bool | None = None
    if ctranslate2:
        try:
            devices = probes.ctranslate2_devices()
        except DeviceUnavailableError as exc:
            missing.append(str(exc))
        else:
            if devices == 0:
                missing.append("no NVIDIA GPU visible (ctranslate2 sees 0 CUDA devices; "
                               "check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES)")
            elif device_index >= devices:
                missing.append(f"no CUDA device {device_index} (ctranslate2 sees {devices})")
    if onnxruntime:
        try:
            providers = probes.onnxruntime_providers()
        except DeviceUnavailableError as exc:
            missing.append(str(exc))
        else:
            ort_cuda = CUDA_PROVIDER in providers
            if not ort_cuda:
                missing.append(f"onnxruntime has no {CUDA_PROVIDER} (it has "
                               f"{', '.join(providers) or 'none'}): {_GPU_EXTRA}")
    return CudaProbe(ctranslate2_devices=devices, onnxruntime_cuda=ort_cuda,
                     missing=tuple(missing))


def require_cuda(*, what: str, ctranslate2: bool, onnxruntime: bool, device_index: int = 0,
                 probes: CudaProbes | None = None) -> CudaProbe:
    """:func:`probe_cuda`, raising :class:`DeviceUnavailableError` (naming ``what`` asked
    for CUDA and everything missing) unless the GPU is usable."""
    probe = probe_cuda(ctranslate2=ctranslate2, onnxruntime=onnxruntime,
                       device_index=device_index, probes=probes)
    if not probe.ok:
        raise DeviceUnavailableError(
            f"{what} asks for device cuda, but CUDA is not usable here: {probe.describe()}. "
            "Nothing falls back to CPU: use device: cpu (or --device cpu) to serve on CPU")
    return probe


def ort_providers(device: Device, *, device_index: int = 0) -> list[Any]:
    """The ``providers`` argument of an ONNX Runtime session on ``device`` (CUDA first,
    the CPU provider for the few operators CUDA lacks)."""
    if device == "cpu":
        return [_CPU_PROVIDER]
    if device == "cuda":
        return [(CUDA_PROVIDER, {"device_id": device_index}), _CPU_PROVIDER]
    raise EngineUnavailableError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
