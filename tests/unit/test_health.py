"""Cell health: the pure heartbeat/deadline rules, the job deadline of in-process jobs, and
a pool of fake cells (real processes, fake engines) that hang, run late or get stuck."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, cast

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from server.cell_worker import CellSpec, serve_jobs
from server.cells import CellFailed, CellPool, CellState, JobTimedOut
from server.health import CellHealth, HealthLimits, Verdict
from server.runners import LocalRunner
from voicebot.commands import Synthesize, Understand
from voicebot.engines.base import Pcm
from voicebot.errors import ConfigError
from voicebot.jobs import CallJobs
from voicebot.testing import FakeSynthesizer, fake_engines

__all__: list[str] = []

LIMITS = HealthLimits(heartbeat_interval_s=1.0, heartbeat_timeout_s=3.0, job_timeout_s=2.0,
                      stuck_job_s=5.0)


# ---------------------------------------------------------------------- CellHealth


def test_a_silent_cell_is_hung_once_a_ping_waited_the_timeout() -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    assert health.ping(0.0) == 1
    assert health.ping(0.5) is None  # one ping at a time
    health.answered(1, now_s=0.1)
    assert health.ping(0.5) is None  # not due yet
    assert health.ping(1.0) == 2
    assert health.verdict(3.9) is Verdict.HEALTHY  # SIGSTOP: no answer from here on
    assert health.ping(3.9) is None
    assert health.verdict(4.0) is Verdict.HUNG
    assert health.reason(4.5) == "no heartbeat answer for 3.5 s"
    assert health.next_check_s(2.0) == 4.0


def test_a_stale_or_unknown_answer_does_not_count() -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    assert health.ping(0.0) == 1
    health.answered(7, now_s=0.5)
    assert health.verdict(3.0) is Verdict.HUNG


def test_a_job_past_its_deadline_makes_the_cell_suspect_until_it_is_back_and_a_ping_answered(
) -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    assert health.submitted(1, now_s=0.0) == 2.0
    assert health.submitted(2, now_s=1.0, timeout_s=0.5) == 1.5
    assert health.next_check_s(1.0) == 1.0  # the first ping is due
    assert health.ping(1.0) == 1
    health.answered(1, now_s=1.0, running_job=1, running_s=1.0)
    assert health.expire(1.4) == []
    assert health.verdict(1.4) is Verdict.HEALTHY
    assert health.next_check_s(1.4) == 1.5
    assert health.expire(2.5) == [2, 1]  # earliest deadline first
    assert health.expire(2.5) == []
    assert health.verdict(2.5) is Verdict.SUSPECT
    assert health.reason(2.5) == "2 job(s) past their deadline"
    assert not health.finished(3, now_s=2.6)  # unknown
    assert health.finished(2, now_s=2.6)  # late
    assert health.verdict(2.6) is Verdict.SUSPECT  # job 1 is still late
    assert health.finished(1, now_s=2.7)
    assert health.verdict(2.7) is Verdict.SUSPECT  # back, but no answer since
    assert health.ping(2.7) == 2
    health.answered(2, now_s=2.8)
    assert health.verdict(2.8) is Verdict.HEALTHY and health.pending() == 0


def test_an_answer_to_a_ping_sent_before_the_late_job_came_back_does_not_clear_it() -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    health.submitted(1, now_s=0.0)
    assert health.ping(2.5) == 1
    assert health.finished(1, now_s=2.6)
    health.answered(1, now_s=2.7)
    assert health.verdict(2.7) is Verdict.SUSPECT
    assert health.ping(3.5) == 2
    health.answered(2, now_s=3.6)
    assert health.verdict(3.6) is Verdict.HEALTHY


def test_a_job_running_past_stuck_job_s_hangs_the_cell_though_pings_are_answered() -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    health.submitted(1, now_s=0.0)
    for second in range(6):
        assert health.ping(float(second)) == second + 1
        health.answered(second + 1, now_s=second + 0.1, running_job=1, running_s=second + 0.1)
    assert health.running_s(4.5) == pytest.approx(4.5)
    assert health.verdict(4.9) is Verdict.SUSPECT
    assert health.verdict(5.0) is Verdict.HUNG
    assert health.reason(5.0) == "its current job has run for 5.0 s"


def test_a_report_of_a_job_already_back_is_ignored() -> None:
    health = CellHealth(LIMITS, now_s=0.0)
    health.submitted(1, now_s=0.0)
    health.finished(1, now_s=0.5)
    assert health.ping(1.0) == 1
    health.answered(1, now_s=1.0, running_job=1, running_s=1.0)
    assert health.running_s(9.0) == 0.0 and health.verdict(9.0) is Verdict.HEALTHY


@pytest.mark.parametrize("field", ["heartbeat_interval_s", "heartbeat_timeout_s",
                                   "job_timeout_s", "stuck_job_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_limits_must_be_positive_and_finite(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        HealthLimits(**{field: value})


_STEP = st.integers(min_value=0, max_value=24).map(lambda quarters: quarters / 4)


class HealthMachine(RuleBasedStateMachine):
    """CellHealth against a model of the rules in server/health.py's docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.health = CellHealth(LIMITS, now_s=0.0)
        self.jobs = 0
        self.deadlines: dict[int, float] = {}
        self.submitted_at: dict[int, float] = {}
        self.reported: set[int] = set()
        self.last_ping_s = -math.inf
        self.outstanding: tuple[int, float] | None = None
        self.running: tuple[int, float] | None = None  # job, started
        self.recovering = False
        self.late_back_s = -math.inf

    def late(self) -> bool:
        return any(d <= self.now for d in self.deadlines.values())

    def expected(self) -> Verdict:
        if self.outstanding and self.now - self.outstanding[1] >= LIMITS.heartbeat_timeout_s:
            return Verdict.HUNG
        if self.running and self.now - self.running[1] >= LIMITS.stuck_job_s:
            return Verdict.HUNG
        return Verdict.SUSPECT if self.late() or self.recovering else Verdict.HEALTHY

    @rule(dt=_STEP)
    def advance(self, dt: float) -> None:
        before = self.health.verdict(self.now)
        self.now += dt
        assert self.health.verdict(self.now) >= before  # only events make it better

    @rule()
    def ping(self) -> None:
        due = self.outstanding is None and self.now - self.last_ping_s >= 1.0
        seq = self.health.ping(self.now)
        assert (seq is not None) == due
        if seq is not None:
            self.outstanding, self.last_ping_s = (seq, self.now), self.now

    @precondition(lambda self: self.outstanding is not None)
    @rule(data=st.data(), busy=st.booleans(), fraction=st.sampled_from([0.0, 0.5, 1.0]))
    def answer(self, data: st.DataObject, busy: bool, fraction: float) -> None:
        assert self.outstanding is not None
        seq, sent = self.outstanding
        job = data.draw(st.sampled_from(sorted(self.deadlines))) if busy and self.deadlines \
            else None
        running_s = 0.0 if job is None else fraction * (self.now - self.submitted_at[job])
        self.health.answered(seq, now_s=self.now, running_job=job, running_s=running_s)
        self.outstanding = None
        self.running = None if job is None else (job, self.now - running_s)
        if self.recovering and sent >= self.late_back_s and not self.late():
            self.recovering = False

    @rule(seq=st.integers(min_value=-1, max_value=100))
    def stale_answer(self, seq: int) -> None:
        if self.outstanding is None or seq != self.outstanding[0]:
            self.health.answered(seq, now_s=self.now)  # ignored

    @rule(timeout=st.sampled_from([None, 0.5, 3.0]))
    def submit(self, timeout: float | None) -> None:
        self.jobs += 1
        deadline = self.health.submitted(self.jobs, now_s=self.now, timeout_s=timeout)
        assert deadline == self.now + (LIMITS.job_timeout_s if timeout is None else timeout)
        self.deadlines[self.jobs], self.submitted_at[self.jobs] = deadline, self.now

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from([*sorted(self.deadlines), 0, self.jobs + 1]))
        deadline = self.deadlines.pop(job, None)
        was_late = deadline is not None and deadline <= self.now
        assert self.health.finished(job, now_s=self.now) == was_late
        self.reported.discard(job)
        if self.running is not None and self.running[0] == job:
            self.running = None
        if was_late and not self.late():
            self.recovering, self.late_back_s = True, self.now

    @rule()
    def expire(self) -> None:
        due = {j for j, d in self.deadlines.items() if d <= self.now} - self.reported
        expired = self.health.expire(self.now)
        assert set(expired) == due and len(expired) == len(due)
        assert [self.deadlines[j] for j in expired] == sorted(self.deadlines[j] for j in due)
        self.reported |= due

    @invariant()
    def verdict_follows_the_rules(self) -> None:
        assert self.health.verdict(self.now) is self.expected()
        assert self.health.pending() == len(self.deadlines)

    @invariant()
    def nothing_changes_before_the_next_check(self) -> None:
        next_s = self.health.next_check_s(self.now)
        if next_s > self.now:
            assert self.health.verdict((self.now + next_s) / 2) is self.expected()

    @rule()
    def tick(self) -> None:
        """The pool's tick (expire, then ping): afterwards the next check lies in the
        future unless the cell is hung (and then killed), so the pool's timer never spins."""
        self.expire()
        self.ping()
        assert (self.health.verdict(self.now) is Verdict.HUNG
                or self.health.next_check_s(self.now) > self.now)


