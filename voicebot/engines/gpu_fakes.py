"""Deterministic fake batch engines (:mod:`voicebot.engines.gpu_batch`) for tests without a GPU.

Each records the batches it ran and charges a modelled GPU cost (``launch_ms`` per
batch + ``item_ms`` per request: what batching saves is the launches) to
:attr:`busy_ms`, so tests check batching without reading a clock.  A transcript
names the request's audio length (``"1600 samples"``), so a test sees which call
got which result.  ``gate`` (a :class:`threading.Event`) holds every batch until it
is set, so a test can let requests pile up behind a running batch; ``fail`` makes
the batches it matches raise :class:`voicebot.errors.EngineError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from voicebot.engines.gpu_batch import DecodeRequest, SynthesisRequest
from voicebot.errors import EngineError
from voicebot.types import Pcm, Transcript

__all__ = ["FakeBatchSynthesizer", "FakeBatchTranscriber"]

_GATE_TIMEOUT_S = 30.0  # a test that forgets to open the gate fails instead of hanging


class _Recorder:
    def __init__(self, *, launch_ms: float, item_ms: float,
                 gate: threading.Event | None, fail: Callable[[int], bool] | None) -> None:
        self.launch_ms = launch_ms
        self.item_ms = item_ms
        self.gate = gate
        self.fail = fail
        self.batches: list[int] = []
        """Size of each batch run, in order."""
        self.busy_ms = 0.0
        self.started = threading.Event()
        """Set when a batch starts (before the gate)."""

    def _run(self, size: int) -> None:
        self.started.set()
        if self.gate is not None and not self.gate.wait(_GATE_TIMEOUT_S):
            raise EngineError("fake GPU gate never opened")
        self.batches.append(size)
        self.busy_ms += self.launch_ms + self.item_ms * size
        if self.fail is not None and self.fail(len(self.batches) - 1):
            raise EngineError(f"fake GPU batch {len(self.batches) - 1} failed")


class FakeBatchTranscriber(_Recorder):
    """Transcribes each request as ``"<samples> samples"`` (``domain`` appended)."""

    def __init__(self, *, launch_ms: float = 20.0, item_ms: float = 2.0,
                 gate: threading.Event | None = None,
                 fail: Callable[[int], bool] | None = None) -> None:
        super().__init__(launch_ms=launch_ms, item_ms=item_ms, gate=gate, fail=fail)
        self.domains: dict[str, tuple[str, ...]] = {}

    @property
    def sample_rate_hz(self) -> int:
        return 16_000

    def prepare_domain(self, *, name: str, phrases: Sequence[str]) -> None:
        self.domains[name] = tuple(phrases)

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcript]:
        self._run(len(requests))
        return [Transcript(f"{len(r.pcm)} samples" + (f" in {r.domain}" if r.domain else ""),
                           confidence=1.0, audio_ms=len(r.pcm) * 1000 // 16_000)
                for r in requests]


class FakeBatchSynthesizer(_Recorder):
    """``ms_per_char`` of a constant tone per character, at the request's rate (its
    voice's own rate: ``sample_rate_hz``); :attr:`texts` records every sentence."""

    def __init__(self, *, ms_per_char: int = 10, sample_rate_hz: int = 16_000,
                 launch_ms: float = 5.0, item_ms: float = 10.0,
                 gate: threading.Event | None = None,
                 fail: Callable[[int], bool] | None = None) -> None:
        super().__init__(launch_ms=launch_ms, item_ms=item_ms, gate=gate, fail=fail)
        self._ms_per_char = ms_per_char
        self._rate_hz = sample_rate_hz
        self.texts: list[str] = []

    @property
    def sample_rate_hz(self) -> int:
        return self._rate_hz

    @property
    def voice_id(self) -> str:
        return f"fake-batch:{self._ms_per_char}"

    def synthesize_batch(self, requests: Sequence[SynthesisRequest]) -> list[Pcm]:
        self._run(len(requests))
        self.texts.extend(r.text for r in requests)
        return [np.full(len(r.text) * self._ms_per_char * r.sample_rate_hz // 1000, 1000,
                        dtype=np.int16) for r in requests]
