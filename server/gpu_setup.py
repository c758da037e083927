"""Composing the GPU backend: the GPU worker, its batch engines, calls' runners, admission.

With ``device: cuda`` (server/devices.py) the server loads the ASR and TTS models once,
on the GPU, behind one :class:`~server.gpu_worker.GpuWorker`; the cells (or the
in-process engine set) keep the VAD, NLU and turn model and carry a stand-in (the
``fake`` engine, never called) for each kind the GPU serves, so no cell loads a
model it does not use.  Each call's runner is a :class:`~server.gpu_runner.GpuRunner`
over its CPU runner; admission is a :class:`~server.gpu_admission.GpuAdmission`.

The backend owns the threads its calls' GPU jobs wait on (three lanes per dialog can
wait at once: ASR, TTS and a speculative reply's sentence), so admission's
``dialogs_per_gpu`` bounds them and no job queues for a thread.

:class:`GpuOverrides` is the test seam (``load_app(config, gpu=...)``): fake CUDA
probes, batch engines given instead of loaded, batch limits and a batch hook.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voicebot.dialog.engine import DEFAULT_REPROMPT
from voicebot.dialog.scenario import Scenario
from voicebot.engines.devices import CudaProbe, CudaProbes
from voicebot.engines.gpu_batch import BatchSynthesizer, BatchTranscriber, SequentialSynthesizer
from voicebot.engines.prompt_cache import CachingSynthesizer, static_prompt_sentences
from voicebot.engines.registry import EngineOptions, build_engine, model_path

from .admission import Admission, AdmissionConfig
from .config import ServerConfig
from .devices import check_devices, gpu_kinds
from .gpu_admission import GpuAdmission
from .gpu_batching import BatchLimits
from .gpu_runner import GpuRunner
from .gpu_worker import BatchHook, GpuWorker
from .runners import JobRunner

__all__ = ["GpuBackend", "GpuOverrides", "cpu_engine_names", "cpu_engine_options",
           "load_gpu_backend", "make_admission"]

log = logging.getLogger(__name__)

_STAND_IN = "fake"
_CPU_ONLY_WHISPER = ("compute_type", "num_workers")
"""Whisper options for the CPU (the GPU's compute type is ``gpu_compute_type``)."""
_LANES_ON_GPU = 3
"""A dialog's lanes whose jobs can wait on the GPU at once: ASR, TTS, AHEAD."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuOverrides:
    """Test seam: what :func:`load_gpu_backend` (and ``load_app``'s device check) use
    instead of the real probes and models.  None keeps the real one."""

    probes: CudaProbes | None = None
    transcriber: BatchTranscriber | None = None
    synthesizer: BatchSynthesizer | None = None
    limits: BatchLimits | None = None
    on_batch: BatchHook | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuBackend:
    worker: GpuWorker
    engines: frozenset[str]
    probe: CudaProbe | None
    executor: ThreadPoolExecutor
    """The threads calls' GPU jobs run (and wait for their batch) on."""

    def runner(self, dialog: str, cpu: JobRunner, *, job_timeout_s: float) -> GpuRunner:
        return GpuRunner(self.worker, dialog, cpu, executor=self.executor,
                         engines=self.engines, job_timeout_s=job_timeout_s)

    async def close(self) -> None:
        await self.worker.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def cpu_engine_names(config: ServerConfig) -> dict[str, str]:
    """The engines the cells (or the in-process set) build: a stand-in for a GPU kind."""
    on_gpu = set(gpu_kinds(config))
    return {kind: _STAND_IN if kind in on_gpu else name
            for kind, name in config.engines.all_names().items()}


def cpu_engine_options(config: ServerConfig,
                       options: Mapping[str, EngineOptions]) -> dict[str, EngineOptions]:
    """The engine options of the cells' (or the in-process set's) engines: a GPU kind's
    stand-in takes none (Whisper's or Piper's options are the GPU worker's)."""
    on_gpu = set(gpu_kinds(config))
    return {kind: replace(o, options={}) if kind in on_gpu else o
            for kind, o in options.items()}


def make_admission(config: ServerConfig, admission: AdmissionConfig) -> Admission:
    if not gpu_kinds(config):
        return Admission(admission)
    return GpuAdmission(admission, dialogs_per_gpu=config.dialogs_per_gpu)


def _transcriber(name: str, options: EngineOptions, config: ServerConfig) -> BatchTranscriber:
    if name == _STAND_IN:
        from voicebot.engines.gpu_fakes import FakeBatchTranscriber

        return FakeBatchTranscriber(**options.options)
    from voicebot.engines.whisper_batch import WhisperBatchTranscriber

    opts: dict[str, Any] = {k: v for k, v in options.options.items()
                            if k not in _CPU_ONLY_WHISPER}
    model = model_path(opts.pop("model", "whisper-base.en"), options)
    compute_type = str(opts.pop("gpu_compute_type", "int8_float16"))
    keep = ("language", "encoder_window", "utterance_pad_ms", "utterance_min_window_ms",
            "domain_prompt_tokens", "slot_prompts", "lead_silence_ms")
    dropped = sorted(set(opts) - set(keep))
    if dropped:
        log.info("Whisper on the GPU decodes greedily in batches; ignoring %s", dropped)
    return WhisperBatchTranscriber(model=model, device="cuda", device_index=config.gpu_device,
                                   compute_type=compute_type,
                                   **{k: v for k, v in opts.items() if k in keep})


def _synthesizer(name: str, options: EngineOptions, config: ServerConfig,
                 cache_dir: Path | None) -> BatchSynthesizer:
    if name == _STAND_IN:
        from voicebot.engines.gpu_fakes import FakeBatchSynthesizer

        return FakeBatchSynthesizer(**options.options)
    gpu = replace(options, options={**options.options, "device": "cuda",
                                     "device_index": config.gpu_device})
    return SequentialSynthesizer(CachingSynthesizer(build_engine("tts", name, gpu),
                                                    cache_dir=cache_dir))


def load_gpu_backend(config: ServerConfig, scenarios: Iterable[Scenario],
                     options: Mapping[str, EngineOptions], *,
                     prompt_cache_dir: Path | None = None,
                     overrides: GpuOverrides | None = None) -> GpuBackend | None:
    """Probe CUDA (refusing to start without it), load the GPU's engines, start the
    worker; None when no engine kind is on CUDA."""
    given = overrides or GpuOverrides()
    probe = check_devices(config, probes=given.probes)
    kinds = gpu_kinds(config)
    if not kinds:
        return None
    names = config.engines.all_names()
    transcriber: BatchTranscriber | None = None
    synthesizer: BatchSynthesizer | None = None
    if "asr" in kinds:
        transcriber = given.transcriber if given.transcriber is not None \
            else _transcriber(names["asr"], options["asr"], config)
    if "tts" in kinds:
        synthesizer = given.synthesizer if given.synthesizer is not None \
            else _synthesizer(names["tts"], options["tts"], config, prompt_cache_dir)
    for scenario in scenarios:
        if transcriber is not None:
            for domain, phrases in scenario.asr_domains().items():
                transcriber.prepare_domain(name=domain, phrases=phrases)
        if isinstance(synthesizer, SequentialSynthesizer) and isinstance(
                synthesizer.synthesizer, CachingSynthesizer):
            synthesizer.synthesizer.warm([*static_prompt_sentences(scenario), DEFAULT_REPROMPT])
    worker = GpuWorker(transcriber=transcriber, synthesizer=synthesizer,
                       limits=given.limits or BatchLimits(max_batch=config.gpu_max_batch),
                       on_batch=given.on_batch)
    worker.start()
    executor = ThreadPoolExecutor(_LANES_ON_GPU * config.dialogs_per_gpu,
                                  thread_name_prefix="voicebot-gpu-job")
    log.info("GPU worker on cuda:%d (%s): %s; batches of up to %d, %d dialogs per GPU",
             config.gpu_device, probe.describe() if probe else "no probe",
             ", ".join(f"{k}={names[k]}" for k in kinds), config.gpu_max_batch,
             config.dialogs_per_gpu)
    return GpuBackend(worker=worker, engines=frozenset(kinds), probe=probe, executor=executor)
