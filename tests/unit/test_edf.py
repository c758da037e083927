"""EDF ordering of a cell's jobs."""

from __future__ import annotations

from server.edf import EdfQueue

__all__: list[str] = []


def test_urgent_jobs_overtake_background_work_of_every_call() -> None:
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", method="feed_transcription", args=(1, None))
    q.push(now_ms=0, job_id=2, call_id="b", method="synthesize", args=("x", 8000, 3), tag=7)
    q.push(now_ms=5, job_id=3, call_id="b", method="synthesize", args=("x", 8000, 0), tag=8)
    q.push(now_ms=10, job_id=4, call_id="c", method="finish_transcription", args=(2,))
    q.push(now_ms=20, job_id=5, call_id="a", method="cancel_transcription", args=(1,))
    order = [q.pop().job_id for _ in range(len(q))]
    # cancel (0 ms budget) < finish (50) < first sentence (100) < feed (250) < later (1000)
    assert order == [5, 4, 3, 1, 2]


def test_old_background_job_eventually_beats_new_urgent_one() -> None:
    q = EdfQueue()
    q.push(now_ms=0, job_id=1, call_id="a", method="feed_transcription", args=(1, None))
    q.push(now_ms=400, job_id=2, call_id="b", method="finish_transcription", args=(1,))
    assert q.pop().job_id == 1  # deadline 250 < 450: no starvation


def test_ties_keep_arrival_order_and_drop_by_call_and_tag() -> None:
    q = EdfQueue()
    for i in range(3):
        q.push(now_ms=0, job_id=i, call_id="a", method="synthesize", args=("s", 8000, 1), tag=1)
    q.push(now_ms=0, job_id=9, call_id="a", method="synthesize", args=("s", 8000, 1), tag=2)
    q.push(now_ms=0, job_id=10, call_id="b", method="synthesize", args=("s", 8000, 1), tag=1)
    assert [j.job_id for j in q.drop("a", tag=1)] == [0, 1, 2]
    assert [q.pop().job_id for _ in range(len(q))] == [9, 10]
    q.push(now_ms=0, job_id=11, call_id="a", method="understand", args=("t", "d"))
    assert [j.job_id for j in q.drop("a")] == [11] and len(q) == 0
