"""The messages between the front process and a cell (frozen, picklable; pure).

The front sends :data:`ToCell`: a job to run (:class:`RunJob`, the job travels as
its own record, :data:`voicebot.jobkinds.EngineJob`), queued jobs to drop
(:class:`CancelJobs`, :class:`CloseCall`) and the heartbeat (:class:`Ping`).  The
cell answers :data:`FromCell`: once :class:`Ready` (or :class:`LoadFailed`), a
:class:`Pong` per ping, and one of :class:`Done`, :class:`Failed` or
:class:`Dropped` per job, which settles the job's future in the front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from voicebot.errors import EngineError

if TYPE_CHECKING:  # a cell imports the job table only after pinning itself
    import asyncio

    from voicebot.jobkinds import EngineJob, JobTag

__all__ = [
    "CancelJobs",
    "CloseCall",
    "Done",
    "Dropped",
    "Failed",
    "FromCell",
    "LoadFailed",
    "Ping",
    "Pong",
    "Ready",
    "RunJob",
    "ToCell",
]


# ---------------------------------------------------------------------- front -> cell


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """The heartbeat: answered at once, even while a job runs."""

    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunJob:
    job_id: int
    call_id: str
    job: EngineJob


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelJobs:
    """Drop the call's queued jobs of ``tag`` (a cancelled reply's sentences)."""

    call_id: str
    tag: JobTag


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseCall:
    """The call ended: drop its queued jobs, then release its engine state."""

    call_id: str


ToCell: TypeAlias = Ping | RunJob | CancelJobs | CloseCall


# ---------------------------------------------------------------------- cell -> front


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadFailed:
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """The answer to ping ``seq``: the job running now (None when idle), for how long."""

    seq: int
    running_job: int | None
    running_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    job_id: int
    result: Any

    def settle(self, future: asyncio.Future[Any]) -> None:
        """Settle the future of job ``job_id`` (front process)."""
        future.set_result(self.result)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    job_id: int
    error: str

    def settle(self, future: asyncio.Future[Any]) -> None:
        future.set_exception(EngineError(self.error))


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """A queued job was dropped (cancelled, or its call closed) before it ran."""

    job_id: int

    def settle(self, future: asyncio.Future[Any]) -> None:
        future.cancel()


FromCell: TypeAlias = Ready | LoadFailed | Pong | Done | Failed | Dropped
