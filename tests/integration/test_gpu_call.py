"""Whole calls through the GPU path, without a GPU: a real server (in process) with ``device:
cuda`` for the ASR and the TTS, the CUDA probe faked to "present" and the GPU worker's batch
engines replaced by the deterministic fakes (``load_app(config, gpu_overrides=...)``), called
by the real client (``server.client.place_call``) on the lite stack's scenario.

The fake GPU ASR transcribes an utterance as ``"<samples> samples in <domain>"`` and the fake
GPU voice sends a constant tone (1000) at 16 kHz, so a test sees that what the caller got came
from the GPU worker.  The VAD and the NLU are the lite stack's real ones, on the server's
threads (``cells: false``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.app import App, load_app
from server.client import CallerTurn, CallOptions, TurnReport, place_call, prepare_turns
from server.config import load_config
from server.gpu_batching import Batch, BatchLimits
from server.gpu_setup import GpuOverrides
from server.serving import run_server
from tests.integration.conftest import MODELS_DIR, free_port
from voicebot.engines.devices import CUDA_PROVIDER, CudaProbes
from voicebot.engines.gpu_fakes import FakeBatchSynthesizer, FakeBatchTranscriber
from voicebot.jobkinds import Lane, Urgency
from voicebot.types import Pcm

FAKE_GPU = CudaProbes(ctranslate2_devices=lambda: 1,
                      onnxruntime_providers=lambda: (CUDA_PROVIDER, "CPUExecutionProvider"))
TONE = 1000  # every sample of the fake GPU voice
TRANSCRIPT = re.compile(r"^\d+ samples in \S+$")


@dataclass
class FakeGpu:
    """The fake batch engines and every batch the worker ran (kind, its jobs' lanes)."""

    asr: FakeBatchTranscriber = field(default_factory=FakeBatchTranscriber)
    tts: FakeBatchSynthesizer = field(default_factory=FakeBatchSynthesizer)
    limits: BatchLimits | None = None
    batches: list[tuple[str, tuple[Lane, ...]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_batch(self, batch: Batch) -> None:  # on the GPU thread
        with self._lock:
            self.batches.append((batch.kind, tuple(job.tag[0] for job in batch.jobs)))

    def overrides(self) -> GpuOverrides:
        return GpuOverrides(probes=FAKE_GPU, transcriber=self.asr, synthesizer=self.tts,
                            limits=self.limits, on_batch=self.on_batch)


@contextlib.asynccontextmanager
async def gpu_server(tmp_path: Path, gpu: FakeGpu, **settings: Any) -> AsyncIterator[App]:
    """The lite stack with Whisper and Piper on cuda (their models never load: the GPU's
    engines are ``gpu``'s fakes), in this process, until the block ends."""
    config = load_config(env={"VOICEBOT_AUTH": "none"}, overrides={
        "stack": "lite", "cells": False, "port": free_port(), "device": "cuda",
        "models_dir": str(MODELS_DIR), "data_dir": str(tmp_path), "records": "none",
        "engines": {"asr": "whisper", "tts": "piper", "options": {
            "asr": {"model": str(tmp_path / "whisper-never-loaded")},
            "tts": {"voice": str(tmp_path / "piper-never-loaded.onnx")}}},
        **settings,
    })
    app = load_app(config, gpu_overrides=gpu.overrides())
    assert app.gpu is not None and app.gpu.engines == {"asr", "tts"}
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Any] = loop.create_future()
    serving = asyncio.create_task(run_server(app, started=started))
    try:
        await asyncio.wait_for(asyncio.shield(started), 60)
        yield app
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await app.gpu.close()
        app.executor.shutdown(wait=False, cancel_futures=True)
        for sig in (signal.SIGINT, signal.SIGTERM):  # run_server's stop handlers
            loop.remove_signal_handler(sig)


def url(app: App) -> str:
    return f"ws://127.0.0.1:{app.config.port}"


async def call(app: App, *texts: str, delay_s: float = 0.0
               ) -> tuple[list[TurnReport], Pcm]:
    """One call of the real client saying ``texts`` (espeak-ng), after ``delay_s``."""
    await asyncio.sleep(delay_s)
    options = CallOptions(url=url(app), scenario="bank_card", turn_timeout_s=20.0)
    prepared = prepare_turns([CallerTurn("text", t) for t in texts], options)
    return await place_call(prepared, options)


def lanes(gpu: FakeGpu, kind: str) -> list[tuple[Lane, ...]]:
    return [jobs for k, jobs in gpu.batches if k == kind]


async def test_a_call_hears_the_gpu_voice_and_is_heard_by_the_gpu_asr(tmp_path: Path) -> None:
    gpu = FakeGpu()
    async with gpu_server(tmp_path, gpu) as app:
        reports, audio = await call(app, "I lost my card")
    greeting, turn = reports[0], reports[1]
    assert greeting.bot_text and greeting.end is None
    assert turn.transcript is not None and TRANSCRIPT.match(turn.transcript), turn
    assert turn.bot_text and turn.latency_ms is not None  # the reply was heard
    assert greeting.bot_text in gpu.tts.texts[0] or gpu.tts.texts[0] in greeting.bot_text
    assert turn.bot_text.split(".")[0] in " ".join(gpu.tts.texts[1:])
    tone = int(np.count_nonzero(audio == TONE))  # the fake GPU voice, at the call's 16 kHz
    assert tone >= 0.9 * sum(len(t) for t in gpu.tts.texts) * 10 * 16  # 10 ms per character
    assert gpu.asr.batches and gpu.tts.batches  # both went through the worker
    assert app.gpu is not None and app.gpu.worker.batches_run == len(gpu.batches)


async def test_two_calls_speaking_at_once_share_gpu_batches(tmp_path: Path) -> None:
    # Each job is held (up to 3 s) until the other call's job makes the batch full.
    gpu = FakeGpu(limits=BatchLimits(max_batch=2, waits_ms={u: 3000.0 for u in Urgency}))
    async with gpu_server(tmp_path, gpu, dialogs_per_gpu=4) as app:
        (first, _), (second, _) = await asyncio.gather(call(app, "I lost my card"),
                                                       call(app, "I lost my card"))
        assert app.gpu is not None
        largest = app.gpu.worker.largest_batch
    assert largest == {"decode": 2, "synthesize": 2}
    assert [2] == sorted({len(jobs) for jobs in lanes(gpu, "decode")})  # every decode paired
    assert 2 in gpu.tts.batches and 2 in gpu.asr.batches
    for reports in (first, second):
        assert reports[1].transcript is not None and TRANSCRIPT.match(reports[1].transcript)
        assert reports[1].bot_text


async def test_a_failed_gpu_batch_is_an_error_event_and_the_other_call_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gpu = FakeGpu(asr=FakeBatchTranscriber(fail=lambda index: index == 0))
    caplog.set_level(logging.WARNING)
    async with gpu_server(tmp_path, gpu) as app:
        # The first call's utterance ends well before the other's: the first decode batch
        # (the one that fails) holds only the first call's.
        (doomed, _), (other, audio) = await asyncio.gather(
            call(app, "I lost my card"), call(app, "I lost my card", delay_s=1.5))
        after, _ = await call(app, "check my balance")  # the server still serves
    failed = [r for r in caplog.records if r.name == "voicebot.caller"
              and "speech recognition failed for this utterance" in r.getMessage()]
    assert len(failed) == 1  # a non-fatal error event, to the first call only
    assert doomed[1].transcript in (None, "")
    assert doomed[1].end is None or not doomed[1].end.startswith("error")
    for reports in (other, after):
        assert reports[1].transcript is not None and TRANSCRIPT.match(reports[1].transcript)
        assert reports[1].bot_text
    assert gpu.asr.batches[0] == 1 and len(gpu.asr.batches) >= 3
    assert np.count_nonzero(audio == TONE) > 0


async def test_speculative_replies_synthesize_ahead_on_the_gpu(tmp_path: Path) -> None:
    gpu = FakeGpu()
    async with gpu_server(tmp_path, gpu, speculative_asr_ms=200,
                          speculative_replies=True) as app:
        reports, _ = await call(app, "I lost my card")
        assert app.gpu is not None
    turn = reports[1]
    assert turn.transcript is not None and TRANSCRIPT.match(turn.transcript)
    ahead = [jobs for jobs in lanes(gpu, "synthesize") if Lane.AHEAD in jobs]
    assert ahead, gpu.batches  # the speculative reply's first sentence went to the GPU
    assert any(Lane.ASR in jobs for jobs in lanes(gpu, "decode"))
    assert turn.bot_text and turn.bot_text.split(".")[0] in " ".join(gpu.tts.texts)
