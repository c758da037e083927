"""Admission control: refuse calls that cannot be served in time, before they start.

Two rules, checked at the websocket handshake:

* **Capacity** — at most ``dialogs_per_core * cores`` live dialogs.
* **Latency** — while the p95 of recent turn latencies (a sliding window of
  ``window_s``) exceeds ``slo_p95_ms``, admit nothing new even below capacity.
  Admitted calls are never degraded to make room: refusing is the only lever.

While draining (SIGTERM) nothing is admitted. Pure logic; the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from voicebot.errors import ConfigError

__all__ = ["Admission", "AdmissionConfig", "LatencyWindow", "Refusal"]

Refusal = Literal["full", "slo", "draining"]


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    dialogs_per_core: int = 2
    cores: int = 1
    slo_p95_ms: float = 1500.0
    window_s: float = 60.0
    min_turns: int = 5
    """The latency rule needs this many turns in the window before it refuses."""

    def __post_init__(self) -> None:
        if self.dialogs_per_core < 1 or self.cores < 1:
            raise ConfigError("dialogs_per_core and cores must be at least 1")
        if self.slo_p95_ms <= 0 or self.window_s <= 0:
            raise ConfigError("slo_p95_ms and window_s must be positive")

    @property
    def capacity(self) -> int:
        return self.dialogs_per_core * self.cores


class LatencyWindow:
    """Latencies of the last ``window_s`` seconds, with their p95."""

    def __init__(self, *, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, latency_ms: float) -> None:
        self._samples.append((self._clock(), latency_ms))
        self._expire()

    def __len__(self) -> int:
        self._expire()
        return len(self._samples)

    def p95(self) -> float | None:
        self._expire()
        if not self._samples:
            return None
        ordered = sorted(ms for _, ms in self._samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def _expire(self) -> None:
        horizon = self._clock() - self._window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()


class Admission:
    """Counts live dialogs and decides, per new call, admit or refuse (and why)."""

    def __init__(self, config: AdmissionConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.cores = config.cores
        """Cores whose cell is ready now (a dead cell takes its capacity away)."""
        self.active = 0
        self.draining = False
        self.turns = LatencyWindow(window_s=config.window_s, clock=clock)

    def refusal(self) -> Refusal | None:
        """Why a new call would be refused now, or None to admit it."""
        if self.draining:
            return "draining"
        if self.active >= self.config.dialogs_per_core * self.cores:
            return "full"
        p95 = self.turns.p95()
        if (p95 is not None and len(self.turns) >= self.config.min_turns
                and p95 > self.config.slo_p95_ms):
            return "slo"
        return None

    def admit(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)

    def record_turn(self, latency_ms: float) -> None:
        self.turns.add(latency_ms)
