"""Whatever an engine lane raises, a call's end releases everything: the cell forgets
the dialog (``runner.close()``), lanes stop, the transport stops."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from server.runners import VadRunner
from server.runtime import CallRuntime
from voicebot.dialog.scenario import Scenario
from voicebot.jobkinds import EngineJob, JobTag, kind_of, run_job
from voicebot.jobs import CallJobs
from voicebot.session import Session, SessionConfig
from voicebot.testing import fake_engines

__all__: list[str] = []


class _Ws:
    """A client that sends ``start`` and a second of silence, then hangs up; with
    ``audio_fails``, sending it bot audio raises (as a provider codec did on an absurd
    frame size: the error escaped the TTS lane's job and killed the lane)."""

    def __init__(self, *, audio_fails: bool = False) -> None:
        self._audio_fails = audio_fails
        start = {"type": "start", "call_id": "c1", "encoding": "pcm16", "sample_rate_hz": 16000}
        self._inbox: list[str | bytes] = [json.dumps(start), *([b"\x00" * 640] * 50)]
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes:
        if not self._inbox:
            raise ConnectionClosed(None, None)
        return self._inbox.pop(0)

    def __aiter__(self) -> _Ws:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, frame: str | bytes) -> None:
        if self._audio_fails and isinstance(frame, bytes):
            raise MemoryError("cannot pad bot audio to the declared frame size")
        self.sent.append(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


class _Runner:
    """Runs jobs on fake engines, except that ``failing`` jobs raise like a dead lane."""

    def __init__(self, jobs: CallJobs, failing: str) -> None:
        self._jobs = jobs
        self._failing = failing
        self.closed = 0

    async def run(self, job: EngineJob) -> Any:
        method = kind_of(job).method
        if method == self._failing:
            raise RuntimeError(f"{method}: the engine's lane is dead")
        return run_job(self._jobs, job)

    def cancel(self, tag: JobTag) -> None:
        pass

    async def close(self) -> None:
        self.closed += 1
        self._jobs.close()


@pytest.mark.parametrize(("failing", "audio_fails"), [
    ("synthesize", False), ("start_transcription", False), ("understand", False),
    ("", True),
])
async def test_a_failing_lane_never_skips_the_release(bank_card: Scenario, failing: str,
                                                      audio_fails: bool) -> None:
    engines, _ = fake_engines("I lost my card")
    engines.prepare(bank_card)
    session = Session(scenarios={bank_card.name: bank_card}, config=SessionConfig())
    runner = _Runner(CallJobs(engines), failing)
    ws = _Ws(audio_fails=audio_fails)
    with ThreadPoolExecutor(1) as executor:
        assert engines.detector is not None
        vad = VadRunner(engines.detector, executor)
        runtime = CallRuntime(ws, session, runner, vad)  # type: ignore[arg-type]
        await runtime.run()
    assert runner.closed == 1
    assert any(isinstance(f, str) and '"ready"' in f for f in ws.sent)
