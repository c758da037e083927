"""Crash-safe stereo WAV recordings: the header, SIGKILL mid-write, safe paths, modes."""

from __future__ import annotations

import os
import random
import re
import signal
import stat
import struct
import subprocess
import sys
import time
import wave
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.recording_file import (
    HEADER_BYTES,
    StereoWavFile,
    create_recording,
    recording_path,
    repair_wav,
)
from voicebot.recording import CallRecorder

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and file modes are POSIX")


def _pattern(first: int, count: int) -> bytes:
    """Frames that name themselves: frame i holds (i & 0x7FFF, (i >> 15) & 0x7FFF)."""
    samples = array("h")
    for i in range(first, first + count):
        samples.extend((i & 0x7FFF, (i >> 15) & 0x7FFF))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _parse(path: Path) -> tuple[int, bytes]:
    """Plain RIFF parsing: check every header field; return (frames, their bytes)."""
    raw = path.read_bytes()
    assert len(raw) >= HEADER_BYTES
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", raw, 0)
    fmt_id, fmt_size, tag, channels, rate, byte_rate, align, bits = struct.unpack_from(
        "<4sIHHIIHH", raw, 12
    )
    data_id, data_size = struct.unpack_from("<4sI", raw, 36)
    assert (riff, wave_id, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, tag, channels, rate, byte_rate, align, bits) == (
        16, 1, 2, 16000, 64000, 4, 16,
    )  # fmt: skip
    assert data_size % 4 == 0
    assert HEADER_BYTES + data_size <= len(raw)  # the header never overstates
    assert data_size + 36 <= riff_size <= len(raw) - 8  # killed between the two size writes
    with wave.open(str(path), "rb") as reader:  # the standard library agrees
        assert (reader.getnchannels(), reader.getsampwidth()) == (2, 2)
        assert reader.getframerate() == 16000
        assert reader.getnframes() == data_size // 4
        frames = reader.readframes(reader.getnframes())
    assert frames == raw[HEADER_BYTES : HEADER_BYTES + data_size]
    return data_size // 4, frames


def test_a_new_file_is_a_valid_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with StereoWavFile(path) as out:
        assert path.stat().st_size == HEADER_BYTES
        assert _parse(path) == (0, b"")
        assert (out.frames_written, out.frames_flushed, out.closed) == (0, 0, False)
    assert out.closed
    assert _parse(path) == (0, b"")


