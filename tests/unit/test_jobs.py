"""The job table (voicebot/jobkinds.py): one row per engine job record, each naming an engine
method that exists and a Session input that exists, read by everything that carries jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import pickle
from typing import Any, cast, get_args, get_type_hints

import numpy as np
import pytest

from server.cells import CellPool
from server.runtime import CallRuntime
from tests.unit.test_health import SPEC, sleepy_cell
from voicebot.commands import (
    BargedIn,
    CallEnded,
    CallWebhook,
    CancelReply,
    CloseConnection,
    Command,
    FinishTranscription,
    Mark,
    RecordingPause,
    ReplyAhead,
    ReplyStarted,
    SendAudio,
    SendEvent,
    StartTranscription,
    Synthesize,
)
from voicebot.dialog.scenario import Scenario
from voicebot.errors import EngineError
from voicebot.jobkinds import (
    JOB_KINDS,
    EngineJob,
    JobEngine,
    JobKind,
    Lane,
    Urgency,
    apply_result,
    is_engine_job,
    job_tag,
    kind_of,
    run_job,
)
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import SessionDriver, fake_engines
from voicebot.types import Pcm, Transcript

__all__: list[str] = []

NOT_JOBS = {SendEvent, SendAudio, Mark, CloseConnection, CancelReply, CallWebhook, ReplyStarted,
            BargedIn, RecordingPause, CallEnded, ReplyAhead}
"""The commands that are no engine job: the runtime sends, logs or posts them itself."""

_SAMPLE_VALUES: dict[object, object] = {int: 1, str: "bank_card",
                                        Pcm: np.zeros(512, dtype=np.int16)}


def _sample(job_type: type[Any]) -> Any:
    """An instance of a job record, every field filled by its type."""
    hints = get_type_hints(job_type)
    return job_type(**{f.name: _SAMPLE_VALUES[hints[f.name]]
                       for f in dataclasses.fields(job_type)})


class _Recorder:
    """Stands in for an engine or a Session: records the one method called on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> list[Command]:
            self.calls.append((name, args))
            return []

        return call


def test_every_engine_job_has_exactly_one_row_and_every_other_command_none() -> None:
    rows = [kind.job for kind in JOB_KINDS]
    assert len(rows) == len(set(rows))
    assert set(rows) == set(get_args(EngineJob))
    assert set(rows) | NOT_JOBS == set(get_args(Command))
    assert not set(rows) & NOT_JOBS
    assert all(is_engine_job(_sample(job)) for job in rows)
    assert not is_engine_job(CancelReply(1))


def test_every_row_runs_its_named_method_which_the_engine_protocol_and_call_jobs_have() -> None:
    for kind in JOB_KINDS:
        job = _sample(kind.job)
        engine = _Recorder()
        kind.run(cast(JobEngine, engine), job)
        assert [name for name, _ in engine.calls] == [kind.method], kind.job
        args = engine.calls[0][1]
        for owner in (JobEngine, CallJobs):
            method = getattr(owner, kind.method)
            inspect.signature(method).bind(None, *args)  # raises if the arguments do not fit


def test_every_row_feeds_a_session_input_that_exists() -> None:
    for kind in JOB_KINDS:
        job = _sample(kind.job)
        session = _Recorder()
        assert apply_result(cast(Session, session), job, kind.failed(job)) == []
        if kind.feed is None:
            assert session.calls == [], kind.job
            continue
        [(name, args)] = session.calls
        assert not name.startswith("_")
        inspect.signature(getattr(Session, name)).bind(None, *args)


def test_failure_rules_are_consistent() -> None:
    for kind in JOB_KINDS:
        if kind.fallback is not None or kind.always_answered or kind.failure_notice:
            assert kind.feed is not None, kind.job  # a fallback is fed somewhere
        if kind.always_answered or kind.failure_notice:
            assert kind.fallback is not None, kind.job


