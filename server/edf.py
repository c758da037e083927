"""Earliest-deadline-first job queue of a cell (pure; the clock is passed in).

Each job gets a deadline = arrival + its class's budget, so urgent work (the
final ASR of an ended utterance, the first sentence of a reply) overtakes
background work (incremental ASR feeds, later sentences) of every dialog on the
cell. Jobs of one dialog's lane never reorder: the front process sends a lane's
next job only after the previous one finished.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUDGET_MS", "EdfQueue", "QueuedJob", "budget_ms"]

# Relative deadlines per job kind, in ms: smaller runs first.
BUDGET_MS: dict[str, float] = {
    "cancel_transcription": 0.0,
    "discard_speculation": 0.0,
    "detect": 10.0,
    "finish_transcription": 50.0,
    "speculate_transcription": 60.0,
    "understand": 50.0,
    "synthesize_first": 100.0,
    "start_transcription": 250.0,
    "feed_transcription": 250.0,
    "synthesize_later": 1000.0,
}


def budget_ms(method: str, args: tuple[Any, ...]) -> float:
    """The budget of a job: synthesis of sentence 0 is urgent, later sentences are not."""
    if method == "synthesize":
        first = len(args) > 2 and args[2] == 0
        return BUDGET_MS["synthesize_first" if first else "synthesize_later"]
    return BUDGET_MS.get(method, 500.0)


@dataclass(order=True, slots=True)
class QueuedJob:
    deadline: float
    seq: int
    job_id: int = field(compare=False)
    call_id: str = field(compare=False)
    method: str = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    tag: Hashable = field(compare=False, default=None)


class EdfQueue:
    """Jobs ordered by deadline (ties: arrival order); cancellable by call and tag."""

    def __init__(self) -> None:
        self._heap: list[QueuedJob] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, *, now_ms: float, job_id: int, call_id: str, method: str,
             args: tuple[Any, ...], tag: Hashable = None) -> QueuedJob:
        job = QueuedJob(now_ms + budget_ms(method, args), next(self._seq), job_id, call_id,
                        method, args, tag)
        heapq.heappush(self._heap, job)
        return job

    def pop(self) -> QueuedJob:
        return heapq.heappop(self._heap)

    def drop(self, call_id: str, tag: Hashable = None) -> list[QueuedJob]:
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
