"""Earliest-deadline-first job queue of a cell (pure; the clock is passed in).

Each job gets a deadline = arrival + the budget of its urgency class (the job
table, :mod:`voicebot.jobkinds`), so urgent work (the final ASR of an ended
utterance, the first sentence of a reply) overtakes background work
(incremental ASR feeds, later sentences) of every dialog on the cell. Jobs of
one dialog's lane never reorder: the front process sends a lane's next job only
after the previous one finished.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

from voicebot.jobkinds import EngineJob, JobTag, job_tag, kind_of

__all__ = ["EdfQueue", "QueuedJob", "budget_ms"]

_RELEASE_DEADLINE_MS = -math.inf  # a call's release runs before any job


def budget_ms(job: EngineJob) -> float:
    """The budget of a job: its urgency class's (sentence 0 of a reply is urgent,
    later sentences are not)."""
    return kind_of(job).urgency(job).budget_ms


@dataclass(frozen=True, order=True, slots=True)
class QueuedJob:
    deadline: float
    seq: int
    job_id: int = field(compare=False)
    call_id: str = field(compare=False)
    job: EngineJob | None = field(compare=False)
    """None: release the call's engine state (the call ended)."""
    tag: JobTag | None = field(compare=False, default=None)


class EdfQueue:
    """Jobs ordered by deadline (ties: arrival order); cancellable by call and tag."""

    def __init__(self) -> None:
        self._heap: list[QueuedJob] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, *, now_ms: float, job_id: int, call_id: str, job: EngineJob) -> QueuedJob:
        queued = QueuedJob(now_ms + budget_ms(job), next(self._seq), job_id, call_id, job,
                           job_tag(job))
        heapq.heappush(self._heap, queued)
        return queued

    def push_release(self, *, job_id: int, call_id: str) -> QueuedJob:
        """Queue the release of a call's engine state, ahead of every job."""
        queued = QueuedJob(_RELEASE_DEADLINE_MS, next(self._seq), job_id, call_id, None)
        heapq.heappush(self._heap, queued)
        return queued

    def pop(self) -> QueuedJob:
        return heapq.heappop(self._heap)

    def drop(self, call_id: str, tag: JobTag | None = None) -> list[QueuedJob]:
        """Remove a call's queued jobs (only those with ``tag`` when given); returns them."""
        keep: list[QueuedJob] = []
        dropped: list[QueuedJob] = []
        for job in self._heap:
            gone = job.call_id == call_id and (tag is None or job.tag == tag)
            (dropped if gone else keep).append(job)
        if dropped:
            heapq.heapify(keep)
            self._heap = keep
        return dropped
