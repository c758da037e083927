"""The GPU worker and a call's GpuRunner with fake batch engines (no GPU, no clock asserts)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from server.cells import JobTimedOut
from server.gpu_batching import BatchLimits
from server.gpu_runner import GpuRunner
from server.gpu_worker import GpuClosed, GpuWorker
from server.runners import JobDropped
from voicebot.commands import (
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
from voicebot.engines.gpu_batch import DecodeRequest, SynthesisRequest
from voicebot.engines.gpu_fakes import FakeBatchSynthesizer, FakeBatchTranscriber
from voicebot.errors import EngineError
from voicebot.jobkinds import EngineJob, JobTag, Lane, Understanding, Urgency
from voicebot.types import Transcript

LONG_WAITS = {u: 10_000.0 for u in Urgency}  # only a full batch (or a drain) releases


def pcm(samples: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.ones(samples, dtype=np.int16)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """The threads a call's GPU jobs wait on (the GPU backend's, in the server)."""
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-gpu-job")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def done(*futures: Future[Any]) -> Any:
    """Await the worker's (thread-safe) futures on the loop."""
    return asyncio.gather(*(asyncio.wrap_future(f) for f in futures))


def held_soon(w: GpuWorker) -> threading.Event:
    """Set once a job was handed to ``w`` (from a call's job thread)."""
    handed = threading.Event()
    submit = w.submit

    def watched(dialog: str, tag: JobTag, urgency: Urgency,
                request: DecodeRequest | SynthesisRequest) -> Future[Any]:
        future = submit(dialog, tag, urgency, request)
        handed.set()
        return future

    w.submit = watched  # type: ignore[method-assign]
    return handed


def worker(**kw: Any) -> GpuWorker:
    w = GpuWorker(transcriber=kw.pop("transcriber", FakeBatchTranscriber()),
                  synthesizer=kw.pop("synthesizer", FakeBatchSynthesizer()), **kw)
    w.start()
    return w


async def test_eight_dialogs_arriving_together_run_as_one_batch() -> None:
    asr = FakeBatchTranscriber()
    w = worker(transcriber=asr, limits=BatchLimits(max_batch=8, waits_ms=LONG_WAITS))
    futures = [w.submit(f"call{i}", (Lane.ASR, 0), Urgency.TURN,
                        DecodeRequest(pcm=pcm(1000 + i))) for i in range(8)]
    results = await done(*futures)
    assert asr.batches == [8]
    assert [r.text for r in results] == [f"{1000 + i} samples" for i in range(8)]
    assert asr.busy_ms == 20.0 + 8 * 2.0  # one launch for eight calls
    await w.close()


async def test_a_lone_turn_job_is_not_held_for_a_batch() -> None:
    asr = FakeBatchTranscriber()
    w = worker(transcriber=asr, limits=BatchLimits(max_batch=8))  # TURN may wait 5 ms
    [result] = await done(w.submit("call", (Lane.ASR, 0), Urgency.TURN,
                                   DecodeRequest(pcm=pcm(160))))
    assert result.text == "160 samples" and asr.batches == [1]
    await w.close()


async def test_a_failed_batch_fails_each_job_and_the_worker_goes_on() -> None:
    asr = FakeBatchTranscriber(fail=lambda index: index == 0)
    w = worker(transcriber=asr, limits=BatchLimits(max_batch=2, waits_ms=LONG_WAITS))
    doomed = [w.submit(c, (Lane.ASR, 0), Urgency.TURN, DecodeRequest(pcm=pcm(10)))
              for c in ("a", "b")]
    outcomes = await asyncio.gather(*map(asyncio.wrap_future, doomed), return_exceptions=True)
    assert all(isinstance(o, EngineError) and "GPU decode batch of 2 failed" in str(o)
               for o in outcomes)
    later = [w.submit(c, (Lane.ASR, 0), Urgency.TURN, DecodeRequest(pcm=pcm(20)))
             for c in ("c", "d")]
    assert [t.text for t in await done(*later)] == ["20 samples"] * 2
    await w.close()


