"""Device selection, the CUDA probe's clear errors (faked GPU), GPU admission, guarded imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.admission import AdmissionConfig
from server.config import load_config
from server.devices import check_devices, engine_devices, gpu_kinds
from server.gpu_admission import GpuAdmission
from server.gpu_setup import cpu_engine_names, make_admission
from voicebot.engines.devices import (
    CUDA_PROVIDER,
    CudaProbes,
    DeviceUnavailableError,
    ort_providers,
    probe_cuda,
)
from voicebot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GPU_PRESENT = CudaProbes(ctranslate2_devices=lambda: 1,
                         onnxruntime_providers=lambda: (CUDA_PROVIDER, "CPUExecutionProvider"))
NO_GPU = CudaProbes(ctranslate2_devices=lambda: 0,
                    onnxruntime_providers=lambda: ("CPUExecutionProvider",))


def test_the_probe_names_exactly_what_is_missing() -> None:
    probe = probe_cuda(ctranslate2=True, onnxruntime=True, probes=NO_GPU)
    assert not probe.ok
    assert probe.missing == (
        "no NVIDIA GPU visible (ctranslate2 sees 0 CUDA devices; check nvidia-smi, the "
        "driver and CUDA_VISIBLE_DEVICES)",
        "onnxruntime has no CUDAExecutionProvider (it has CPUExecutionProvider): install "
        "voicebot[gpu] (onnxruntime-gpu)",
    )
    assert probe_cuda(ctranslate2=True, onnxruntime=True, probes=GPU_PRESENT).ok
    assert "no CUDA device 2" in probe_cuda(ctranslate2=True, onnxruntime=False, device_index=2,
                                            probes=GPU_PRESENT).describe()


def test_this_machine_has_no_usable_cuda() -> None:
    """The real probes here (no NVIDIA GPU, the CPU onnxruntime)."""
    probe = probe_cuda(ctranslate2=True, onnxruntime=True)
    assert not probe.ok and probe.ctranslate2_devices == 0


def test_device_chooses_asr_and_tts_and_devices_overrides_per_kind() -> None:
    config = load_config(overrides={"device": "cuda", "stack": "default"}, env={})
    assert engine_devices(config) == {"vad": "cpu", "asr": "cuda", "nlu": "cpu", "tts": "cuda"}
    assert cpu_engine_names(config) == {"vad": "silero", "asr": "fake", "nlu": "minilm",
                                        "tts": "fake"}
    mixed = load_config(overrides={"device": "cuda", "devices": {"tts": "cpu"}}, env={})
    assert gpu_kinds(mixed) == ("asr",)
    assert gpu_kinds(load_config(env={})) == ()
    assert gpu_kinds(load_config(env={"VOICEBOT_DEVICE": "cuda"})) == ("asr", "tts")


def test_config_file_shape(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("device: cpu\ndevices: {asr: cuda}\ndialogs_per_gpu: 24\ngpu_max_batch: 4\n")
    config = load_config(path, env={})
    assert gpu_kinds(config) == ("asr",)
    assert (config.dialogs_per_gpu, config.gpu_max_batch) == (24, 4)
    for bad in ("device: tpu\n", "devices: {asr: tpu}\n", "devices: {lm: cuda}\n",
                "devices: cuda\n", "dialogs_per_gpu: 0\n"):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path, env={})


def test_cuda_without_a_gpu_refuses_to_start_naming_what_is_missing() -> None:
    config = load_config(overrides={"device": "cuda", "stack": "default"}, env={})
    with pytest.raises(DeviceUnavailableError) as caught:
        check_devices(config, probes=NO_GPU)
    message = str(caught.value)
    assert "asr (whisper), tts (piper) asks for device cuda" in message
    assert "ctranslate2 sees 0 CUDA devices" in message and "voicebot[gpu]" in message
    assert "Nothing falls back to CPU" in message


def test_cuda_with_a_faked_gpu_passes_and_unsupported_engines_are_named() -> None:
    config = load_config(overrides={"device": "cuda", "stack": "default"}, env={})
    probe = check_devices(config, probes=GPU_PRESENT)
    assert probe is not None and probe.ok and probe.ctranslate2_devices == 1
    lite = load_config(overrides={"device": "cuda", "stack": "lite"}, env={})
    with pytest.raises(ConfigError, match="pocketsphinx' has no CUDA backend"):
        check_devices(lite, probes=GPU_PRESENT)
    nlu = load_config(overrides={"devices": {"nlu": "cuda"}}, env={})
    with pytest.raises(ConfigError, match="nlu engine runs on CPU"):
        check_devices(nlu, probes=GPU_PRESENT)
    assert check_devices(load_config(env={}), probes=NO_GPU) is None  # CPU: nothing probed


def test_ort_providers() -> None:
    assert ort_providers("cpu") == ["CPUExecutionProvider"]
    assert ort_providers("cuda", device_index=1) == [
        (CUDA_PROVIDER, {"device_id": 1}), "CPUExecutionProvider"]


def test_gpu_admission_counts_dialogs_per_gpu_with_the_latency_rule() -> None:
    now = [0.0]
    admission = GpuAdmission(AdmissionConfig(dialogs_per_core=4, cores=2, slo_p95_ms=1000,
                                             min_turns=2), dialogs_per_gpu=3,
                             clock=lambda: now[0])
    cells = [admission.admit() for _ in range(3)]
    assert admission.gpu_dialogs == 3 and admission.refusal() == "full"  # cells have room
    admission.release(cells[0])
    assert admission.refusal() is None
    for _ in range(3):
        admission.record_turn(2000.0, cells[1])
    assert admission.gpu_p95() == 2000.0 and admission.refusal() == "slo"
    admission.release("9")  # not a live cell: the GPU count does not move
    assert admission.gpu_dialogs == 2
    cpu_only = make_admission(load_config(env={}), AdmissionConfig())
    assert not isinstance(cpu_only, GpuAdmission)


def test_cpu_imports_load_no_gpu_module() -> None:
    """Serving on CPU, and importing the GPU backend's modules, imports no runtime that
    only a GPU configuration needs (checked in a fresh interpreter)."""
    code = ("import sys, server.app, server.gpu_setup, server.devices, voicebot.engines.devices,"
            " voicebot.engines.gpu_batch;"
            " bad = [m for m in ('ctranslate2', 'faster_whisper', 'onnxruntime',"
            " 'voicebot.engines.whisper_batch', 'voicebot.engines.gpu_fakes') if m in sys.modules];"
            " print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
