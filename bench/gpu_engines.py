"""``python -m bench.gpu_engines OUT.json``: REAL Whisper and Piper on the GPU against the
same engines on one pinned CPU core, same inputs, same process (``make gpu-check``).

Inputs: the engine bench's caller utterances (:data:`bench.engine_cases.CALLER_UTTERANCES`,
espeak-ng at 16 kHz) and bot replies.  Whisper: :class:`WhisperBatchTranscriber`, cuda
(int8_float16) in batches of 1 and 8, cpu (int8, one thread) in batches of 1.  Piper
en_US-joe-medium: one reply at a time, cuda and cpu.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.engines.devices import Device

from .engine_cases import BOT_REPLIES, CALLER_UTTERANCES

__all__ = ["main"]

MODELS = Path("models/cache")
_REPS = 5


def _times(call: Callable[[], Any], reps: int = _REPS) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _row(engine: str, device: str, batch: int, seconds: Sequence[float]) -> dict[str, Any]:
    p50, p95 = (float(np.percentile(seconds, q)) * 1000 for q in (50, 95))
    return {"engine": engine, "device": device, "batch": batch, "p50_ms": p50, "p95_ms": p95,
            "per_item_ms": p50 / batch, "n": len(seconds)}


def _device(name: str) -> Device:
    return "cuda" if name == "cuda" else "cpu"


def _whisper(rows: list[dict[str, Any]], pcms: list[Any]) -> None:
    from voicebot.engines.gpu_batch import DecodeRequest
    from voicebot.engines.whisper_batch import WhisperBatchTranscriber

    for model in ("whisper-tiny.en", "whisper-base"):
        for device, compute, batches in (("cuda", "int8_float16", (1, 8)), ("cpu", "int8", (1,))):
            asr = WhisperBatchTranscriber(model=MODELS / model, device=_device(device),
                                          compute_type=compute, threads=1)
            for size in batches:
                requests = [DecodeRequest(pcm=pcms[i % len(pcms)]) for i in range(size)]
                rows.append(_row(f"REAL {model}", device, size,
                                 _times(functools.partial(asr.transcribe_batch, requests))))


def _piper(rows: list[dict[str, Any]]) -> None:
    from voicebot.engines.piper_tts import PiperSynthesizer

    voice = next((MODELS / "en_US-joe-medium").glob("*.onnx"))
    for device in ("cuda", "cpu"):
        tts = PiperSynthesizer(voice_path=voice, threads=1, device=_device(device))
        rows.append(_row("REAL piper en_US-joe-medium", device, 1,
                         _times(functools.partial(tts.synthesize, BOT_REPLIES[0]))))


def main(argv: Sequence[str] | None = None) -> int:
    out = Path((sys.argv[1:] if argv is None else argv)[0])
    os.sched_setaffinity(0, {0})  # the CPU rows on one core (the GPU rows drive it from there)
    from voicebot.audio.resample import resample
    from voicebot.engines.espeak_tts import EspeakSynthesizer

    tts = EspeakSynthesizer()
    pcms = [resample(tts.synthesize(t), in_rate_hz=tts.sample_rate_hz, out_rate_hz=16_000)
            for t in CALLER_UTTERANCES]
    rows: list[dict[str, Any]] = []
    _whisper(rows, pcms)
    _piper(rows)
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
