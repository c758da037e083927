"""Sample-rate conversion on libsoxr (``python-soxr``).

:class:`StreamResampler` converts a stream chunk by chunk, keeping the filter
state between chunks, so any chunking gives exactly the output of one big chunk
(no clicks at chunk edges).  :func:`resample` converts a whole buffer.

soxr runs in float32 on samples kept at int16 scale; we round and clip back to
int16 ourselves.  (soxr's own int16 output adds dither whose noise depends on
the chunking, which would break the chunking invariance.)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicebot.errors import ConfigError, EngineError
from voicebot.types import Pcm

__all__ = ["StreamResampler", "resample"]

logger = logging.getLogger(__name__)

_QUALITY = "HQ"
_INT16_MIN = -32768
_INT16_MAX = 32767


def _check_rates(in_rate_hz: int, out_rate_hz: int) -> None:
    if in_rate_hz <= 0 or out_rate_hz <= 0:
        raise ConfigError(
            f"sample rates must be positive, got in_rate_hz={in_rate_hz}, out_rate_hz={out_rate_hz}"
        )


def _to_float(pcm: Pcm) -> npt.NDArray[np.float32]:
    samples = np.asarray(pcm)
    if samples.ndim != 1:
        raise ValueError(f"expected mono 1-D PCM, got shape {samples.shape}")
    return samples.astype(np.float32)


def _to_pcm(samples: npt.NDArray[Any]) -> Pcm:
    rounded = np.rint(np.asarray(samples, dtype=np.float32))
    return np.clip(rounded, _INT16_MIN, _INT16_MAX).astype(np.int16)


class StreamResampler:
    """Stateful streaming resampler for one mono PCM16 stream.

    Feed chunks of any size with :meth:`process`; call :meth:`flush` once at the
    end of the stream to drain the filter's tail.  When both rates are equal the
    audio passes through untouched and soxr is not used.
    """

    __slots__ = ("_in_rate_hz", "_out_rate_hz", "_stream")

    def __init__(self, *, in_rate_hz: int, out_rate_hz: int) -> None:
        _check_rates(in_rate_hz, out_rate_hz)
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz
        self._stream: Any = None
        if in_rate_hz != out_rate_hz:
            self._stream = self._new_stream()

    @property
    def in_rate_hz(self) -> int:
        return self._in_rate_hz

    @property
    def out_rate_hz(self) -> int:
        return self._out_rate_hz

    def _new_stream(self) -> Any:
        try:
            return soxr.ResampleStream(
                self._in_rate_hz, self._out_rate_hz, 1, dtype="float32", quality=_QUALITY
            )
        except Exception as exc:  # soxr raises plain RuntimeError/ValueError
            raise EngineError(
                f"cannot create a soxr stream {self._in_rate_hz} -> {self._out_rate_hz} Hz"
            ) from exc

    def process(self, pcm: Pcm) -> Pcm:
        """Resample the next chunk; returns the output available so far (maybe empty)."""
        if self._stream is None:
            return np.asarray(pcm, dtype=np.int16).copy()
        samples = _to_float(pcm)
        try:
            out = self._stream.resample_chunk(samples, last=False)
        except Exception as exc:
            raise EngineError("soxr failed to resample a chunk") from exc
        return _to_pcm(out)

    def flush(self) -> Pcm:
        """End of stream: return the remaining tail; the resampler is then ready for reuse."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        try:
            out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        except Exception as exc:
            raise EngineError("soxr failed to flush the resampler") from exc
        self.reset()
        return _to_pcm(out)

    def reset(self) -> None:
        """Drop any buffered audio and start a fresh stream."""
        if self._stream is not None:
            try:
                self._stream.clear()
            except Exception as exc:
                raise EngineError("soxr failed to reset the resampler") from exc


def resample(pcm: Pcm, *, in_rate_hz: int, out_rate_hz: int) -> Pcm:
    """Resample a whole mono PCM16 buffer.

    Gives the same samples as a :class:`StreamResampler` fed the whole buffer
    (any chunking) and then flushed.
    """
    _check_rates(in_rate_hz, out_rate_hz)
    if in_rate_hz == out_rate_hz:
        return np.asarray(pcm, dtype=np.int16).copy()
    samples = _to_float(pcm)
    if samples.size == 0:
        return np.zeros(0, dtype=np.int16)
    try:
        out = soxr.resample(samples, in_rate_hz, out_rate_hz, quality=_QUALITY)
    except Exception as exc:
        raise EngineError(f"soxr failed to resample {in_rate_hz} -> {out_rate_hz} Hz") from exc
    return _to_pcm(out)
