"""Smart Turn v3.2 (REAL model) on REAL human speech, whole prompts against the same
recordings cut mid-sentence at a pause; and its engine-benchmark cases.

The speech is Debian's asterisk-core-sounds-en-wav (one professional voice, 8 kHz;
texts in asterisk-core-sounds-en): every prompt whose text says "... followed by the
pound key." ("Please enter your password followed by the pound key.").  Each reaches
the model as a call's audio does: the 8 kHz line, linear PCM16 or G.711 μ-law (as
most telephony platforms send it), decoded and resampled to 16 kHz, then 200 ms of
silence, the short pause at which the end-of-turn policy asks the model.  The cut
version stops at the recording's last pause of at least 70 ms that ends 300 ms or
more before the end of speech ("Please enter your password | followed by the pound
key"), with the same 200 ms of silence.

What holds, and is asserted: a cut scores below its whole recording (all pairs but
at most one), and by median the whole prompts score complete and the cuts
incomplete.  The figures are printed (``pytest -s``).  2026-12-02, onnxruntime 1.32,
9 pairs: PCM16 line, whole 0.66-0.98 and cuts 0.02-0.78, every pair ordered; μ-law,
whole 0.22-0.98 (conf-getchannel falls to 0.22) and cuts 0.01-0.65, ordered too.  Asked later,
after 500 ms of silence, cuts score much higher (the model hears a long silence as
an ended turn): the policy must ask at the short pause.
"""

from __future__ import annotations

import itertools
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.codecs import AudioEncoding, decode, encode
from voicebot.audio.resample import resample
from voicebot.engines.base import Pcm
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.errors import EngineUnavailableError
from voicebot.turn.detector import TurnDetector

__all__: list[str] = []

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOUNDS = Path("/usr/share/asterisk/sounds/en")
TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
RATE_HZ = 16_000
FRAME = RATE_HZ // 100  # 10 ms
QUIET_RMS = 300.0
MIN_PAUSE_FRAMES = 7  # 70 ms
MIN_TAIL_FRAMES = 30  # the pause ends 300 ms or more before the end of speech
ASK_AT_MS = 200  # the end-of-turn policy's short pause


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    name: str
    text: str
    whole: Pcm
    cut: Pcm
    later: Pcm
    """The cut with 500 ms of silence: asked late."""
    cut_ms: int
    speech_ms: int


@pytest.fixture(scope="module")
def detector() -> TurnDetector:
    try:
        built: TurnDetector = build_engine("turn", "smart-turn", EngineOptions(
            models_dir=REPO / "models" / "cache", manifest=REPO / "models" / "manifest.yaml"))
    except EngineUnavailableError as exc:
        pytest.skip(f"Smart Turn unavailable ({exc}): voicebot models pull smart-turn-v3.2")
    return built


def _line(path: Path, encoding: AudioEncoding) -> Pcm:
    """A recording as the server hears it: 8 kHz ``encoding`` decoded, resampled to 16 kHz."""
    from bench.speechdata import read_wav

    pcm, rate = read_wav(path)
    heard = decode(encode(pcm, encoding), encoding)
    return resample(heard, in_rate_hz=rate, out_rate_hz=RATE_HZ)


def _pair(name: str, text: str, pcm: Pcm) -> Pair | None:
    """The whole speech and its cut at the last pause, each followed by the short pause."""
    rms = np.sqrt(np.mean(pcm[: len(pcm) // FRAME * FRAME].astype(np.float64)
                          .reshape(-1, FRAME) ** 2, axis=1))
    loud = np.flatnonzero(rms > QUIET_RMS)
    if not len(loud):
        return None
    last = int(loud[-1])
    pauses = [int(a) + 1 for a, b in itertools.pairwise(loud)
              if b - a - 1 >= MIN_PAUSE_FRAMES and last - b >= MIN_TAIL_FRAMES]
    if not pauses:
        return None
    silence = np.zeros(RATE_HZ * ASK_AT_MS // 1000, dtype=np.int16)
    cut = pcm[: pauses[-1] * FRAME]
    return Pair(name=name, text=text, whole=np.concatenate([pcm[: (last + 1) * FRAME], silence]),
                cut=np.concatenate([cut, silence]),
                later=np.concatenate([cut, np.zeros(RATE_HZ // 2, dtype=np.int16)]),
                cut_ms=pauses[-1] * 10, speech_ms=(last + 1) * 10)


@pytest.fixture(scope="module", params=[AudioEncoding.PCM16, AudioEncoding.MULAW])
def pairs(request: pytest.FixtureRequest) -> tuple[AudioEncoding, list[Pair]]:
    if not SOUNDS.is_dir() or not TEXTS.is_file():
        pytest.skip("asterisk-core-sounds-en-wav / asterisk-core-sounds-en are not installed")
    from bench.speechdata import asterisk_prompts

    encoding: AudioEncoding = request.param
    found = [p for r in asterisk_prompts(sounds_dir=SOUNDS, texts_path=TEXTS)
             if "followed by the pound key" in r.text.lower()
             and (p := _pair(r.id, r.text, _line(r.path, encoding))) is not None]
    assert len(found) >= 6, [p.name for p in found]
    return encoding, found


def test_a_cut_sentence_scores_below_the_whole_one(
    detector: TurnDetector, pairs: tuple[AudioEncoding, list[Pair]]
) -> None:
    encoding, found = pairs
    rows = [(p, detector.predict(p.whole), detector.predict(p.cut)) for p in found]
    print(f"\nSmart Turn v3.2 complete probability, 8 kHz {encoding} line, asked "
          f"{ASK_AT_MS} ms after the speech (the cut asked at 500 ms too):")
    for p, whole, cut in rows:
        later = detector.predict(p.later).complete_prob
        print(f"  {p.name:20s} whole {whole.complete_prob:.3f} ({p.speech_ms} ms)  "
              f"cut {cut.complete_prob:.3f} / {later:.3f} (at {p.cut_ms} ms)  | {p.text}")
    unordered = [p.name for p, whole, cut in rows if cut.complete_prob >= whole.complete_prob]
    assert len(unordered) <= 1, unordered
    wholes = [whole.complete_prob for _, whole, _ in rows]
    cuts = [cut.complete_prob for _, _, cut in rows]
    assert statistics.median(wholes) > detector.threshold > statistics.median(cuts)
    assert sum(v.complete for _, v, _ in rows) > len(rows) / 2
    assert sum(not v.complete for _, _, v in rows) > len(rows) / 2


def test_engine_bench_times_it_on_one_core(tmp_path: Path) -> None:
    """``python -m bench engines`` (quick) measures both turn lengths with the real model."""
    from bench.engines import run_engine_bench

    if not (REPO / "models" / "cache" / "smart-turn-v3.2").is_dir():
        pytest.skip("voicebot models pull smart-turn-v3.2")
    cpu = 1 if 1 in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
    results = run_engine_bench(out_dir=tmp_path, models_dir=REPO / "models" / "cache", cpu=cpu,
                               quick=True, cases=("smart-turn",))
    rows = results["rows"]
    assert [row["case"] for row in rows] == ["smart-turn/2s", "smart-turn/8s"]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["synthetic"] is False and row["threads"] == 1
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["raw_p50_ms"] > 0
    assert "## smart-turn" in (tmp_path / "engines.md").read_text()
