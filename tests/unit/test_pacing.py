"""The outbound pacer on an injected clock: no real time passes."""

from __future__ import annotations

import asyncio

import pytest

from server.pacing import Pacer, PacingMode

__all__: list[str] = []


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sent: list[tuple[float, str | bytes]] = []
        self.five_sent = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay
        await asyncio.sleep(0)

    async def send(self, frame: str | bytes) -> None:
        self.sent.append((round(self.now - 100.0, 6), frame))
        if len(self.sent) == 5:
            self.five_sent.set()


def _pacer(t: FakeTime, mode: PacingMode, **kwargs: int) -> Pacer:
    pacer = Pacer(t.send, mode=mode, clock=t.clock, sleep=t.sleep, **kwargs)
    pacer.start()
    return pacer


async def test_realtime_sends_20ms_frames_on_an_absolute_schedule() -> None:
    t = FakeTime()
    pacer = _pacer(t, "realtime")
    for i in range(100):
        await pacer.audio(bytes([i]), 20)
    await pacer.drain()
    times = [at for at, _ in t.sent]
    assert times == pytest.approx([i * 0.02 for i in range(100)])  # no drift after 2 s
    await pacer.stop()


async def test_buffered_runs_at_most_half_a_second_ahead() -> None:
    t = FakeTime()
    pacer = _pacer(t, "buffered")
    for i in range(100):  # 2 s of audio
        await pacer.audio(bytes([i]), 20)
    await pacer.drain()
    times = [at for at, _ in t.sent]
    assert times[:26] == [0.0] * 26  # 0..500 ms of audio at once
    for i, at in enumerate(times):
        assert at == pytest.approx(max(0.0, i * 0.02 - 0.5))
    await pacer.stop()


async def test_marks_keep_their_place_between_audio() -> None:
    t = FakeTime()
    pacer = _pacer(t, "realtime")
    await pacer.audio(b"a", 20)
    await pacer.control("mark-1")
    await pacer.audio(b"b", 20)
    await pacer.drain()
    assert [frame for _, frame in t.sent] == [b"a", "mark-1", b"b"]
    assert t.sent[1][0] == 0.0 and t.sent[2][0] == pytest.approx(0.02)  # marks do not wait
    await pacer.stop()


async def test_clear_drops_what_is_queued_and_starts_a_new_schedule() -> None:
    t = FakeTime()
    pacer = _pacer(t, "realtime", depth=64)
    for i in range(50):
        await pacer.audio(bytes([i]), 20)
    await t.five_sent.wait()
    assert pacer.clear() > 0 and pacer.queued == 0
    await pacer.drain()
    cleared_at = len(t.sent)
    assert cleared_at <= 6
    t.now += 3.0
    await pacer.audio(b"new", 20)
    await pacer.drain()
    assert t.sent[-1][1] == b"new" and t.sent[-1][0] == pytest.approx(t.now - 100.0)
    await pacer.stop()


async def test_pause_holds_frames_until_resumed() -> None:
    t = FakeTime()
    pacer = _pacer(t, "buffered")
    pacer.pause()
    await pacer.audio(b"a", 20)
    for _ in range(10):
        await asyncio.sleep(0)
    assert t.sent == [] and pacer.paused
    pacer.resume()
    await pacer.drain()
    assert [frame for _, frame in t.sent] == [b"a"]
    await pacer.stop()


async def test_the_queue_is_bounded() -> None:
    t = FakeTime()
    pacer = Pacer(t.send, mode="realtime", clock=t.clock, sleep=t.sleep, depth=3)
    for i in range(3):
        await pacer.audio(bytes([i]), 20)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pacer.audio(b"x", 20), 0.05)  # not started: nothing drains
    await pacer.drain(timeout_s=0.01)  # bounded wait, no hang
    assert pacer.queued == 3
