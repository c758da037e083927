"""The Transcriber / TranscriptionStream / SpeculativeStream contract.

Run on the scripted fake (it "hears" ``SPOKEN`` in every utterance with audio),
PocketSphinx, REAL Whisper tiny.en as the default stack builds it, and the same
adapter on synthetic (random-weight) whisper-tiny, built for the session (~5 s).

What the rest of voicebot relies on (``EngineSet``, ``CallJobs``): 16 kHz, the
VAD's rate; ``prepare_domain`` then ``open_stream(domain=...)`` (an unknown
domain is an ``EngineError``; ``None`` is allowed); ``feed`` takes any chunk,
empty included; ``finish`` returns a complete :class:`Transcript` whose
``audio_ms`` is the audio fed, the same for one chunk or many, and an empty
text (confidence ``None``) when nothing was fed; ``cancel`` is idempotent and
harmless after ``finish``; two open streams do not share state.  Audio that is
not 1-D int16 is an ``EngineError`` (what both real adapters do; the Protocol
is silent).  A ``SpeculativeStream``'s ``transcribe_so_far`` is what ``finish``
returns when nothing was fed since (``CallJobs`` keeps it as the final result).

Not in the contract: ``confidence`` for equal audio.  PocketSphinx carries the
channel's cepstral mean from one finished utterance to the next (by design), so
its confidence, unlike its text, moves from one utterance to the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from tests.contract.support import RATE_HZ, SPOKEN, build_real, splits
from voicebot.engines.base import Pcm, SpeculativeStream, Transcriber, Transcript
from voicebot.errors import EngineError
from voicebot.testing import FakeTranscriber
from voicebot.whisper import build_synthetic_whisper

__all__: list[str] = []

DOMAIN = "bank_card"


@pytest.fixture(scope="module",
                params=["fake", "pocketsphinx", "whisper-tiny.en", "whisper-tiny-synthetic"])
def transcriber(
    request: pytest.FixtureRequest, asr_domains: Mapping[str, Sequence[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Transcriber:
    engine: Transcriber
    if request.param == "fake":
        engine = FakeTranscriber([SPOKEN] * 1000)
    elif request.param == "pocketsphinx":
        engine = build_real("asr", "pocketsphinx")
    elif request.param == "whisper-tiny.en":
        engine = build_real("asr", "whisper", model=request.param)
    else:  # random weights, built once per session (the path the whisper unit tests build)
        model = build_synthetic_whisper(
            "whisper-tiny", tmp_path_factory.getbasetemp() / "synthetic-whisper" / "whisper-tiny")
        engine = build_real("asr", "whisper", model=str(model))
    for name, phrases in asr_domains.items():
        engine.prepare_domain(name=name, phrases=phrases)
    return engine


def _transcribe(transcriber: Transcriber, pieces: Sequence[Pcm]) -> Transcript:
    stream = transcriber.open_stream(domain=DOMAIN)
    for piece in pieces:
        stream.feed(piece)
    return stream.finish()


@pytest.fixture(scope="module")
def heard(transcriber: Transcriber, speech: Pcm) -> Transcript:
    """``speech`` fed in one chunk."""
    return _transcribe(transcriber, [speech])


@pytest.fixture(scope="module")
def heard_other(transcriber: Transcriber, other_speech: Pcm) -> Transcript:
    return _transcribe(transcriber, [other_speech])


def _audio_ms(pcm: Pcm) -> int:
    return len(pcm) * 1000 // RATE_HZ


def _same(a: Transcript, b: Transcript) -> bool:
    """What equal audio must give equally: the text and the duration."""
    return (a.text, a.audio_ms) == (b.text, b.audio_ms)


def test_serves_the_detectors_rate(transcriber: Transcriber) -> None:
    assert type(transcriber.sample_rate_hz) is int and transcriber.sample_rate_hz == RATE_HZ


def test_speech_gives_a_complete_transcript(heard: Transcript, speech: Pcm) -> None:
    assert isinstance(heard, Transcript)
    assert isinstance(heard.text, str) and heard.text.strip()
    assert heard.text == heard.text.strip()
    assert isinstance(heard.confidence, float) and 0.0 <= heard.confidence <= 1.0
    assert abs(heard.audio_ms - _audio_ms(speech)) <= 1


def test_no_audio_gives_an_empty_transcript(transcriber: Transcriber) -> None:
    assert transcriber.open_stream(domain=DOMAIN).finish() == Transcript("", None, 0)
    assert _transcribe(transcriber, [np.zeros(0, dtype=np.int16)]) == Transcript("", None, 0)


def test_general_domain_is_allowed(transcriber: Transcriber) -> None:
    assert transcriber.open_stream(domain=None).finish() == Transcript("", None, 0)


def test_unknown_domain_is_an_engine_error(transcriber: Transcriber) -> None:
    with pytest.raises(EngineError):
        transcriber.open_stream(domain="no such domain")


@pytest.mark.parametrize("sizes", [[320], [1, 4999, 160, 2731]], ids=["20ms", "odd"])
def test_any_split_gives_the_same_transcript(
    transcriber: Transcriber, heard: Transcript, speech: Pcm, sizes: list[int]
) -> None:
    pieces = splits(speech, sizes)
    pieces[2:2] = [speech[:0]]  # an empty chunk changes nothing
    result = _transcribe(transcriber, pieces)
    assert _same(result, heard), (result, heard)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(320, dtype=np.float32), np.zeros(320, dtype=np.int32),
     np.zeros((2, 160), dtype=np.int16)],
    ids=["float32", "int32", "2-D"],
)
def test_audio_not_1d_int16_is_an_engine_error(transcriber: Transcriber, bad: Pcm) -> None:
    stream = transcriber.open_stream(domain=DOMAIN)
    try:
        with pytest.raises(EngineError):
            stream.feed(bad)
    finally:
        stream.cancel()


def test_cancel_is_idempotent_and_harmless_after_finish(
    transcriber: Transcriber, speech: Pcm
) -> None:
    stream = transcriber.open_stream(domain=DOMAIN)
    stream.feed(speech[: len(speech) // 2])
    stream.cancel()
    stream.cancel()
    done = transcriber.open_stream(domain=DOMAIN)
    assert done.finish().text == ""
    done.cancel()


def test_streams_are_independent(
    transcriber: Transcriber, speech: Pcm, other_speech: Pcm, heard: Transcript,
    heard_other: Transcript,
) -> None:
    """Two open streams fed in turn, the second finished first, give what each gives alone."""
    a = transcriber.open_stream(domain=DOMAIN)
    b = transcriber.open_stream(domain=DOMAIN)
    pieces_a, pieces_b = splits(speech, [1600]), splits(other_speech, [1600])
    for i in range(max(len(pieces_a), len(pieces_b))):
        if i < len(pieces_a):
            a.feed(pieces_a[i])
        if i < len(pieces_b):
            b.feed(pieces_b[i])
    second = b.finish()
    first = a.finish()
    assert _same(first, heard), (first, heard)
    assert _same(second, heard_other), (second, heard_other)


def test_speculation_is_the_final_result_when_nothing_follows(
    transcriber: Transcriber, speech: Pcm, heard: Transcript
) -> None:
    stream = transcriber.open_stream(domain=DOMAIN)
    if not isinstance(stream, SpeculativeStream):
        stream.cancel()
        pytest.skip(f"{type(stream).__name__} does not transcribe speculatively")
    assert stream.transcribe_so_far() == Transcript("", None, 0)
    stream.feed(speech)
    so_far = stream.transcribe_so_far()
    assert _same(so_far, heard), (so_far, heard)
    assert stream.finish() == so_far


def test_speculation_then_more_audio(transcriber: Transcriber, speech: Pcm) -> None:
    """Speech resumed after a speculation: ``finish`` covers all the audio."""
    stream = transcriber.open_stream(domain=DOMAIN)
    if not isinstance(stream, SpeculativeStream):
        stream.cancel()
        pytest.skip(f"{type(stream).__name__} does not transcribe speculatively")
    half = len(speech) // 2
    stream.feed(speech[:half])
    partial = stream.transcribe_so_far()
    assert isinstance(partial, Transcript) and partial.audio_ms == _audio_ms(speech[:half])
    stream.feed(speech[half:])
    final = stream.finish()
    assert isinstance(final, Transcript) and abs(final.audio_ms - _audio_ms(speech)) <= 1
