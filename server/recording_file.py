"""Crash-safe stereo WAV files for call recordings (16-bit PCM, caller left, bot right).

:class:`StereoWavFile` writes a standard 44-byte RIFF/WAVE header at open (sizes for
zero data), appends frames with unbuffered ``os.write`` calls, and on every
:meth:`~StereoWavFile.flush` rewrites the RIFF size (offset 4) and then the data
chunk size (offset 40) to match the bytes written so far. The data always reaches
the kernel before the header that counts it, so whenever the process dies (even by
SIGKILL) the file is a valid WAV holding at least every frame appended before the
last completed flush: the header may understate by what was appended after it,
never overstate. :func:`repair_wav` recovers that tail afterwards.

Durability: by default nothing is fsynced, which survives a crash of the process
(the kernel holds the written bytes) but not a power loss or a kernel crash; with
``fsync=True`` each flush and the close also ``os.fsync`` the file (and the open
fsyncs the directory entry), at the cost of a disk sync per flush.

Threads: a writer is thread-compatible, not thread-safe: one thread at a time may
use it. The server calls ``append``/``flush``/``close`` through its executor, one
call after another for a given call's file.

:func:`recording_path` names a call's file ``root/YYYY/MM/DD/<safe call id>.wav``;
the call id comes from the network, so it is reduced to ``[A-Za-z0-9._-]``, bounded
in length, and can never leave ``root``. :func:`create_recording` makes the
directories (mode 0o750) and the file (mode 0o640).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

__all__ = [
    "HEADER_BYTES",
    "StereoWavFile",
    "create_recording",
    "recording_path",
    "repair_wav",
]

_log = logging.getLogger(__name__)

HEADER_BYTES = 44
_CHANNELS = 2
_SAMPLE_BYTES = 2
_FRAME_BYTES = _CHANNELS * _SAMPLE_BYTES
_MAX_DATA_BYTES = (0xFFFFFFFF - (HEADER_BYTES - 8)) // _FRAME_BYTES * _FRAME_BYTES
_FILE_MODE = 0o640
_DIR_MODE = 0o750
_MAX_ID_CHARS = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _header(sample_rate_hz: int, data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, _CHANNELS, sample_rate_hz,
        sample_rate_hz * _FRAME_BYTES, _FRAME_BYTES, 8 * _SAMPLE_BYTES,
        b"data", data_bytes,
    )  # fmt: skip


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_at(fd: int, offset: int, data: bytes, *, end: int) -> None:
    """Write ``data`` at ``offset``, then put the file offset back at ``end``."""
    os.lseek(fd, offset, os.SEEK_SET)
    _write_all(fd, data)
    os.lseek(fd, end, os.SEEK_SET)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no directory handles on this platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StereoWavFile:
    """A 16-bit stereo WAV file that stays valid if the process dies; see the module doc.

    The file must not exist yet (it is created exclusively, mode 0o640).
    """

    def __init__(self, path: Path, *, sample_rate_hz: int = 16000, fsync: bool = False) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self._fsync = fsync
        self._data_bytes = 0  # appended so far
        self._flushed_bytes = 0  # counted by the header on disk
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._fd: int | None = os.open(self.path, flags, _FILE_MODE)  # not inherited
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(self._fd, _FILE_MODE)  # the umask does not loosen or tighten it
            _write_all(self._fd, _header(sample_rate_hz, 0))
            if fsync:
                os.fsync(self._fd)
                _fsync_dir(self.path.parent)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        _log.debug("recording to %s", self.path)

    @property
    def frames_written(self) -> int:
        """Frames appended so far."""
        return self._data_bytes // _FRAME_BYTES

    @property
    def frames_flushed(self) -> int:
        """Frames the header on disk counts (what survives a crash, at least)."""
        return self._flushed_bytes // _FRAME_BYTES

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, frames: bytes) -> None:
        """Write interleaved int16 little-endian stereo frames after the others."""
        fd = self._open_fd()
        if len(frames) % _FRAME_BYTES:
            raise ValueError(f"{len(frames)} bytes is not a whole number of stereo frames")
        if self._data_bytes + len(frames) > _MAX_DATA_BYTES:
            raise ValueError("the recording would outgrow the 4 GiB a WAV file can hold")
        end = HEADER_BYTES + self._data_bytes
        try:
            _write_all(fd, frames)
        except OSError:
            # A partial write (disk full) must not leave half a frame to misalign the rest.
            os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
            raise
        self._data_bytes += len(frames)

    def flush(self) -> None:
        """Make the header count every frame appended so far (fsync too if asked)."""
        fd = self._open_fd()
        if self._data_bytes != self._flushed_bytes:
            end = HEADER_BYTES + self._data_bytes
            # RIFF size first: killed between the two writes, the data size still
            # understates, and the RIFF size never exceeds the file.
            _write_at(fd, 4, struct.pack("<I", HEADER_BYTES - 8 + self._data_bytes), end=end)
            _write_at(fd, 40, struct.pack("<I", self._data_bytes), end=end)
            self._flushed_bytes = self._data_bytes
        if self._fsync:
            os.fsync(fd)

    def close(self) -> None:
        """Write the final sizes and close; closing twice is harmless."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None
        _log.debug("recording %s closed: %d frames", self.path, self.frames_written)

    def __enter__(self) -> StereoWavFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"the recording {self.path} is closed")
        return self._fd


