"""Tests of voicebot.audio.codecs: PCM16 and G.711 μ-law / A-law."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voicebot.audio.codecs import AudioEncoding, bytes_per_sample, decode, encode, frame_bytes
from voicebot.errors import ConfigError, ProtocolError

__all__: list[str] = []

G711 = (AudioEncoding.MULAW, AudioEncoding.ALAW)
ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
pcm_arrays = arrays(np.int16, st.integers(0, 400))

# Reference pairs, checked against the Sun g711.c algorithm (CPython's audioop).
ULAW_DECODE = {0xFF: 0, 0x7F: 0, 0x00: -32124, 0x80: 32124, 0xFE: 8, 0x7E: -8, 0xCE: 988}
ALAW_DECODE = {0xD5: 8, 0x55: -8, 0x80: 5504, 0x00: -5504, 0xAA: 32256, 0x2A: -32256}
ULAW_ENCODE = {0: 0xFF, 1: 0xFF, -1: 0x7E, 8: 0xFE, 32767: 0x80, -32768: 0x00, 1000: 0xCE}
ALAW_ENCODE = {0: 0xD5, -1: 0x55, 8: 0xD5, 32767: 0xAA, -32768: 0x2A, 1000: 0xFA, -1000: 0x7A}


def _encode_one(value: int, encoding: AudioEncoding) -> int:
    return encode(np.array([value], dtype=np.int16), encoding)[0]


@pytest.mark.parametrize(("code", "value"), sorted(ULAW_DECODE.items()))
def test_ulaw_decode_reference_values(code: int, value: int) -> None:
    assert decode(bytes([code]), AudioEncoding.MULAW).tolist() == [value]


@pytest.mark.parametrize(("code", "value"), sorted(ALAW_DECODE.items()))
def test_alaw_decode_reference_values(code: int, value: int) -> None:
    assert decode(bytes([code]), AudioEncoding.ALAW).tolist() == [value]


@pytest.mark.parametrize(("value", "code"), sorted(ULAW_ENCODE.items()))
def test_ulaw_encode_reference_values(value: int, code: int) -> None:
    assert _encode_one(value, AudioEncoding.MULAW) == code


@pytest.mark.parametrize(("value", "code"), sorted(ALAW_ENCODE.items()))
def test_alaw_encode_reference_values(value: int, code: int) -> None:
    assert _encode_one(value, AudioEncoding.ALAW) == code


@pytest.mark.parametrize("encoding", G711)
def test_bit_exact_with_audioop(encoding: AudioEncoding) -> None:
    """Every code and every sample, against CPython's audioop (Python < 3.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            audioop = importlib.import_module("audioop")
        except ImportError:
            pytest.skip("audioop was removed in Python 3.13")
    if encoding is AudioEncoding.MULAW:
        to_code, to_linear = audioop.lin2ulaw, audioop.ulaw2lin
    else:
        to_code, to_linear = audioop.lin2alaw, audioop.alaw2lin
    expected = np.frombuffer(to_linear(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(decode(ALL_CODES, encoding), expected)
    assert encode(ALL_SAMPLES, encoding) == to_code(ALL_SAMPLES.astype("<i2").tobytes(), 2)


@pytest.mark.parametrize("encoding", G711)
def test_decode_of_encode_is_monotonic_and_close(encoding: AudioEncoding) -> None:
    decoded = decode(encode(ALL_SAMPLES, encoding), encoding).astype(np.int32)
    assert np.all(np.diff(decoded) >= 0)
    error = np.abs(decoded - ALL_SAMPLES)
    # Quantisation error stays within half the largest segment step (plus clipping).
    assert error.max() <= 1024
    assert np.all(error[np.abs(ALL_SAMPLES.astype(np.int32)) < 32] <= 8)


@pytest.mark.parametrize("encoding", G711)
def test_every_code_is_stable(encoding: AudioEncoding) -> None:
    decoded = decode(ALL_CODES, encoding)
    np.testing.assert_array_equal(decode(encode(decoded, encoding), encoding), decoded)
    recoded = encode(decoded, encoding)
    if encoding is AudioEncoding.MULAW:
        # 0x7F is μ-law "negative zero": it decodes to 0, which encodes as 0xFF.
        assert recoded == ALL_CODES.replace(b"\x7f", b"\xff")
    else:
        assert recoded == ALL_CODES


@given(pcm=pcm_arrays, encoding=st.sampled_from(G711))
def test_g711_round_trip_is_stable(pcm: np.ndarray, encoding: AudioEncoding) -> None:
    once = encode(pcm, encoding)
    assert len(once) == len(pcm)
    decoded = decode(once, encoding)
    assert decoded.dtype == np.int16
    assert encode(decoded, encoding) == once


@given(pcm=pcm_arrays)
def test_pcm16_round_trip(pcm: np.ndarray) -> None:
    payload = encode(pcm, AudioEncoding.PCM16)
    assert len(payload) == 2 * len(pcm)
    decoded = decode(payload, AudioEncoding.PCM16)
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, pcm)


@given(payload=st.binary(max_size=200).filter(lambda b: len(b) % 2 == 0))
def test_pcm16_bytes_round_trip(payload: bytes) -> None:
    assert encode(decode(payload, AudioEncoding.PCM16), AudioEncoding.PCM16) == payload


def test_pcm16_is_little_endian_signed() -> None:
    decoded = decode(b"\x01\x00\xff\xff\x00\x80\xff\x7f", AudioEncoding.PCM16)
    assert decoded.tolist() == [1, -1, -32768, 32767]
    assert encode(decoded, AudioEncoding.PCM16) == b"\x01\x00\xff\xff\x00\x80\xff\x7f"


def test_decoded_pcm16_is_writable_copy() -> None:
    decoded = decode(b"\x01\x00", AudioEncoding.PCM16)
    decoded[0] = 5  # np.frombuffer alone would be read-only
    assert decoded.tolist() == [5]


@pytest.mark.parametrize("length", [1, 3, 321])
def test_pcm16_odd_length_is_a_protocol_error(length: int) -> None:
    with pytest.raises(ProtocolError, match="odd length"):
        decode(b"\x00" * length, AudioEncoding.PCM16)


@pytest.mark.parametrize("encoding", list(AudioEncoding))
def test_empty_payload(encoding: AudioEncoding) -> None:
    assert decode(b"", encoding).size == 0
    assert encode(np.zeros(0, dtype=np.int16), encoding) == b""


@pytest.mark.parametrize("encoding", list(AudioEncoding))
def test_encode_non_contiguous_input(encoding: AudioEncoding) -> None:
    pcm = np.arange(-3000, 3000, 7, dtype=np.int16)
    assert encode(pcm[::3], encoding) == encode(pcm[::3].copy(), encoding)


def test_encoding_names() -> None:
    assert AudioEncoding("mulaw") is AudioEncoding.MULAW
    assert [str(e) for e in AudioEncoding] == ["pcm16", "mulaw", "alaw"]


def test_bytes_per_sample_and_frame_bytes() -> None:
    assert bytes_per_sample(AudioEncoding.PCM16) == 2
    assert bytes_per_sample(AudioEncoding.MULAW) == 1
    assert bytes_per_sample(AudioEncoding.ALAW) == 1
    assert frame_bytes(AudioEncoding.MULAW, 8000, 20) == 160
    assert frame_bytes(AudioEncoding.PCM16, 16000, 20) == 640
    assert frame_bytes(AudioEncoding.PCM16, 22050, 20) == 882


@pytest.mark.parametrize(("rate", "ms"), [(0, 20), (8000, 0), (11025, 3), (-8000, 20)])
def test_frame_bytes_rejects_partial_or_empty_frames(rate: int, ms: int) -> None:
    with pytest.raises(ConfigError):
        frame_bytes(AudioEncoding.PCM16, rate, ms)