async def test_cancel_removes_a_job_from_its_pending_batch() -> None:
    tts = FakeBatchSynthesizer()
    w = worker(synthesizer=tts, limits=BatchLimits(max_batch=3, waits_ms=LONG_WAITS))
    tag: JobTag = (Lane.TTS, 7)
    gone = w.submit("a", tag, Urgency.LATER_SENTENCE, SynthesisRequest(text="bye",
                                                                       sample_rate_hz=8000))
    kept = [w.submit(c, (Lane.TTS, 1), Urgency.LATER_SENTENCE,
                     SynthesisRequest(text="hello", sample_rate_hz=8000)) for c in "bc"]
    assert w.cancel("a", tag) == 1
    assert gone.cancelled()
    last = w.submit("d", (Lane.TTS, 1), Urgency.LATER_SENTENCE,
                    SynthesisRequest(text="hi", sample_rate_hz=8000))
    audio = await done(*kept, last)
    assert tts.batches == [3]  # the cancelled sentence took no place in it
    assert [len(a) for a in audio] == [400, 400, 160]  # 10 ms per char at 8 kHz
    await w.close()


async def test_close_drains_held_jobs_then_refuses_new_ones() -> None:
    tts = FakeBatchSynthesizer()
    w = worker(synthesizer=tts, limits=BatchLimits(max_batch=8, waits_ms=LONG_WAITS))
    held = w.submit("a", (Lane.TTS, 0), Urgency.LATER_SENTENCE,
                    SynthesisRequest(text="later", sample_rate_hz=16000))
    await w.close()
    assert held.done() and len(held.result()) == 800
    with pytest.raises(GpuClosed):
        w.submit("a", (Lane.TTS, 1), Urgency.LATER_SENTENCE,
                 SynthesisRequest(text="x", sample_rate_hz=16000))


async def test_jobs_pile_up_behind_a_running_batch_and_go_together() -> None:
    gate = threading.Event()
    asr = FakeBatchTranscriber(gate=gate)
    w = worker(transcriber=asr, limits=BatchLimits(max_batch=8))
    first = w.submit("a", (Lane.ASR, 0), Urgency.TURN, DecodeRequest(pcm=pcm(1)))
    await asyncio.to_thread(asr.started.wait, 10)  # the GPU is busy with the first
    rest = [w.submit(f"c{i}", (Lane.ASR, 0), Urgency.TURN, DecodeRequest(pcm=pcm(2)))
            for i in range(5)]
    gate.set()
    await done(first, *rest)
    assert asr.batches == [1, 5]
    await w.close()


class CpuRunner:
    """The call's CPU side (its cell): records what it ran."""

    def __init__(self) -> None:
        self.ran: list[EngineJob] = []
        self.cancelled: list[JobTag] = []
        self.closed = False

    async def run(self, job: EngineJob) -> Any:
        self.ran.append(job)
        return Understanding(None, {})

    def cancel(self, tag: JobTag) -> None:
        self.cancelled.append(tag)

    async def close(self) -> None:
        self.closed = True


