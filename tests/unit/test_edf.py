"""EDF ordering of a cell's jobs."""

from __future__ import annotations

import numpy as np

from server.edf import EdfQueue
from voicebot.commands import (
    CancelTranscription,
    FeedTranscription,
    FinishTranscription,
    Synthesize,
    Understand,
)
from voicebot.jobkinds import Lane

__all__: list[str] = []

_PCM = np.zeros(0, dtype=np.int16)


def _sentence(reply: int, index: int, text: str = "x") -> Synthesize:
    return Synthesize(reply=reply, index=index, text=text, sample_rate_hz=8000)


def test_urgent_jobs_overtake_background_work_of_every_call() -> None:
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", job=FeedTranscription(1, _PCM))
    q.push(now_ms=0, job_id=2, call_id="b", job=_sentence(7, 3))
    q.push(now_ms=5, job_id=3, call_id="b", job=_sentence(8, 0))
    q.push(now_ms=10, job_id=4, call_id="c", job=FinishTranscription(2, 0))
    q.push(now_ms=20, job_id=5, call_id="a", job=CancelTranscription(1))
    order = [q.pop().job_id for _ in range(len(q))]
    # cancel (0 ms budget) < finish (50) < first sentence (100) < feed (250) < later (1000)
    assert order == [5, 4, 3, 1, 2]


def test_old_background_job_eventually_beats_new_urgent_one() -> None:
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", job=FeedTranscription(1, _PCM))
    q.push(now_ms=400, job_id=2, call_id="b", job=FinishTranscription(1, 0))
    assert q.pop().job_id == 1  # deadline 250 < 450: no starvation


def test_ties_keep_arrival_order_and_drop_by_call_and_tag() -> None:
    q = EdfQueue()
    for i in range(3):
        q.push(now_ms=0, job_id=i, call_id="a", job=_sentence(1, 1, "s"))
    q.push(now_ms=0, job_id=9, call_id="a", job=_sentence(2, 1, "s"))
    q.push(now_ms=0, job_id=10, call_id="b", job=_sentence(1, 1, "s"))
    assert [j.job_id for j in q.drop("a", tag=(Lane.TTS, 1))] == [0, 1, 2]
    assert [q.pop().job_id for _ in range(len(q))] == [9, 10]
    q.push(now_ms=0, job_id=11, call_id="a", job=Understand(1, "t", "d"))
    assert [j.job_id for j in q.drop("a")] == [11] and len(q) == 0


def test_a_tag_names_one_lane_of_a_call() -> None:
    """Reply 1's sentences are dropped; utterance 1's and turn 1's jobs are not."""
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", job=_sentence(1, 0))
    q.push(now_ms=0, job_id=2, call_id="a", job=FinishTranscription(1, 0))
    q.push(now_ms=0, job_id=3, call_id="a", job=Understand(1, "t", "d"))
    assert [j.job_id for j in q.drop("a", tag=(Lane.TTS, 1))] == [1]
    assert len(q) == 2


def test_a_release_runs_before_every_queued_job() -> None:
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", job=CancelTranscription(1))
    q.push_release(job_id=-1, call_id="b")
    released = q.pop()
    assert released.job is None and released.call_id == "b"
