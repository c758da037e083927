"""The job contract: one table row per kind of engine job, read by everything that carries jobs.

A :class:`~voicebot.session.Session` asks for engine work by returning job records
among its commands (:data:`EngineJob`: ``StartTranscription``, ``Synthesize``...,
frozen dataclasses from :mod:`voicebot.commands`).  :data:`JOB_KINDS` holds one
:class:`JobKind` per record type, and it alone says, for each kind:

* ``run``: the :class:`JobEngine` method that does it (``method`` is that method's
  name, the job's name in logs); :class:`voicebot.jobs.CallJobs` implements the
  Protocol, in a cell or on a server thread; :func:`run_job` calls it;
* ``lane``: a call's jobs of one lane run in order, one at a time (the runtime's
  queues; :attr:`Lane.VAD` runs inline in the front process); the lane and the
  job's ``key`` (its utterance, turn or reply) form its :data:`JobTag`, by which a
  cell drops queued jobs (a cancelled reply's sentences);
* ``urgency``: its :class:`Urgency` class, whose budget the cell's
  earliest-deadline-first queue (``server/edf.py``) adds to its arrival time;
* ``feed``: the Session input that takes its result (:func:`apply_result`), and
  ``fallback``, the result fed instead when the job fails.

The runtime (``server/runtime.py``), the runners (``server/runners.py``), the
cell (``server/cells.py``, ``server/cell_worker.py``), the EDF queue and the test
``SessionDriver`` carry every job by its row (the runtime adds only the inline
VAD and the turn-latency parts it measures on a few kinds).

Adding a job kind
-----------------
Declare its record in :mod:`voicebot.commands` (and add it to ``Command``); here,
add it to :data:`EngineJob`, declare its method on :class:`JobEngine` and add its
row to :data:`JOB_KINDS`.  Those two files are the contract; then the job's two
ends do their part: :class:`voicebot.jobs.CallJobs` implements the new
``JobEngine`` method and the Session emits the record and has the input that
the row's ``feed`` calls.  Nothing that carries jobs changes;
``tests/unit/test_jobs.py`` checks that every record has exactly one row whose
method and Session input exist.

This module is pure: stdlib, numpy and voicebot's value types; no model runtime.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt

from voicebot.commands import (
    CancelTranscription,
    Command,
    DetectSpeech,
    DetectTurnEnd,
    DiscardSpeculation,
    FeedTranscription,
    FinishTranscription,
    SpeculateTranscription,
    StartTranscription,
    Synthesize,
    SynthesizeAhead,
    Understand,
    UnderstandAhead,
)
from voicebot.types import Pcm, Transcript, Understanding

if TYPE_CHECKING:
    from voicebot.session import Session

__all__ = [
    "JOB_KINDS",
    "EngineJob",
    "JobEngine",
    "JobKind",
    "JobTag",
    "Lane",
    "Understanding",
    "Urgency",
    "apply_result",
    "is_engine_job",
    "job_tag",
    "kind_of",
    "run_job",
]

EngineJob: TypeAlias = (
    DetectSpeech
    | StartTranscription
    | FeedTranscription
    | SpeculateTranscription
    | DiscardSpeculation
    | FinishTranscription
    | CancelTranscription
    | DetectTurnEnd
    | Understand
    | UnderstandAhead
    | Synthesize
    | SynthesizeAhead
)
"""The commands that are engine jobs: exactly the record types of :data:`JOB_KINDS`."""


class JobEngine(Protocol):
    """What runs a call's jobs: one blocking method per job kind, complete results."""

    def detect(self, pcm: Pcm) -> npt.NDArray[np.float32]: ...

    def start_transcription(self, utterance: int, domain: str, pcm: Pcm) -> None: ...

    def feed_transcription(self, utterance: int, pcm: Pcm) -> None: ...

    def speculate_transcription(self, utterance: int) -> Transcript | None: ...

    def discard_speculation(self, utterance: int) -> None: ...

    def finish_transcription(self, utterance: int) -> Transcript: ...

    def cancel_transcription(self, utterance: int) -> None: ...

    def detect_turn_end(self, pcm: Pcm) -> float: ...

    def understand(self, text: str, domain: str) -> Understanding: ...

    def synthesize(self, text: str, sample_rate_hz: int, index: int = 0) -> Pcm: ...


