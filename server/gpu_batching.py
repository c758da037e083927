"""When the GPU worker runs a batch, and which jobs it holds (pure; the clock is passed in).

Jobs of one *batch kind* (``decode``: Whisper on whole utterances; ``synthesize``:
sentences) from many dialogs wait together so one kernel launch serves them all.
Each job may wait at most the bound of its urgency class (:data:`DEFAULT_WAITS_MS`:
a final ASR or a reply's first sentence, which the caller is waiting on, 5 ms;
speculative ASR 20 ms; background work 50 ms).  A kind's group is released as a
batch when it holds ``max_batch`` jobs, or when the bound of any job in it is up
(so no job waits past its own bound while the worker is free); at most
``max_batch`` jobs go, the most urgent first.  When several kinds are ready, the
one holding the earliest deadline (arrival + the urgency's budget, as the cells'
EDF queue, ``server/edf.py``) goes first.  ``flush`` (draining) releases
without waiting.

The worker asks :meth:`BatchPolicy.next_batch` whenever a job arrives or a batch
ends, and otherwise sleeps until :meth:`BatchPolicy.wake_at_ms`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from voicebot.errors import ConfigError, EngineError
from voicebot.jobkinds import JobTag, Urgency

__all__ = ["DEFAULT_WAITS_MS", "Batch", "BatchLimits", "BatchPolicy", "Pending", "QueueFull"]

DEFAULT_WAITS_MS: Mapping[Urgency, float] = MappingProxyType({
    Urgency.CANCEL: 0.0,
    Urgency.VAD: 0.0,
    Urgency.TURN: 5.0,
    Urgency.FIRST_SENTENCE: 5.0,
    Urgency.SPECULATION: 20.0,
    Urgency.STREAMING: 50.0,
    Urgency.LATER_SENTENCE: 50.0,
})
"""The longest a job of each urgency class waits for others to batch with."""


class QueueFull(EngineError):
    """More jobs pending than ``max_pending`` (admission lets too many dialogs in)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLimits:
    max_batch: int = 8
    waits_ms: Mapping[Urgency, float] = field(default_factory=lambda: DEFAULT_WAITS_MS)
    max_pending: int = 1024
    """Bound on held jobs (each dialog has at most one job per lane in flight)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_pending < 1:
            raise ConfigError("max_batch and max_pending must be at least 1")
        if any(w < 0 for w in self.waits_ms.values()):
            raise ConfigError("batch waits must not be negative")

    def wait_ms(self, urgency: Urgency) -> float:
        return self.waits_ms.get(urgency, 0.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Pending:
    """A held job: its id (the worker keeps the payload), dialog, tag and times."""

    job_id: int
    dialog: str
    kind: str
    tag: JobTag
    urgency: Urgency
    arrival_ms: float
    release_by_ms: float
    """arrival + the urgency's wait bound: the latest the policy holds it."""
    deadline_ms: float
    """arrival + the urgency's budget: the EDF order across kinds and within a batch."""
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    kind: str
    jobs: tuple[Pending, ...]


class BatchPolicy:
    """Held jobs per batch kind; releases batches by the rules of the module."""

    def __init__(self, limits: BatchLimits | None = None) -> None:
        self.limits = limits or BatchLimits()
        self._groups: dict[str, list[Pending]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def push(self, *, now_ms: float, job_id: int, dialog: str, kind: str, tag: JobTag,
             urgency: Urgency) -> Pending:
        if len(self) >= self.limits.max_pending:
            raise QueueFull(f"{len(self)} GPU jobs pending (max_pending)")
        job = Pending(job_id=job_id, dialog=dialog, kind=kind, tag=tag, urgency=urgency,
                      arrival_ms=now_ms, release_by_ms=now_ms + self.limits.wait_ms(urgency),
                      deadline_ms=now_ms + urgency.budget_ms, seq=next(self._seq))
        self._groups.setdefault(kind, []).append(job)
        return job

    def _ready_at(self, group: list[Pending]) -> float:
        """When ``group`` must go: now if full, else at its first job's bound."""
        if len(group) >= self.limits.max_batch:
            return -math.inf
        return min(j.release_by_ms for j in group)

    def wake_at_ms(self) -> float | None:
        """When the next batch is due (None: nothing held)."""
        times = [self._ready_at(g) for g in self._groups.values() if g]
        return min(times) if times else None

    def next_batch(self, now_ms: float, *, flush: bool = False) -> Batch | None:
        """The batch to run now, removed from the held jobs; None: hold on."""
        ready = [(min((j.deadline_ms, j.seq) for j in g), kind)
                 for kind, g in self._groups.items()
                 if g and (flush or self._ready_at(g) <= now_ms)]
        if not ready:
            return None
        kind = min(ready)[1]
        group = sorted(self._groups[kind], key=lambda j: (j.deadline_ms, j.seq))
        taken = group[: self.limits.max_batch]
        self._groups[kind] = group[self.limits.max_batch:]
        return Batch(kind=kind, jobs=tuple(taken))

    def drop(self, dialog: str, tag: JobTag | None = None) -> list[Pending]:
        """Remove a dialog's held jobs (only those of ``tag`` when given); returns them."""
        dropped: list[Pending] = []
        for kind, group in self._groups.items():
            keep: list[Pending] = []
            for job in group:
                gone = job.dialog == dialog and (tag is None or job.tag == tag)
                (dropped if gone else keep).append(job)
            self._groups[kind] = keep
        return dropped
