"""Admission with a GPU worker: a call needs room on a CPU cell *and* on the GPU.

:class:`GpuAdmission` is the cells' :class:`~server.admission.Admission` (capacity
``dialogs_per_core`` per cell, the latency-aware rule per cell) with the same two
rules applied to the GPU: at most ``dialogs_per_gpu`` live dialogs, and none new while
the GPU serves dialogs and the p95 of their recent turn latencies exceeds the SLO.
Every turn's latency counts for its cell and for the GPU (its ASR and TTS ran
there).  One server process drives one GPU (``gpu_device``; run one server per GPU).
Pure logic; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .admission import Admission, AdmissionConfig, Refusal

__all__ = ["GPU", "GpuAdmission"]

GPU = "gpu0"
"""The GPU's name in the GPU's own admission (one GPU per server process)."""


class GpuAdmission(Admission):
    def __init__(self, config: AdmissionConfig, *, dialogs_per_gpu: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, clock=clock)
        self.gpu = Admission(AdmissionConfig(
            dialogs_per_core=dialogs_per_gpu, cores=1, slo_p95_ms=config.slo_p95_ms,
            window_s=config.window_s, min_turns=config.min_turns), clock=clock)
        self.gpu.set_cells([GPU])

    def refusal(self) -> Refusal | None:
        cells = super().refusal()
        if cells is not None:
            return cells
        return self.gpu.refusal()

    def admit(self, cell: str | None = None) -> str:
        placed = super().admit(cell)
        self.gpu.admit(GPU)
        return placed

    def release(self, cell: str = "0") -> None:
        before = self.active
        super().release(cell)
        if self.active < before:
            self.gpu.release(GPU)

    def record_turn(self, latency_ms: float, cell: str = "0") -> None:
        super().record_turn(latency_ms, cell)
        self.gpu.record_turn(latency_ms, GPU)

    @property
    def gpu_dialogs(self) -> int:
        return self.gpu.active

    def gpu_p95(self) -> float | None:
        return self.gpu.p95(GPU)