class Lane(enum.Enum):
    """A call's jobs of one lane run in order, one at a time."""

    VAD = "vad"
    """Inline in the front process, answered before the next audio frame is read."""
    ASR = "asr"
    TURN = "turn"
    """The end-of-turn model: apart from the ASR, whose speculation may be decoding."""
    NLU = "nlu"
    TTS = "tts"
    AHEAD = "ahead"
    """A speculative reply's first sentence, apart from the replies' own sentences (its NLU
    goes in the NLU lane, so turns are understood in order whichever way they went)."""


JobTag: TypeAlias = tuple[Lane, int]
"""A job's lane and key: a cell drops a call's queued jobs by tag."""


class Urgency(enum.Enum):
    """Urgency classes of the cell's EDF queue; the value is the budget in ms
    (deadline = arrival + budget: smaller runs first)."""

    CANCEL = 0.0
    """Frees engine state and costs nothing."""
    VAD = 10.0
    TURN = 50.0
    """The caller waits on it: the final ASR of an ended utterance, the NLU, the
    end-of-turn model's verdict in a pause."""
    SPECULATION = 60.0
    FIRST_SENTENCE = 100.0
    """The first sentence of a reply: the turn's latency ends with its audio."""
    STREAMING = 250.0
    """Incremental ASR while the caller talks."""
    LATER_SENTENCE = 1000.0

    @property
    def budget_ms(self) -> float:
        return float(self.value)


J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)  # no slots: ``JobKind[J, R](...)`` sets __orig_class__
class JobKind(Generic[J, R]):
    """One row of the table: job record type ``J`` whose engine method returns ``R``."""

    job: type[J]
    method: str
    """The :class:`JobEngine` method that ``run`` calls (the job's name in logs)."""
    run: Callable[[JobEngine, J], R]
    lane: Lane
    engine: str
    """The engine kind that does it (``vad``, ``asr``, ``turn``, ``nlu``, ``tts``): where
    a runner that splits engines across devices sends it (``server/gpu_runner.py``)."""
    key: Callable[[J], int]
    """The job's place in its lane: its utterance, turn or reply."""
    urgency: Callable[[J], Urgency]
    label: str
    """What failed, in the runtime's log line when the job fails."""
    feed: Callable[[Session, J, R], list[Command]] | None = None
    """The Session input that takes the result (None: the job has no result)."""
    fallback: Callable[[J], R] | None = None
    """The result fed when the job fails (None: nothing is fed)."""
    failure_notice: str | None = None
    """Told to the client (a non-fatal error event) when the job fails."""
    always_answered: bool = False
    """The Session counts these: it hears ``fallback`` even when the cell is lost."""

    def failed(self, job: J) -> R | None:
        """The result to feed in place of a failed job's."""
        return None if self.fallback is None else self.fallback(job)


def _always(urgency: Urgency) -> Callable[[object], Urgency]:
    return lambda _job: urgency


def _sentence_urgency(job: Synthesize) -> Urgency:
    return Urgency.FIRST_SENTENCE if job.index == 0 else Urgency.LATER_SENTENCE


def _utterance(job: StartTranscription | FeedTranscription | SpeculateTranscription
               | DiscardSpeculation | FinishTranscription | CancelTranscription) -> int:
    return job.utterance


_ASR_JOB = "ASR job"

