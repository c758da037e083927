"""On this machine (no NVIDIA GPU): ``voicebot serve --device cuda`` refuses to start with a
clear message, and ``make gpu-check`` stops early.  With ``VOICEBOT_GPU=1`` (``make
gpu-check`` on a GPU machine) the REAL Whisper tiny.en batch runs on CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, free_port


def test_serve_device_cuda_without_a_gpu_exits_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "VOICEBOT_AUTH": "none", "VOICEBOT_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--stack", "lite", "--device", "cuda",
         "--port", str(free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "voicebot: this configuration's asr (pocketsphinx), tts (espeak) asks for device " \
           "cuda, but CUDA is not usable here" in done.stderr
    assert "no NVIDIA GPU visible (ctranslate2 sees 0 CUDA devices" in done.stderr
    assert "onnxruntime has no CUDAExecutionProvider" in done.stderr
    assert "install voicebot[gpu] (onnxruntime-gpu)" in done.stderr
    assert "Traceback" not in done.stderr


def test_gpu_check_stops_early_without_an_nvidia_gpu(tmp_path: Path) -> None:
    report = tmp_path / "gpu.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--no-install", "--report", str(report),
         "--nvidia-smi", str(tmp_path / "no-nvidia-smi")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert "gpu-check: no NVIDIA GPU here" in done.stderr
    assert not report.exists()


@pytest.mark.skipif(os.environ.get("VOICEBOT_GPU") != "1", reason="needs an NVIDIA GPU")
def test_real_whisper_batch_on_cuda() -> None:
    from voicebot.audio.resample import resample
    from voicebot.engines.espeak_tts import EspeakSynthesizer
    from voicebot.engines.gpu_batch import DecodeRequest
    from voicebot.engines.whisper_batch import WhisperBatchTranscriber

    tts = EspeakSynthesizer()
    pcm = resample(tts.synthesize("I lost my card"), in_rate_hz=tts.sample_rate_hz,
                   out_rate_hz=16_000)
    asr = WhisperBatchTranscriber(model=REPO / "models/cache/whisper-tiny.en", device="cuda")
    texts = [t.text for t in asr.transcribe_batch([DecodeRequest(pcm=pcm)] * 8)]
    assert len(set(texts)) == 1 and "card" in texts[0].lower()
