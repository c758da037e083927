"""Admission control: refuse calls that cannot be served in time, before they start.

Per cell (one per core), checked at the websocket handshake:

* **Capacity** — a cell takes at most ``dialogs_per_core`` live dialogs.
* **Latency under load** — while a cell serves dialogs and the p95 of its recent
  turn latencies (a sliding window of ``window_s``, at least ``min_turns``) exceeds
  ``slo_p95_ms``, that cell takes no new dialog even below capacity.  The rule
  judges load, not history: a cell with no live dialog always admits, and when its
  last dialog ends its window is cleared (slow turns of a past load say nothing of an
  empty cell).

A call is admitted when some ready cell passes both rules, and is placed on the
least loaded such cell; otherwise it is refused (``full`` if every cell is at
capacity, else ``slo``). Admitted calls are never degraded to make room. While
draining (SIGTERM) nothing is admitted. Pure logic; the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
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
    window_s: float = 30.0
    min_turns: int = 5
    """The latency rule needs this many turns in a cell's window before it refuses."""

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

    def clear(self) -> None:
        self._samples.clear()

    def _expire(self) -> None:
        horizon = self._clock() - self._window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()


class Admission:
    """Live dialogs and recent latencies per cell; admit/refuse and where to place."""

    def __init__(self, config: AdmissionConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.draining = False
        self._clock = clock
        self._dialogs: dict[str, int] = {}
        self._windows: dict[str, LatencyWindow] = {}
        self.set_cells(str(i) for i in range(config.cores))

    # ------------------------------------------------------------------ cells

    def set_cells(self, ready: Iterable[str]) -> None:
        """The cells that serve now (a dead cell takes its capacity away)."""
        cells = list(ready)
        for cell in cells:
            self._dialogs.setdefault(cell, 0)
            self._windows.setdefault(
                cell, LatencyWindow(window_s=self.config.window_s, clock=self._clock))
        self._ready = cells

    @property
    def cores(self) -> int:
        return len(self._ready)

    @property
    def active(self) -> int:
        return sum(self._dialogs.values())

    def p95(self, cell: str) -> float | None:
        return self._windows[cell].p95() if cell in self._windows else None

    def _late(self, cell: str) -> bool:
        if self._dialogs[cell] == 0:
            return False  # an idle cell always admits: its history is not its load
        window = self._windows[cell]
        p95 = window.p95()
        return (p95 is not None and len(window) >= self.config.min_turns
                and p95 > self.config.slo_p95_ms)

    def open_cells(self) -> list[str]:
        """Ready cells that may take a new dialog, least loaded first."""
        cells = [c for c in self._ready
                 if self._dialogs[c] < self.config.dialogs_per_core and not self._late(c)]
        return sorted(cells, key=lambda c: (self._dialogs[c], c))

    # ------------------------------------------------------------------ decisions

    def refusal(self) -> Refusal | None:
        """Why a new call would be refused now, or None to admit it."""
        if self.draining:
            return "draining"
        if self.open_cells():
            return None
        if all(self._dialogs[c] >= self.config.dialogs_per_core for c in self._ready):
            return "full"
        return "slo"

    def admit(self, cell: str | None = None) -> str:
        """Count a new dialog on ``cell`` (default: the best open cell); returns the cell."""
        if cell is None:
            cells = self.open_cells() or self._ready or ["0"]
            cell = cells[0]
        self._dialogs[cell] = self._dialogs.get(cell, 0) + 1
        return cell

    def release(self, cell: str = "0") -> None:
        if self._dialogs.get(cell, 0) > 0:
            self._dialogs[cell] -= 1
            if self._dialogs[cell] == 0 and cell in self._windows:
                self._windows[cell].clear()

    def record_turn(self, latency_ms: float, cell: str = "0") -> None:
        window = self._windows.get(cell)
        if window is not None:
            window.add(latency_ms)
