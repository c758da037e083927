"""Wire audio codecs: little-endian PCM16 and G.711 μ-law / A-law.

The G.711 conversions are bit-exact with the classic Sun Microsystems reference
implementation (``g711.c``), the one Python's former ``audioop`` module used for
``lin2ulaw`` / ``ulaw2lin`` / ``lin2alaw`` / ``alaw2lin``:

* decoding indexes a 256-entry table with the code bytes;
* encoding indexes a 65536-entry table with the samples viewed as ``uint16``.

The tables are computed (vectorised, with numpy) on first use and cached.
"""

from __future__ import annotations

import enum
import functools
import logging

import numpy as np
import numpy.typing as npt

from voicebot.errors import ConfigError, ProtocolError
from voicebot.types import Pcm

__all__ = [
    "AudioEncoding",
    "bytes_per_sample",
    "decode",
    "encode",
    "frame_bytes",
]

logger = logging.getLogger(__name__)

_QUANT_MASK = 0x0F
_SEG_MASK = 0x70
_SEG_SHIFT = 4
_SIGN_BIT = 0x80
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # magnitude clip in the 14-bit domain
# Upper bound of each segment (``seg_uend`` / ``seg_aend`` in g711.c).
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


class AudioEncoding(enum.StrEnum):
    """Sample encodings the wire protocol carries."""

    PCM16 = "pcm16"
    MULAW = "mulaw"
    ALAW = "alaw"


def bytes_per_sample(encoding: AudioEncoding) -> int:
    """Bytes one mono sample takes on the wire."""
    return 2 if encoding is AudioEncoding.PCM16 else 1


def frame_bytes(encoding: AudioEncoding, sample_rate_hz: int, frame_ms: int) -> int:
    """Bytes of one ``frame_ms`` frame at ``sample_rate_hz``.

    Raises :class:`ConfigError` unless the frame holds a positive whole number of samples.
    """
    samples, rest = divmod(sample_rate_hz * frame_ms, 1000)
    if sample_rate_hz <= 0 or frame_ms <= 0 or rest:
        raise ConfigError(
            f"a {frame_ms} ms frame at {sample_rate_hz} Hz is not a positive whole "
            "number of samples"
        )
    return samples * bytes_per_sample(encoding)


def decode(payload: bytes, encoding: AudioEncoding) -> Pcm:
    """Decode wire bytes to PCM16 samples.

    Raises :class:`ProtocolError` for a PCM16 payload of odd length.
    """
    if encoding is AudioEncoding.PCM16:
        if len(payload) % 2:
            raise ProtocolError(
                f"pcm16 audio payload has odd length {len(payload)}: "
                "samples are 2 bytes (little-endian signed 16-bit)"
            )
        return np.frombuffer(payload, dtype="<i2").astype(np.int16)
    codes = np.frombuffer(payload, dtype=np.uint8)
    table = _ulaw_decode_table() if encoding is AudioEncoding.MULAW else _alaw_decode_table()
    return table[codes]


def encode(pcm: Pcm, encoding: AudioEncoding) -> bytes:
    """Encode PCM16 samples to wire bytes."""
    samples = np.asarray(pcm, dtype=np.int16)
    if encoding is AudioEncoding.PCM16:
        return samples.astype("<i2", copy=False).tobytes()
    table = _ulaw_encode_table() if encoding is AudioEncoding.MULAW else _alaw_encode_table()
    return table[samples.view(np.uint16)].tobytes()


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its ``uint16`` bit pattern (the encode table index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode(values: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """``linear2ulaw`` of g711.c on 16-bit samples (``st_14linear2ulaw(val >> 2)``)."""
    pcm = values >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(np.asarray(_SEG_UEND), magnitude, side="left")
    uval = (seg << _SEG_SHIFT) | ((magnitude >> (seg + 1)) & _QUANT_MASK)
    code = np.where(seg >= 8, 0x7F, uval) ^ mask
    return code.astype(np.uint8)


def _alaw_encode(values: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """``linear2alaw`` of g711.c on 16-bit samples (``st_linear2alaw(val >> 3)``)."""
    pcm = values >> 3
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(np.asarray(_SEG_AEND), magnitude, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << _SEG_SHIFT) | ((magnitude >> shift) & _QUANT_MASK)
    code = np.where(seg >= 8, 0x7F, aval) ^ mask
    return code.astype(np.uint8)


@functools.cache
def _ulaw_decode_table() -> Pcm:
    """``ulaw2linear`` of g711.c for every code byte."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & _QUANT_MASK) << 3) + _ULAW_BIAS) << ((u & _SEG_MASK) >> _SEG_SHIFT)
    table = np.where(u & _SIGN_BIT, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)
    table.flags.writeable = False
    return table


@functools.cache
def _alaw_decode_table() -> Pcm:
    """``alaw2linear`` of g711.c for every code byte."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & _QUANT_MASK) << 4
    seg = (a & _SEG_MASK) >> _SEG_SHIFT
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    table = np.where(a & _SIGN_BIT, t, -t).astype(np.int16)
    table.flags.writeable = False
    return table


@functools.cache
def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """μ-law code of every int16 sample, indexed by the sample's ``uint16`` bits."""
    table = _ulaw_encode(_all_int16())
    table.flags.writeable = False
    logger.debug("built the 65536-entry mu-law encode table")
    return table


@functools.cache
def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    """A-law code of every int16 sample, indexed by the sample's ``uint16`` bits."""
    table = _alaw_encode(_all_int16())
    table.flags.writeable = False
    logger.debug("built the 65536-entry A-law encode table")
    return table