def test_flush_makes_the_header_count_the_appended_frames(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    out = StereoWavFile(path)
    out.append(_pattern(0, 1000))
    assert _parse(path)[0] == 0  # appended, not yet counted: understated
    out.flush()
    assert _parse(path) == (1000, _pattern(0, 1000))
    out.append(_pattern(1000, 24))
    assert (out.frames_written, out.frames_flushed) == (1024, 1000)
    out.flush()
    out.flush()  # nothing new: harmless
    out.append(b"")
    out.close()
    out.close()
    assert _parse(path) == (1024, _pattern(0, 1024))


def test_misuse_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    out = StereoWavFile(path)
    with pytest.raises(ValueError, match="whole number"):
        out.append(b"\x00" * 6)
    out.close()
    with pytest.raises(ValueError, match="closed"):
        out.append(b"\x00" * 4)
    with pytest.raises(ValueError, match="closed"):
        out.flush()
    with pytest.raises(FileExistsError):  # never overwrites a recording
        StereoWavFile(path)
    with pytest.raises(ValueError):
        StereoWavFile(tmp_path / "other.wav", sample_rate_hz=0)


def test_a_failed_write_leaves_no_half_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "call.wav"
    out = StereoWavFile(path)
    out.append(_pattern(0, 10))
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 6:
            return real_write(fd, bytes(data)[:6])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        out.append(_pattern(10, 5))
    monkeypatch.undo()
    assert path.stat().st_size == HEADER_BYTES + 40  # cut back to whole frames
    out.append(_pattern(10, 5))
    out.close()
    assert _parse(path) == (15, _pattern(0, 15))


def test_fsync_flag_syncs_each_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with StereoWavFile(tmp_path / "a.wav") as out:
        out.append(_pattern(0, 4))
        out.flush()
    assert synced == []  # default: survive a process crash, not a power loss
    with StereoWavFile(tmp_path / "b.wav", fsync=True) as out:
        opened = len(synced)
        assert opened >= 1
        out.append(_pattern(0, 4))
        out.flush()
        assert len(synced) == opened + 1
    assert len(synced) == opened + 2  # close syncs too


def test_repair_recovers_the_unflushed_tail(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    out = StereoWavFile(path)
    out.append(_pattern(0, 100))
    out.flush()
    out.append(_pattern(100, 50))
    with open(path, "ab") as torn:
        torn.write(b"\x01\x02")  # half a frame, as a crash mid-write could leave
    assert repair_wav(path) == 150
    assert _parse(path)[1][: 150 * 4] == _pattern(0, 150)
    (tmp_path / "junk.wav").write_bytes(b"not a wav" * 10)
    with pytest.raises(ValueError):
        repair_wav(tmp_path / "junk.wav")


def test_a_call_recorder_into_a_file_round_trips(tmp_path: Path) -> None:
    rec = CallRecorder()
    caller = (np.arange(16000) % 1000 + 1).astype(np.int16)
    bot = -(np.arange(8000) % 1000 + 1).astype(np.int16)
    with StereoWavFile(tmp_path / "call.wav") as out:
        for i in range(0, 16000, 512):
            rec.caller(caller[i : i + 512])
            if i == 4096:
                rec.bot(bot)
            out.append(rec.take())
            out.flush()
        out.append(rec.finish())
    with wave.open(str(tmp_path / "call.wav"), "rb") as reader:
        frames = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").reshape(-1, 2)
    assert frames[:, 0].tolist() == caller.tolist()
    assert frames[4096 + 512 : 4096 + 512 + 8000, 1].tolist() == bot.tolist()


# --- SIGKILL: a child writes, the parent kills it, the file must still be valid ------

_CHILD = r"""
import random, sys, time
from array import array
from pathlib import Path
from server.recording_file import StereoWavFile

def pattern(first, count):
    samples = array("h")
    for i in range(first, first + count):
        samples.extend((i & 0x7FFF, (i >> 15) & 0x7FFF))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()

path, mode, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
out = StereoWavFile(path)
written = 0
flushes = 0
while True:
    count = rng.randint(1, 4096)
    out.append(pattern(written, count))
    written += count
    if rng.random() < (0.5 if mode == "tight" else 0.3):
        out.flush()
        flushes += 1
        print(written, flush=True)
    if mode == "between" and flushes == 10:
        out.append(pattern(written, 500))  # appended after the last flush
        print("idle", flush=True)
        time.sleep(600)
"""


def _spawn(path: Path, mode: str, seed: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), mode, str(seed)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _lines(child: subprocess.Popen[str]) -> Iterator[str]:
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            return
        yield line.strip()
    raise AssertionError("the child took too long")


def _kill(child: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the child; return what it printed that was not read yet."""
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return rest.splitlines()[: rest.count("\n")]  # whole lines only


@POSIX_ONLY
def test_sigkill_between_flushes_keeps_every_flushed_frame(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    child = _spawn(path, "between", seed=1)
    flushed = 0
    for line in _lines(child):
        if line == "idle":
            break
        flushed = int(line)
    else:
        raise AssertionError("the child ended early")
    assert _kill(child) == []
    frames, data = _parse(path)
    assert frames == flushed  # exactly what the last flush counted
    assert data == _pattern(0, flushed)
    assert path.stat().st_size == HEADER_BYTES + 4 * (flushed + 500)  # the tail is there
    assert repair_wav(path) == flushed + 500
    assert _parse(path) == (flushed + 500, _pattern(0, flushed + 500))


@POSIX_ONLY
@pytest.mark.parametrize("seed", range(6))
def test_sigkill_while_appending_in_a_tight_loop(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "call.wav"
    child = _spawn(path, "tight", seed=seed)
    reported = 0
    for number, line in enumerate(_lines(child)):
        reported = int(line)
        if number == 20 + seed:
            break
    time.sleep(random.Random(seed).uniform(0.0, 0.02))  # land anywhere in the loop
    rest = _kill(child)
    if rest:
        reported = int(rest[-1])  # flushes it completed before it died
    frames, data = _parse(path)
    assert frames >= reported
    assert data == _pattern(0, frames)  # and every counted frame is the right one


# --- paths and modes ----------------------------------------------------------------

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,120}\.wav")


def test_recording_path_is_dated_and_keeps_safe_ids() -> None:
    started = datetime(2024, 3, 7, 23, 30)
    assert recording_path(Path("/rec"), "CA1234.abc_d-e", started) == Path(
        "/rec/2024/03/07/CA1234.abc_d-e.wav"
    )
    paris = timezone(timedelta(hours=2))
    aware = datetime(2024, 3, 8, 1, 30, tzinfo=paris)  # 2024-03-07 23:30 UTC
    assert recording_path(Path("/rec"), "x", aware).parent == Path("/rec/2024/03/07")
    hostile = recording_path(Path("/rec"), "../../etc/passwd", started)
    assert hostile.parent == Path("/rec/2024/03/07")
    assert hostile.name.startswith("_._.._etc_passwd-")  # ".." cannot lead
    assert recording_path(Path("/rec"), "a/b", started) != recording_path(
        Path("/rec"), "a_b", started
    )
    assert recording_path(Path("/rec"), "", started).name != ".wav"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_call_id_stays_inside_root(call_id: str, other: str) -> None:
    root = Path("/srv/recordings")
    started = datetime(2025, 1, 2, tzinfo=UTC)
    path = recording_path(root, call_id, started)
    assert path.parent == root / "2025" / "01" / "02"
    assert Path(os.path.normpath(path)) == path  # no "..", no "." to resolve
    assert path.resolve().is_relative_to(root.resolve())
    assert _SAFE_NAME.fullmatch(path.name)
    assert not path.name.startswith(".")
    if call_id != other:
        assert path != recording_path(root, other, started)


@POSIX_ONLY
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_files_are_0640_and_folders_0750_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "recordings"
    started = datetime(2025, 6, 1, 12, tzinfo=UTC)
    previous = os.umask(umask)
    try:
        with create_recording(root, "call-1", started) as first:
            first.append(_pattern(0, 8))
        with create_recording(root, "call-1", started) as again:  # a reused call id
            pass
    finally:
        os.umask(previous)
    assert first.path == root / "2025" / "06" / "01" / "call-1.wav"
    assert again.path == root / "2025" / "06" / "01" / "call-1.2.wav"
    for folder in (root, root / "2025", root / "2025" / "06", first.path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    for made in (first.path, again.path):
        assert stat.S_IMODE(made.stat().st_mode) == 0o640
    assert _parse(first.path) == (8, _pattern(0, 8))