JOB_KINDS: tuple[JobKind[Any, Any], ...] = (
    JobKind[DetectSpeech, npt.NDArray[np.float32]](
        job=DetectSpeech, method="detect", run=lambda e, j: e.detect(j.pcm),
        lane=Lane.VAD, engine="vad", key=lambda _j: 0, urgency=_always(Urgency.VAD), label="VAD",
        feed=lambda s, j, r: s.speech_probabilities(j.pcm, r),
    ),
    JobKind[StartTranscription, None](
        job=StartTranscription, method="start_transcription",
        run=lambda e, j: e.start_transcription(j.utterance, j.domain, j.pcm),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.STREAMING),
        label=_ASR_JOB,
    ),
    JobKind[FeedTranscription, None](
        job=FeedTranscription, method="feed_transcription",
        run=lambda e, j: e.feed_transcription(j.utterance, j.pcm),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.STREAMING),
        label=_ASR_JOB,
    ),
    JobKind[SpeculateTranscription, Transcript | None](
        job=SpeculateTranscription, method="speculate_transcription",
        run=lambda e, j: e.speculate_transcription(j.utterance),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.SPECULATION),
        label="ASR speculation",
        feed=lambda s, j, r: s.speculated(j.utterance, r),
        fallback=lambda _j: None, always_answered=True,
    ),
    JobKind[DiscardSpeculation, None](
        job=DiscardSpeculation, method="discard_speculation",
        run=lambda e, j: e.discard_speculation(j.utterance),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.CANCEL),
        label=_ASR_JOB,
    ),
    JobKind[FinishTranscription, Transcript](
        job=FinishTranscription, method="finish_transcription",
        run=lambda e, j: e.finish_transcription(j.utterance),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.TURN), label="ASR",
        feed=lambda s, j, r: s.transcribed(j.utterance, r),
        fallback=lambda _j: Transcript(""),
        failure_notice="speech recognition failed for this utterance",
    ),
    JobKind[CancelTranscription, None](
        job=CancelTranscription, method="cancel_transcription",
        run=lambda e, j: e.cancel_transcription(j.utterance),
        lane=Lane.ASR, engine="asr", key=_utterance, urgency=_always(Urgency.CANCEL),
        label=_ASR_JOB,
    ),
    JobKind[DetectTurnEnd, float](
        job=DetectTurnEnd, method="detect_turn_end", run=lambda e, j: e.detect_turn_end(j.pcm),
        lane=Lane.TURN, engine="turn", key=lambda j: j.utterance, urgency=_always(Urgency.TURN),
        label="end-of-turn model",
        feed=lambda s, j, r: s.turn_verdict(j.request_id, r),
    ),
    JobKind[Understand, Understanding](
        job=Understand, method="understand", run=lambda e, j: e.understand(j.text, j.domain),
        lane=Lane.NLU, engine="nlu", key=lambda j: j.turn, urgency=_always(Urgency.TURN),
        label="NLU",
        feed=lambda s, j, r: s.understood(j.turn, r.intent, r.entities),
        fallback=lambda _j: Understanding(None, {}),
        failure_notice="understanding failed for this turn",
    ),
    JobKind[Synthesize, Pcm](
        job=Synthesize, method="synthesize",
        run=lambda e, j: e.synthesize(j.text, j.sample_rate_hz, j.index),
        lane=Lane.TTS, engine="tts", key=lambda j: j.reply, urgency=_sentence_urgency, label="TTS",
        feed=lambda s, j, r: s.synthesized(j.reply, j.index, r),
        fallback=lambda _j: np.zeros(0, dtype=np.int16),
        failure_notice="speech synthesis failed for a sentence",
    ),
    JobKind[UnderstandAhead, Understanding | None](
        job=UnderstandAhead, method="understand", run=lambda e, j: e.understand(j.text, j.domain),
        lane=Lane.NLU, engine="nlu", key=lambda j: j.speculation,
        urgency=_always(Urgency.SPECULATION),
        label="NLU speculation", feed=lambda s, j, r: s.understood_ahead(j.speculation, r),
        fallback=lambda _j: None, always_answered=True,
    ),
    JobKind[SynthesizeAhead, Pcm | None](
        job=SynthesizeAhead, method="synthesize",
        run=lambda e, j: e.synthesize(j.text, j.sample_rate_hz, 0),
        lane=Lane.AHEAD, engine="tts", key=lambda j: j.speculation,
        urgency=_always(Urgency.SPECULATION),
        label="TTS speculation", feed=lambda s, j, r: s.synthesized_ahead(j.speculation, r),
        fallback=lambda _j: None, always_answered=True,
    ),
)
"""Every engine job kind, one row each."""

_BY_TYPE: dict[type[Any], JobKind[Any, Any]] = {kind.job: kind for kind in JOB_KINDS}


def is_engine_job(command: object) -> TypeGuard[EngineJob]:
    """Whether ``command`` is a job of the table (an :data:`EngineJob`)."""
    return type(command) in _BY_TYPE


def kind_of(job: EngineJob) -> JobKind[Any, Any]:
    """The row of an engine job."""
    return _BY_TYPE[type(job)]


def job_tag(job: EngineJob) -> JobTag:
    kind = kind_of(job)
    return (kind.lane, kind.key(job))


def run_job(engine: JobEngine, job: EngineJob) -> Any:
    """Run ``job`` on ``engine`` (blocking); returns the engine method's result."""
    return kind_of(job).run(engine, job)


def apply_result(session: Session, job: EngineJob, result: Any) -> list[Command]:
    """Give ``job``'s result to the Session input of its kind; returns the new commands."""
    kind = kind_of(job)
    return [] if kind.feed is None else kind.feed(session, job, result)