def test_urgency_classes_and_the_first_sentence_rule() -> None:
    order = [Urgency.CANCEL, Urgency.VAD, Urgency.TURN, Urgency.SPECULATION,
             Urgency.FIRST_SENTENCE, Urgency.STREAMING, Urgency.LATER_SENTENCE]
    assert [u.budget_ms for u in order] == sorted(u.budget_ms for u in Urgency)
    first, later = (Synthesize(reply=1, index=i, text="x", sample_rate_hz=8000) for i in (0, 1))
    assert kind_of(first).urgency(first) is Urgency.FIRST_SENTENCE
    assert kind_of(later).urgency(later) is Urgency.LATER_SENTENCE
    assert kind_of(FinishTranscription(1, 0)).urgency(FinishTranscription(1, 0)) is Urgency.TURN


def test_only_the_vad_runs_inline_and_tags_name_a_lane() -> None:
    assert [kind.method for kind in JOB_KINDS if kind.lane is Lane.VAD] == ["detect"]
    sentence = Synthesize(reply=1, index=0, text="x", sample_rate_hz=8000)
    assert job_tag(sentence) == (Lane.TTS, 1)
    assert job_tag(FinishTranscription(1, 0)) == (Lane.ASR, 1)


def test_job_records_and_tags_cross_the_cell_pipe() -> None:
    for kind in JOB_KINDS:
        job = _sample(kind.job)
        back = pickle.loads(pickle.dumps(job))
        assert type(back) is kind.job and job_tag(back) == job_tag(job)


def test_call_jobs_run_every_kind(bank_card: Scenario) -> None:
    engines, _ = fake_engines("hello")
    engines.prepare(bank_card)
    engine: JobEngine = CallJobs(engines)  # mypy: CallJobs implements the Protocol
    for kind in JOB_KINDS:
        run_job(engine, _sample(kind.job))


async def test_the_runtime_and_the_session_driver_handle_every_command(
        bank_card: Scenario) -> None:
    session = Session(scenarios={bank_card.name: bank_card}, config=SessionConfig())
    engines, _ = fake_engines()
    runtime = CallRuntime(object(), session, object(), object())  # type: ignore[arg-type]
    assert set(runtime._handlers) == set(get_args(Command))
    driver = SessionDriver(session, CallJobs(engines))
    assert set(driver._handlers) | {k.job for k in JOB_KINDS} == set(get_args(Command))


def test_a_row_is_typed_by_its_record_and_result() -> None:
    kind: JobKind[Any, Any] = kind_of(FinishTranscription(1, 0))
    assert kind.method == "finish_transcription" and kind.lane is Lane.ASR
    assert kind.failed(FinishTranscription(1, 0)) == Transcript("")


async def test_a_cell_runs_job_records_and_drops_only_a_cancelled_replys_sentences() -> None:
    """The records and messages across a real cell process (fake engines)."""
    pool = CellPool([SPEC], worker=sleepy_cell)
    await pool.start()
    try:
        cell = pool.place("a")
        busy = cell.submit("a", Synthesize(reply=1, index=0, text="sleep 0.5",
                                           sample_rate_hz=16_000))
        later = [cell.submit("a", Synthesize(reply=2, index=i, text="x", sample_rate_hz=16_000))
                 for i in (1, 2)]
        kept = cell.submit("a", Synthesize(reply=3, index=1, text="y", sample_rate_hz=16_000))
        unknown = cell.submit("a", StartTranscription(2, "none", np.zeros(320, dtype=np.int16)))
        finished = cell.submit("a", FinishTranscription(utterance=2, endpoint_delay_ms=0))
        cell.cancel("a", (Lane.TTS, 2))
        assert len(await busy) > 0
        await asyncio.wait(later)
        assert all(f.cancelled() for f in later)
        assert len(await kept) > 0
        with pytest.raises(EngineError, match="unknown ASR domain 'none'"):
            await unknown  # the cell's fake ASR has no domain: its error comes back
        assert await finished == Transcript("")
    finally:
        pool.stop()