TestHealthMachine = HealthMachine.TestCase
TestHealthMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


# ---------------------------------------------------------------------- LocalRunner


class _BlockingJobs:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def understand(self, text: str, domain: str) -> str:
        self.release.wait(10)
        return text

    def close(self) -> None:
        self.closed.set()


async def test_an_in_process_job_times_out_and_the_call_state_is_released_after_it() -> None:
    jobs = _BlockingJobs()
    with ThreadPoolExecutor(1) as executor:
        runner = LocalRunner(cast(CallJobs, jobs), executor, job_timeout_s=0.2)
        started = time.monotonic()
        with pytest.raises(JobTimedOut):
            await runner.run(Understand(turn=1, text="hello", domain="bank"))
        assert 0.2 <= time.monotonic() - started < 2.0
        await asyncio.wait_for(runner.close(), 1.0)  # does not wait for the stuck thread
        assert not jobs.closed.is_set()  # its engine state is still in use
        jobs.release.set()
        assert await asyncio.to_thread(jobs.closed.wait, 5)
        jobs.release.set()
        assert await runner.run(Understand(turn=2, text="again", domain="bank")) == "again"


# ---------------------------------------------------------------------- fake cells


class _SleepySynthesizer(FakeSynthesizer):
    """``"sleep 1.5"`` takes 1.5 s to synthesize."""

    def synthesize(self, text: str) -> Pcm:
        if text.startswith("sleep "):
            time.sleep(float(text.split()[1]))
        return super().synthesize(text)


