"""Whether a cell still serves: heartbeats and job deadlines (pure; the clock is passed in).

The front process pings each ready cell every ``heartbeat_interval_s``, one ping
at a time; the cell's receiver thread answers at once (a long job does not hold
the answer back), with the job it is running and for how long. Every job the
front submits gets a deadline. From these events :class:`CellHealth` gives a
:class:`Verdict` at any time:

* ``HUNG`` — a ping has waited ``heartbeat_timeout_s`` for its answer (the process
  is stopped or wedged), or the cell's current job has run ``stuck_job_s``. The
  cell is killed and restarted.
* ``SUSPECT`` — a job is past its deadline and its result has not come back, or
  its late jobs came back but no ping sent since then has been answered yet.
  The cell takes no new calls.
* ``HEALTHY`` — otherwise.

Without new events a verdict only gets worse as time passes; it gets better only
when results and answers arrive.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from voicebot.errors import ConfigError

__all__ = ["CellHealth", "HealthLimits", "Verdict"]


class Verdict(enum.IntEnum):
    """How a cell is doing; larger is worse."""

    HEALTHY = 0
    SUSPECT = 1
    HUNG = 2


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """When a cell is pinged, and when silence or slowness counts against it."""

    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 3.0
    job_timeout_s: float = 10.0
    stuck_job_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval_s", "heartbeat_timeout_s", "job_timeout_s",
                     "stuck_job_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")


@dataclass(frozen=True, slots=True)
class _Running:
    job_id: int
    started_s: float


class CellHealth:
    """The heartbeat and job-deadline bookkeeping of one cell."""

    def __init__(self, limits: HealthLimits, *, now_s: float) -> None:
        self.limits = limits
        self._seq = 0
        self._last_ping_s = -math.inf
        self._outstanding_s: float | None = None  # when the unanswered ping was sent
        self._answered_s = now_s
        self._deadlines: dict[int, float] = {}  # jobs not back yet -> their deadline
        self._expired: set[int] = set()  # of those, the ones expire() has reported
        self._running: _Running | None = None
        self._recovering_since: float | None = None  # late jobs all back at this time

    # ------------------------------------------------------------------ heartbeat

    def ping(self, now_s: float) -> int | None:
        """The number of a ping to send now, or None: one is unanswered, or it is too soon."""
        if self._outstanding_s is not None:
            return None
        if now_s - self._last_ping_s < self.limits.heartbeat_interval_s:
            return None
        self._seq += 1
        self._last_ping_s = self._outstanding_s = now_s
        return self._seq

    def answered(self, seq: int, *, now_s: float, running_job: int | None = None,
                 running_s: float = 0.0) -> None:
        """The cell answered ping ``seq``; it was running ``running_job`` for ``running_s``."""
        if seq != self._seq or self._outstanding_s is None:
            return  # not the ping we wait for
        self._outstanding_s = None
        self._answered_s = now_s
        if running_job is not None and running_job in self._deadlines:
            self._running = _Running(running_job, now_s - max(0.0, running_s))
        else:
            self._running = None  # idle, or the reported job is already back
        if (self._recovering_since is not None and self._last_ping_s >= self._recovering_since
                and not self._late(now_s)):
            self._recovering_since = None

    def silent_s(self, now_s: float) -> float:
        """How long the unanswered ping has waited (0 when none is)."""
        return 0.0 if self._outstanding_s is None else max(0.0, now_s - self._outstanding_s)

    def running_s(self, now_s: float) -> float:
        """How long the current job has run, as the last answer reported (0 when idle)."""
        return 0.0 if self._running is None else max(0.0, now_s - self._running.started_s)

    # ------------------------------------------------------------------ jobs

    def submitted(self, job_id: int, *, now_s: float, timeout_s: float | None = None) -> float:
        """A job was sent to the cell; returns its deadline."""
        deadline = now_s + (self.limits.job_timeout_s if timeout_s is None else timeout_s)
        self._deadlines[job_id] = deadline
        return deadline

    def finished(self, job_id: int, *, now_s: float) -> bool:
        """A job's result (or its drop) came back; True when that is after its deadline."""
        deadline = self._deadlines.pop(job_id, None)
        self._expired.discard(job_id)
        if self._running is not None and self._running.job_id == job_id:
            self._running = None
        if deadline is None or deadline > now_s:
            return False
        if not self._late(now_s):
            self._recovering_since = now_s  # healthy again once a later ping is answered
        return True

    def expire(self, now_s: float) -> list[int]:
        """Jobs whose deadline has passed since the last call, earliest deadline first."""
        due = sorted((d, j) for j, d in self._deadlines.items()
                     if d <= now_s and j not in self._expired)
        self._expired.update(j for _, j in due)
        return [j for _, j in due]

    def pending(self) -> int:
        """Jobs whose result has not come back."""
        return len(self._deadlines)

    # ------------------------------------------------------------------ verdict

    def verdict(self, now_s: float) -> Verdict:
        if self.silent_s(now_s) >= self.limits.heartbeat_timeout_s:
            return Verdict.HUNG
        if self._running is not None and self.running_s(now_s) >= self.limits.stuck_job_s:
            return Verdict.HUNG
        if self._late(now_s) or self._recovering_since is not None:
            return Verdict.SUSPECT
        return Verdict.HEALTHY

    def reason(self, now_s: float) -> str:
        """Why the verdict is what it is (for the log)."""
        silent = self.silent_s(now_s)
        if silent >= self.limits.heartbeat_timeout_s:
            return f"no heartbeat answer for {silent:.1f} s"
        running = self.running_s(now_s)
        if self._running is not None and running >= self.limits.stuck_job_s:
            return f"its current job has run for {running:.1f} s"
        late = sum(1 for d in self._deadlines.values() if d <= now_s)
        if late:
            return f"{late} job(s) past their deadline"
        if self._recovering_since is not None:
            return "late jobs are back; waiting for a heartbeat answer"
        return "healthy"

    def next_check_s(self, now_s: float) -> float:
        """The next time the verdict or :meth:`expire` may change, or a ping fall due,
        without any event in between (``now_s`` when something is due already)."""
        times = [self._last_ping_s + self.limits.heartbeat_interval_s
                 if self._outstanding_s is None
                 else self._outstanding_s + self.limits.heartbeat_timeout_s]
        times.extend(d for j, d in self._deadlines.items() if j not in self._expired)
        if self._running is not None:
            times.append(self._running.started_s + self.limits.stuck_job_s)
        return max(now_s, min(times))

    def _late(self, now_s: float) -> bool:
        return any(d <= now_s for d in self._deadlines.values())
