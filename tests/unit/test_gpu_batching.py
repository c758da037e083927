"""The GPU worker's batching policy (pure, a fake clock): waits bounded by urgency,
batches bounded in size, every job released exactly once, EDF across kinds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.gpu_batching import BatchLimits, BatchPolicy, QueueFull
from voicebot.jobkinds import Lane, Urgency

ASR = (Lane.ASR, 0)


def push(policy: BatchPolicy, now_ms: float, job_id: int, *, dialog: str = "d",
         kind: str = "decode", urgency: Urgency = Urgency.TURN, key: int = 0) -> None:
    policy.push(now_ms=now_ms, job_id=job_id, dialog=dialog, kind=kind,
                tag=(Lane.ASR if kind == "decode" else Lane.TTS, key), urgency=urgency)


def test_eight_dialogs_within_the_window_go_as_one_batch() -> None:
    policy = BatchPolicy(BatchLimits(max_batch=8))
    for i in range(8):
        assert policy.next_batch(i * 0.5) is None  # held: nobody's bound is up
        push(policy, i * 0.5, i, dialog=f"call{i}", urgency=Urgency.SPECULATION)
    batch = policy.next_batch(3.5)  # full before anyone's 20 ms bound
    assert batch is not None and len(batch.jobs) == 8
    assert {j.dialog for j in batch.jobs} == {f"call{i}" for i in range(8)}
    assert len(policy) == 0


def test_a_turn_job_is_held_no_longer_than_its_bound() -> None:
    policy = BatchPolicy()
    push(policy, 100.0, 1, urgency=Urgency.TURN)
    assert policy.wake_at_ms() == 105.0
    assert policy.next_batch(104.9) is None
    batch = policy.next_batch(105.0)
    assert batch is not None and [j.job_id for j in batch.jobs] == [1]


def test_a_turn_job_releases_the_slower_jobs_waiting_with_it() -> None:
    policy = BatchPolicy()
    push(policy, 0.0, 1, dialog="a", urgency=Urgency.STREAMING)  # may wait 50 ms
    push(policy, 10.0, 2, dialog="b", urgency=Urgency.TURN)  # may wait 5 ms
    assert policy.wake_at_ms() == 15.0
    batch = policy.next_batch(15.0)
    assert batch is not None
    assert [j.job_id for j in batch.jobs] == [2, 1]  # the most urgent first


def test_earliest_deadline_first_across_kinds() -> None:
    policy = BatchPolicy()
    push(policy, 0.0, 1, kind="synthesize", urgency=Urgency.LATER_SENTENCE)
    push(policy, 40.0, 2, kind="decode", urgency=Urgency.TURN)
    first = policy.next_batch(60.0)  # both due; the decode's deadline (90) is earlier
    second = policy.next_batch(60.0)
    assert first is not None and first.kind == "decode"
    assert second is not None and second.kind == "synthesize"


def test_a_full_group_goes_at_once_and_the_rest_waits() -> None:
    policy = BatchPolicy(BatchLimits(max_batch=3))
    for i in range(5):
        push(policy, 0.0, i, dialog=str(i), urgency=Urgency.LATER_SENTENCE, kind="synthesize")
    batch = policy.next_batch(0.0)
    assert batch is not None and [j.job_id for j in batch.jobs] == [0, 1, 2]
    assert policy.next_batch(0.0) is None and policy.wake_at_ms() == 50.0


def test_drop_removes_one_dialogs_tag_only() -> None:
    policy = BatchPolicy()
    push(policy, 0.0, 1, dialog="a", key=1)
    push(policy, 0.0, 2, dialog="a", key=2)
    push(policy, 0.0, 3, dialog="b", key=1)
    assert [j.job_id for j in policy.drop("a", (Lane.ASR, 1))] == [1]
    batch = policy.next_batch(5.0)
    assert batch is not None and sorted(j.job_id for j in batch.jobs) == [2, 3]


def test_flush_releases_without_waiting() -> None:
    policy = BatchPolicy()
    push(policy, 0.0, 1, urgency=Urgency.LATER_SENTENCE, kind="synthesize")
    assert policy.next_batch(0.0) is None
    assert policy.next_batch(0.0, flush=True) is not None


def test_pending_jobs_are_bounded() -> None:
    policy = BatchPolicy(BatchLimits(max_pending=2))
    push(policy, 0.0, 1)
    push(policy, 0.0, 2)
    with pytest.raises(QueueFull):
        push(policy, 0.0, 3)


_URGENCIES = [Urgency.TURN, Urgency.SPECULATION, Urgency.STREAMING, Urgency.FIRST_SENTENCE,
              Urgency.LATER_SENTENCE]
_arrival = st.tuples(st.floats(0, 200, allow_nan=False), st.sampled_from(["decode", "synthesize"]),
                     st.sampled_from(_URGENCIES), st.integers(0, 5), st.booleans())


@settings(max_examples=200, deadline=None)
@given(arrivals=st.lists(_arrival, max_size=40), max_batch=st.integers(1, 8),
       service_ms=st.sampled_from([0.0, 3.0, 30.0]))
def test_invariants(arrivals: list[tuple[float, str, Urgency, int, bool]], max_batch: int,
                    service_ms: float) -> None:
    """A worker that asks the policy at every arrival and every wake-up: no batch over
    max_batch, every job released exactly once (or dropped), and none later than its
    bound or the moment the worker was free again, whichever is later."""
    policy = BatchPolicy(BatchLimits(max_batch=max_batch))
    events = sorted((t, i, kind, urgency, dialog, drop)
                    for i, (t, kind, urgency, dialog, drop) in enumerate(arrivals))
    released: dict[int, float] = {}
    dropped: set[int] = set()
    bounds: dict[int, float] = {}
    free_at = 0.0

    def run_due(until: float) -> None:
        nonlocal free_at
        while True:
            wake = policy.wake_at_ms()
            if wake is None:
                return
            now = max(wake, free_at)
            if now > until:
                return
            batch = policy.next_batch(now)
            assert batch is not None, "a due batch must be released"
            assert 1 <= len(batch.jobs) <= max_batch
            assert len({j.kind for j in batch.jobs}) == 1
            for job in batch.jobs:
                assert job.job_id not in released
                released[job.job_id] = now
            free_at = now + service_ms

    for t, i, kind, urgency, dialog, drop in events:
        run_due(t)
        push(policy, t, i, dialog=str(dialog), kind=kind, urgency=urgency, key=i)
        bounds[i] = t + policy.limits.wait_ms(urgency)
        if drop and i % 3 == 0:
            dropped.update(j.job_id for j in policy.drop(str(dialog), (
                Lane.ASR if kind == "decode" else Lane.TTS, i)))
    run_due(float("inf"))
    assert len(policy) == 0
    assert set(released) | dropped == set(range(len(arrivals)))
    assert not set(released) & dropped
    if service_ms == 0.0:  # a worker always free: nobody waits past their bound
        assert all(at <= bounds[job_id] for job_id, at in released.items())