def sleepy_cell(spec: CellSpec, conn: Connection) -> None:
    """A cell process with fake engines (a ``multiprocessing`` spawn target)."""
    engines, _ = fake_engines()
    serve_jobs(replace(engines, synthesizer=_SleepySynthesizer()), conn)


SPEC = CellSpec(index=0, cpu=min(os.sched_getaffinity(0)), engine_names={}, engine_options={},
                scenario_paths=(), default_scenario="none", prompt_cache_dir=None)


def _sentence(text: str, index: int) -> Synthesize:
    return Synthesize(reply=1, index=index, text=text, sample_rate_hz=16_000)


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _pool(**options: Any) -> Any:
    pool = CellPool([SPEC], worker=sleepy_cell, **options)
    ready: list[list[int | None]] = []
    pool.on_change = lambda: ready.append([c.pid for c in pool.ready_cells()])
    await pool.start()
    try:
        yield pool, ready
    finally:
        for cell in pool.cells:
            if cell.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(cell.pid, signal.SIGCONT)
        pool.stop()


async def test_a_late_job_fails_and_its_cell_takes_no_calls_until_it_is_back() -> None:
    async with _pool(heartbeat_interval_s=0.1, heartbeat_timeout_s=2.0, job_timeout_s=0.3,
                     stuck_job_s=20.0) as (pool, ready):
        cell = pool.place("a")
        started = time.monotonic()
        with pytest.raises(JobTimedOut, match=r"synthesize on cell 0 took more than 0\.3 s"):
            await cell.submit("a", _sentence("sleep 2.0", 0))
        assert 0.3 <= time.monotonic() - started < 1.5
        assert cell.state is CellState.SUSPECT and pool.ready_cells() == []
        assert ready == [[]]
        with pytest.raises(CellFailed, match="no cell is ready"):
            pool.place("b")
        await _until(lambda: pool.ready_cells() == [cell], 5.0)  # the late result came back
        assert ready == [[], [cell.pid]] and cell.alive
        pcm = await cell.submit("a", _sentence("hello", 0))
        assert len(pcm) > 0