def _safe_name(call_id: str) -> str:
    name = _UNSAFE.sub("_", call_id)[:_MAX_ID_CHARS]
    if name.startswith("."):  # no ".", "..", nor hidden files
        name = "_" + name[1:]
    if name != call_id or not name:
        # Keep distinct ids distinct once their unsafe characters are replaced.
        digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name}-{digest}" if name else digest
    return name


def recording_path(root: Path, call_id: str, started: datetime) -> Path:
    """``root/YYYY/MM/DD/<safe call id>.wav``: always inside ``root``.

    An aware ``started`` is converted to UTC first; a naive one is taken as given.
    """
    if started.tzinfo is not None:
        started = started.astimezone(UTC)
    day = Path(f"{started.year:04d}", f"{started.month:02d}", f"{started.day:02d}")
    return Path(root) / day / f"{_safe_name(call_id)}.wav"


def _make_dirs(target: Path) -> None:
    """Create ``target`` and its missing parents, each mode 0o750 (whatever the umask)."""
    missing: list[Path] = []
    folder = target
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            os.mkdir(made, _DIR_MODE)
        except FileExistsError:  # another call made it meanwhile
            continue
        os.chmod(made, _DIR_MODE)


def create_recording(
    root: Path,
    call_id: str,
    started: datetime,
    *,
    sample_rate_hz: int = 16000,
    fsync: bool = False,
) -> StereoWavFile:
    """Open a new recording at :func:`recording_path`; a reused call id gets ``.2``, ``.3``…"""
    path = recording_path(root, call_id, started)
    _make_dirs(path.parent)
    for attempt in range(1, 1000):
        candidate = path if attempt == 1 else path.with_name(f"{path.stem}.{attempt}.wav")
        try:
            return StereoWavFile(candidate, sample_rate_hz=sample_rate_hz, fsync=fsync)
        except FileExistsError:
            continue
    raise FileExistsError(f"too many recordings named {path}")


def repair_wav(path: Path) -> int:
    """Make a crashed recording's header count every whole frame in the file.

    Returns the frame count. For files :class:`StereoWavFile` wrote (44-byte header).
    """
    with open(path, "r+b") as file:
        head = file.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES or head[:4] != b"RIFF" or head[36:40] != b"data":
            raise ValueError(f"{path} is not a recording this module wrote")
        size = file.seek(0, os.SEEK_END)
        data_bytes = min(size - HEADER_BYTES, _MAX_DATA_BYTES) // _FRAME_BYTES * _FRAME_BYTES
        file.seek(4)
        file.write(struct.pack("<I", HEADER_BYTES - 8 + data_bytes))
        file.seek(40)
        file.write(struct.pack("<I", data_bytes))
    return data_bytes // _FRAME_BYTES