async def test_runner_sends_asr_and_tts_to_the_gpu_and_nlu_to_the_cell(
        executor: ThreadPoolExecutor) -> None:
    asr, tts = FakeBatchTranscriber(), FakeBatchSynthesizer()
    w = worker(transcriber=asr, synthesizer=tts)
    cpu = CpuRunner()
    runner = GpuRunner(w, "call", cpu, executor=executor)
    await runner.run(StartTranscription(utterance=1, domain="bank", pcm=pcm(800)))
    await runner.run(FeedTranscription(utterance=1, pcm=pcm(800)))
    speculated = await runner.run(SpeculateTranscription(utterance=1))
    assert speculated == Transcript("1600 samples in bank", 1.0, 100)
    kept = await runner.run(FinishTranscription(utterance=1, endpoint_delay_ms=500))
    assert kept == speculated
    await runner.run(StartTranscription(utterance=2, domain="bank", pcm=pcm(160)))
    await runner.run(SpeculateTranscription(utterance=2))
    await runner.run(DiscardSpeculation(utterance=2))
    await runner.run(FeedTranscription(utterance=2, pcm=pcm(160)))
    final = await runner.run(FinishTranscription(utterance=2, endpoint_delay_ms=500))
    assert final.text == "320 samples in bank"  # decoded again with the new audio
    assert runner.speculations_kept == 1 and runner.speculations_discarded == 1
    audio = await runner.run(Synthesize(text="Hello.", sample_rate_hz=8000, reply=0, index=0))
    assert len(audio) == 480
    await runner.run(Understand(text="hello", domain="bank", turn=0))
    assert [type(j) for j in cpu.ran] == [Understand]
    assert asr.batches == [1, 1, 1] and tts.batches == [1]
    runner.cancel((Lane.NLU, 0))
    assert cpu.cancelled == [(Lane.NLU, 0)]
    await runner.close()
    assert cpu.closed
    await w.close()


async def test_runner_cancel_drops_a_held_sentence_as_a_dropped_job(
        executor: ThreadPoolExecutor) -> None:
    w = worker(limits=BatchLimits(max_batch=8, waits_ms=LONG_WAITS))
    runner = GpuRunner(w, "call", CpuRunner(), executor=executor)
    handed = held_soon(w)
    task = asyncio.ensure_future(
        runner.run(Synthesize(text="Later.", sample_rate_hz=8000, reply=3, index=1)))
    assert await asyncio.to_thread(handed.wait, 10)  # its thread handed it to the worker
    runner.cancel((Lane.TTS, 3))
    with pytest.raises(JobDropped):
        await task
    await w.close()


async def test_a_speculative_reply_synthesizes_on_the_gpu_and_understands_on_the_cell(
        executor: ThreadPoolExecutor) -> None:
    tts = FakeBatchSynthesizer()
    batches: list[tuple[str, list[JobTag]]] = []
    w = worker(synthesizer=tts, on_batch=lambda b: batches.append(
        (b.kind, [j.tag for j in b.jobs])))
    cpu = CpuRunner()
    runner = GpuRunner(w, "call", cpu, executor=executor)
    await runner.run(UnderstandAhead(speculation=4, text="lost card", domain="bank"))
    audio = await runner.run(SynthesizeAhead(speculation=4, text="Sorry.", sample_rate_hz=16000))
    assert [type(j) for j in cpu.ran] == [UnderstandAhead]
    assert batches == [("synthesize", [(Lane.AHEAD, 4)])] and tts.texts == ["Sorry."]
    assert len(audio) == 6 * 10 * 16  # the fake voice's own rate: not resampled
    await runner.close()
    await w.close()


async def test_a_job_past_its_deadline_times_out_and_leaves_the_batch(
        executor: ThreadPoolExecutor) -> None:
    asr = FakeBatchTranscriber()
    w = worker(transcriber=asr, limits=BatchLimits(max_batch=8, waits_ms=LONG_WAITS))
    runner = GpuRunner(w, "call", CpuRunner(), executor=executor, job_timeout_s=0.2)
    await runner.run(StartTranscription(utterance=1, domain="bank", pcm=pcm(160)))
    with pytest.raises(JobTimedOut):
        await runner.run(FinishTranscription(utterance=1, endpoint_delay_ms=500))
    assert w.held == 0 and asr.batches == []  # dropped, never decoded
    await runner.close()
    await w.close()


async def test_a_cancelled_call_task_frees_its_held_job(executor: ThreadPoolExecutor) -> None:
    w = worker(limits=BatchLimits(max_batch=8, waits_ms=LONG_WAITS))
    runner = GpuRunner(w, "call", CpuRunner(), executor=executor)
    handed = held_soon(w)
    task = asyncio.ensure_future(
        runner.run(Synthesize(text="Hello.", sample_rate_hz=8000, reply=0, index=0)))
    assert await asyncio.to_thread(handed.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w.held == 0
    await runner.close()
    await w.close()