async def test_a_stopped_cell_is_declared_hung_killed_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="server.cells")
    async with _pool(heartbeat_interval_s=0.1, heartbeat_timeout_s=0.5) as (pool, ready):
        cell = pool.place("a")
        victim = cell.pid
        assert victim is not None
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        with pytest.raises(CellFailed, match="cell 0 hung"):
            await cell.submit("a", _sentence("hello", 0))
        assert 0.5 <= time.monotonic() - stopped < 0.5 + 0.1 + 1.0
        assert cell.state is CellState.DOWN and ready[0] == []
        await _until(lambda: not cell.process.is_alive(), 5.0)  # SIGKILL ends it, stopped
        await _until(lambda: bool(pool.ready_cells()), 20.0)
        fresh = pool.place("b")
        assert fresh is not cell and fresh.pid not in (None, victim)
        assert len(await fresh.submit("b", _sentence("hello", 0))) > 0
        with pytest.raises(CellFailed):  # the old cell's dialogs cannot go on
            await cell.submit("a", _sentence("hello", 0))
    assert f"cell 0 (pid {victim}) hung: no heartbeat answer for" in caplog.text
    assert "restarting cell 0" in caplog.text


async def test_a_job_running_past_stuck_job_s_gets_its_cell_killed() -> None:
    async with _pool(heartbeat_interval_s=0.1, heartbeat_timeout_s=2.0, job_timeout_s=0.3,
                     stuck_job_s=1.0) as (pool, ready):
        cell = pool.place("a")
        stuck = cell.submit("a", _sentence("sleep 30", 0))
        queued = cell.submit("a", _sentence("hello", 1))
        with pytest.raises(JobTimedOut):
            await stuck
        assert cell.state is CellState.SUSPECT
        with pytest.raises(JobTimedOut):  # queued behind it: late too
            await queued
        await _until(lambda: cell.state is CellState.DOWN, 3.0)
        assert ready[:2] == [[], []]  # suspect, then down
        await _until(lambda: bool(pool.ready_cells()), 20.0)
        assert pool.ready_cells()[0].pid != cell.pid


async def test_a_cell_that_stopped_reading_never_blocks_the_front() -> None:
    async with _pool(heartbeat_interval_s=0.1, heartbeat_timeout_s=30.0) as (pool, ready):
        cell = pool.place("a")
        assert cell.pid is not None
        os.kill(cell.pid, signal.SIGSTOP)
        started = time.monotonic()
        text = "x" * 4096  # a few hundred of these fill the socket; then the outbox fills
        futures = [cell.submit("a", _sentence(text, i)) for i in range(1500)]
        assert time.monotonic() - started < 2.0  # submitting never waited on the pipe
        with pytest.raises(CellFailed, match="cell 0 hung"):
            await futures[0]
        assert cell.state is CellState.DOWN and ready[0] == []
        failed = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(f, CellFailed) for f in failed)
